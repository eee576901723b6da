"""Turn API parameters into the signed HTTP request botocore would send (pure: no I/O).

Both clients (``openkvs.client`` and ``openkvs.aio``) build requests here, so
the bytes on the wire are the same whichever transport sends them; the parity
tests pin them to botocore's. Signing itself is botocore's SigV4 code.
"""

from __future__ import annotations

import base64
import calendar
import decimal
import json
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.utils import parse_to_aware_datetime

SIGNING_NAME = "kinesisvideo"


@dataclass(frozen=True)
class HttpRequest:
    """One signed attempt, ready for any HTTP library."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes


def serialize_body(params: dict[str, Any], shape: Any) -> bytes:
    """The JSON body of botocore's rest-json serializer.

    Every kinesis-video-media input member lives in the body (no header, URI
    or query members), so the whole structure is the body.
    """
    return json.dumps(_serialize(params, shape)).encode("utf-8")


def _serialize(value: Any, shape: Any) -> Any:
    kind = shape.type_name
    if kind == "structure":
        return {
            shape.members[key].serialization.get("name", key): _serialize(item, shape.members[key])
            for key, item in value.items()
        }
    if kind == "list":
        return [_serialize(item, shape.member) for item in value]
    if kind == "map":
        return {key: _serialize(item, shape.value) for key, item in value.items()}
    if kind == "timestamp":
        return _unix_timestamp(value)
    if kind == "blob":
        raw = value.encode("utf-8") if isinstance(value, str) else value
        return base64.b64encode(raw).strip().decode("utf-8")
    if kind in ("float", "double"):
        return _json_float(float(value) if isinstance(value, decimal.Decimal) else value)
    return value


def _unix_timestamp(value: Any) -> int | float:
    """Epoch seconds, microseconds kept (botocore's default timestamp precision)."""
    moment = parse_to_aware_datetime(value)
    seconds = calendar.timegm(moment.timetuple())
    if moment.microsecond:
        return (seconds * 10**6 + moment.microsecond) / 10**6
    return seconds


def _json_float(value: float) -> float | str:
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return "NaN" if math.isnan(value) else value


def join_url(endpoint_url: str, path: str) -> str:
    """botocore's ``_urljoin``: an endpoint path prefix is kept."""
    parts = urlsplit(endpoint_url)
    base = parts.path[:-1] if parts.path.endswith("/") and path.startswith("/") else parts.path
    return urlunsplit((parts.scheme, parts.netloc, base + path, parts.query, parts.fragment))


def unsigned_request(operation_model: Any, params: dict[str, Any], endpoint_url: str) -> AWSRequest:
    """The request before signing: method, URL, Content-Type and the JSON body."""
    body = serialize_body(params, operation_model.input_shape)
    return AWSRequest(
        method=operation_model.http.get("method", "POST"),
        url=join_url(endpoint_url, operation_model.http["requestUri"]),
        headers={"Content-Type": "application/json"},
        data=body,
    )


def sign(request: AWSRequest, credentials: Any, region: str) -> None:
    """SigV4 header signing; ``credentials`` None raises botocore's NoCredentialsError."""
    SigV4Auth(credentials, SIGNING_NAME, region).add_auth(request)


def presign(request: AWSRequest, credentials: Any, region: str, expires_in: int) -> str:
    """SigV4 query signing: botocore moves the JSON body members into the query string."""
    SigV4QueryAuth(credentials, SIGNING_NAME, region, expires=expires_in).add_auth(request)
    return str(request.prepare().url)


def finish(request: AWSRequest, extra_headers: dict[str, str]) -> HttpRequest:
    """Add the headers botocore adds after signing (User-Agent, amz-sdk-*)."""
    headers = {key: _text(value) for key, value in request.headers.items()}
    headers.update(extra_headers)
    return HttpRequest(request.method, request.url, headers, request.body or b"")


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
