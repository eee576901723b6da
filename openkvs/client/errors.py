"""Outcomes as botocore reports them: result dicts, service and transport exceptions (no I/O).

botocore's own rest-json parser does the parsing, so ``ResponseMetadata``,
``Error`` and the modeled ``Message`` member come out exactly as boto3 users
see them, whichever transport received the bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from botocore.awsrequest import HeadersDict
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ProxyConnectionError,
    ReadTimeoutError,
    SSLError,
)
from botocore.parsers import create_parser

_PARSER = create_parser("rest-json")


def headers_dict(pairs: Iterable[tuple[str, str]]) -> HeadersDict:
    """Case-insensitive headers with repeats joined by ", ", as urllib3 presents them."""
    merged: dict[str, tuple[str, list[str]]] = {}
    for name, value in pairs:
        merged.setdefault(name.lower(), (name, []))[1].append(value)
    return HeadersDict({name: ", ".join(values) for name, values in merged.values()})


def parse_success(operation_model: Any, status: int, headers: HeadersDict, payload: Any) -> dict:
    """The result dict; a streaming output member gets ``payload`` itself, unread."""
    response = {"headers": headers, "status_code": status, "body": payload}
    parsed: dict = _PARSER.parse(response, operation_model.output_shape)
    return parsed


def parse_error(operation_model: Any, status: int, headers: HeadersDict, body: bytes) -> dict:
    """The error dict, plus the modeled members of a known error (botocore's second pass)."""
    response = {"headers": headers, "status_code": status, "body": body}
    parsed: dict = _PARSER.parse(response, operation_model.output_shape)
    code = error_code(parsed)
    shape = operation_model.service_model.shape_for_error_code(code) if code else None
    if shape is not None:
        parsed.update(_PARSER.parse(response, shape))
    return parsed


def error_code(parsed: dict) -> str | None:
    error = parsed.get("Error", {})
    return error.get("Code") if isinstance(error, dict) else None


def raise_error(exceptions: Any, parsed: dict, operation_name: str) -> NoReturn:
    """The modeled exception class for the code, else plain ClientError, as botocore raises."""
    raise exceptions.from_code(error_code(parsed))(parsed, operation_name)


ErrorTable = Sequence[tuple[type | tuple[type, ...], str]]

_TRANSPORT_ERRORS: dict[str, Any] = {
    "ssl": SSLError,
    "connect": EndpointConnectionError,
    "proxy": ProxyConnectionError,
    "connect_timeout": ConnectTimeoutError,
    "read_timeout": ReadTimeoutError,
    "closed": ConnectionClosedError,
}


def transport_error(exc: BaseException, url: str, table: ErrorTable) -> Exception:
    """The botocore exception for an HTTP library's ``exc``, by the first matching ``table`` row.

    Each transport lists its own exception classes against the kinds above,
    so both clients raise what botocore's urllib3 session raises.
    """
    for classes, kind in table:
        if isinstance(exc, classes):
            where = "proxy_url" if kind == "proxy" else "endpoint_url"
            error: Exception = _TRANSPORT_ERRORS[kind](**{where: url}, error=exc)
            return error
    return HTTPClientError(error=exc)
