"""The rest-json framing KVS uses: JSON bodies, request ids, AWS-style errors."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from aiohttp import web

from openkvs.server.errors import AwsError, SerializationException

REQUEST_ID = web.AppKey("request_id_factory", object)
RAW_BODY = "raw_body"  # request key: the body bytes, once the auth layer has read them to hash


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
        body=json.dumps({error.message_key: error.message}).encode(),
        content_type="application/json",
        headers=headers,
    )


class RequestTimeoutException(AwsError):
    """The client did not send its request body in time (a slowloris body)."""

    code = "RequestTimeoutException"
    status = 408


BODY_TIMEOUT = web.AppKey("body_timeout_s", float)
"""Seconds a client has to send a whole JSON body; ``serve`` sets it from the config."""
DEFAULT_BODY_TIMEOUT_S = 30.0


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or SerializationException past ``limit`` bytes.

    It must arrive within the app's BODY_TIMEOUT (RequestTimeoutException), so a
    client that drips a body cannot hold a handler. ``content.read(n)`` returns
    what has arrived so far, not ``n`` bytes, so the body is read to its end here.
    """
    if request.content_length is not None and request.content_length > limit:
        raise SerializationException("Request body is too large.")
    timeout = request.app.get(BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT_S)
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while part := await request.content.readany():
                size += len(part)
                if size > limit:
                    raise SerializationException("Request body is too large.")
                parts.append(part)
    except TimeoutError:
        raise RequestTimeoutException(
            f"The request body did not arrive within {timeout:g} s."
        ) from None
    return b"".join(parts)


async def read_json(request: web.Request, limit: int = 1 << 20) -> dict[str, Any]:
    """Read a JSON object body; malformed input is a SerializationException as on AWS.

    The body must arrive within the app's BODY_TIMEOUT. NaN and Infinity are not
    JSON, and nesting deeper than Python's recursion limit is refused, not a crash.
    """
    raw = request.get(RAW_BODY)  # already read by the auth layer
    if raw is None:
        raw = request[RAW_BODY] = await read_body(request, limit)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SerializationException(f"Could not parse request body: {exc}") from None
    except RecursionError:
        raise SerializationException("Could not parse request body: nested too deeply.") from None
    if not isinstance(body, dict):
        raise SerializationException("Request body must be a JSON object.")
    return body
