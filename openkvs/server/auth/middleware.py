"""The aiohttp side of authentication: feed each request to the verifier, then the rules.

Everything about SigV4 itself lives in the sans-I/O ``sigv4`` module; this file
only decides what the payload hash is (spec §1, §10: PutMedia's streaming body is
never hashed), keeps the hashed body for the handler (``RAW_BODY``), and
renders refusals the way the handlers render AWS errors.
"""

from __future__ import annotations

import ast
import hashlib
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from openkvs.server.auth.keys import AuthConfigError, load_keys
from openkvs.server.auth.rules import AccessRules, Operation, load_rules, operations
from openkvs.server.auth.sessions import COOKIE, HEADER, ConsoleSessions
from openkvs.server.auth.sigv4 import (
    EMPTY_SHA256,
    UNSIGNED_PAYLOAD,
    Received,
    Secret,
    has_auth,
    is_presigned,
    verify,
)
from openkvs.server.config import Config
from openkvs.server.control.plane import VISIBLE_STREAMS, arn_stream, named_streams
from openkvs.server.errors import (
    AwsError,
    InvalidArgumentException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    NotAuthorizedException,
)
from openkvs.server.http import (
    RAW_BODY,
    error_response,
    read_body,
)
from openkvs.server.observe.health import PROBE_PATHS

log = logging.getLogger("openkvs.auth")

PUT_MEDIA = "putMedia"
CONTENT_SHA256 = "x-amz-content-sha256"
MAX_BODY = 1 << 20  # as read_json


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def gate_for(config: Config, environ: Mapping[str, str]) -> Gate:
    """The gate ``config`` asks for; AuthConfigError if the server must not start so."""
    keys = load_keys(config.credentials, environ)
    rules = load_rules(config.access_rules) if config.access_rules else None
    if not keys:
        if rules is not None:
            raise AuthConfigError(
                "--access-rules needs --credentials: without keys no request has a verified identity"
            )
        if not config.insecure and not is_loopback(config.host):
            raise AuthConfigError(
                f"refusing to serve on {config.host or 'all interfaces'} without credentials: "
                "anyone who can reach it could read, write and delete every stream. Pass "
                "--credentials FILE (or set OPENKVS_ACCESS_KEY_ID and OPENKVS_SECRET_ACCESS_KEY), "
                "or --insecure to serve without authentication anyway."
            )
        log.warning(
            "authentication is OFF: every request is accepted, signed or not (development mode); "
            "pass --credentials FILE to require SigV4",
            extra={"host": config.host},
        )
    else:
        log.info("SigV4 authentication on", extra={"keys": len(keys), "rules": rules is not None})
    return Gate(keys, rules, ops=operations() if rules else {})


