"""The rest-json framing KVS uses: JSON bodies, request ids, AWS-style errors."""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web

from openkvs.errors import AwsError, SerializationException

REQUEST_ID = web.AppKey("request_id_factory", object)


def new_request_id() -> str:
    return str(uuid.uuid4())


def request_id(request: web.Request) -> str:
    rid = request.get("request_id")
    if rid is None:
        rid = request["request_id"] = new_request_id()
    return rid


def id_headers(request: web.Request) -> dict[str, str]:
    """Both spellings of the request id: docs name x-amz-, SDKs read x-amzn- (spec §3)."""
    rid = request_id(request)
    return {"x-amzn-RequestId": rid, "x-amz-RequestId": rid}


def json_response(request: web.Request, data: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data, separators=(",", ":")).encode(),
        content_type="application/json",
        headers=id_headers(request),
    )


def error_response(request: web.Request, error: AwsError) -> web.Response:
    headers = id_headers(request)
    headers["x-amzn-ErrorType"] = error.code
    headers["x-amz-ErrorType"] = error.code
    return web.Response(
        status=error.status,
        body=json.dumps({"Message": error.message}).encode(),
        content_type="application/json",
        headers=headers,
    )


async def read_json(request: web.Request, limit: int = 1 << 20) -> dict[str, Any]:
    """Read a JSON object body; malformed input is a SerializationException as on AWS."""
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise SerializationException("Request body is too large.")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SerializationException(f"Could not parse request body: {exc}") from None
    if not isinstance(body, dict):
        raise SerializationException("Request body must be a JSON object.")
    return body