@dataclass
class Gate:
    """Verifies every request against ``keys`` and, if given, the access ``rules``."""

    keys: dict[str, Secret]
    rules: AccessRules | None = None
    clock: Callable[[], float] = time.time
    ops: dict[str, Operation] = field(default_factory=dict)  # path -> operation, for the rules
    sessions: ConsoleSessions = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = ConsoleSessions(self.keys)

    @property
    def signed(self) -> bool:
        """Whether requests must prove a key (False: development mode)."""
        return bool(self.keys)

    def middleware(self) -> Middleware:
        @web.middleware
        async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
            try:
                access_key = await self.admit(request)
            except AwsError as err:
                log.info("request refused", extra={"path": request.path, "error": err.code})
                return error_response(request, err)
            if access_key is None or self.rules is None:
                return await handler(request)
            token = VISIBLE_STREAMS.set(self.rules.visible(access_key))
            try:
                return await handler(request)
            finally:
                VISIBLE_STREAMS.reset(token)

        return authenticate

    async def admit(self, request: web.Request) -> str | None:
        """The verified access key (None in development mode); raises the refusal."""
        if not self.keys or _session_resource(request) or _probe(request) or _console(request):
            return None
        op = request.match_info.get("op", "")
        received = Received(request.method, request.raw_path, list(request.headers.items()), "")
        if has_auth(received):
            access_key = await self._verify(request, op, received)
        else:
            session_key = self.console_key(request)
            if session_key is None:
                raise MissingAuthenticationTokenException("Missing Authentication Token")
            access_key = session_key
            if op != PUT_MEDIA:
                request[RAW_BODY] = await read_body(request, MAX_BODY)
        if self.rules is not None:
            operation = self.ops.get(op) or Operation(op, NotAuthorizedException)
            self.rules.check(access_key, operation, _stream_name(request, op))
        return access_key

    def console_key(self, request: web.Request) -> str | None:
        """The key of the console session the request carries (cookie and header both)."""
        if request.headers.get(HEADER) != "1":
            return None
        return self.sessions.access_key(request.cookies.get(COOKIE))

    async def _verify(self, request: web.Request, op: str, received: Received) -> str:
        received = replace(received, payload_hash=await self._payload_hash(request, op))
        secret = verify(received, self.keys.get, self.clock())
        if is_presigned(received) and not request.get(RAW_BODY, b"").strip():
            _body_from_query(request, received)
        return secret.access_key

    async def _payload_hash(self, request: web.Request, op: str) -> str:
        """PutMedia: the declared hash or that of "" (spec §1). Others: the body as received."""
        declared = request.headers.get(CONTENT_SHA256)
        if op == PUT_MEDIA:
            return declared or EMPTY_SHA256
        body = request[RAW_BODY] = await read_body(request, MAX_BODY)
        actual = hashlib.sha256(body).hexdigest()
        if declared and declared not in (UNSIGNED_PAYLOAD, actual):
            raise InvalidSignatureException(
                f"The provided '{CONTENT_SHA256}' header does not match what was computed."
            )
        return declared or actual


SESSION_PREFIXES = ("/hls/v1/", "/dash/v1/")
CONSOLE = "/console"


def _probe(request: web.Request) -> bool:
    """Health checks: a load balancer has no keys."""
    return request.method in ("GET", "HEAD") and request.path in PROBE_PATHS


def _console(request: web.Request) -> bool:
    """The console's own routes (its page and login): they check sessions themselves. By
    route, not by path, so that no other handler is reached under a look-alike path."""
    route = request.match_info.route.resource
    path = route.canonical if route is not None else ""
    return path == CONSOLE or path.startswith(CONSOLE + "/")


def _session_resource(request: web.Request) -> bool:
    """HLS and DASH session resources: their SessionToken is their only credential."""
    return request.method == "GET" and request.path.startswith(SESSION_PREFIXES)


def _body_from_query(request: web.Request, received: Received) -> None:
    """A presigned URL carries the operation's members in its query (botocore writes nested
    values as Python literals); give the handler them as the JSON body it expects."""
    params: dict[str, Any] = {}
    for key, value in received.query:
        if key.startswith("X-Amz-"):
            continue
        params[key] = value
        if value[:1] in "{[":
            try:
                params[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                pass
    if params:
        request[RAW_BODY] = json.dumps(params).encode()


RESOURCE_MEMBERS = {"deleteStream": ("StreamARN",)} | {
    op: ("ResourceARN",) for op in ("TagResource", "UntagResource", "ListTagsForResource")
}
"""The member each operation acts on, where that is not StreamName or StreamARN."""


def _stream_name(request: web.Request, op: str) -> str | None:
    """The stream the operation acts on (by name or ARN), for the access rules.

    Only the member the handler uses counts: another one naming a different stream
    (``"StreamName": "cam-1"`` beside a DeleteStream's StreamARN) would let a key
    act on a stream its rules do not cover; such a body is refused outright.
    """
    if op == PUT_MEDIA:
        name = request.headers.get("x-amzn-stream-name")
        return name if name is not None else arn_stream(request.headers.get("x-amzn-stream-arn"))
    try:
        body = json.loads(request.get(RAW_BODY) or b"{}")
    except (ValueError, UnicodeDecodeError):
        body = None
    body = body if isinstance(body, dict) else {}
    named = named_streams(body)
    if len(named) > 1:
        raise InvalidArgumentException(
            f"The request names more than one stream: {', '.join(sorted(named))}."
        )
    for member in RESOURCE_MEMBERS.get(op, ("StreamName", "StreamARN")):
        value = body.get(member)
        if isinstance(value, str):
            return value if member == "StreamName" else arn_stream(value)
    return None
