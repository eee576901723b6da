"""SigV4 verification, sans-I/O: what arrived in, the caller's access key or an AWS error out.

The server hands over the request exactly as received (method, raw path and
query, header pairs, payload hash) and the time; nothing here reads sockets or
clocks, so the AWS test-suite vectors and botocore-signed requests test it
directly. The canonical request is rebuilt from the raw values on purpose: the
producer SDKs sign ``Host`` without its port and leave ``x-amz-security-token``
unsigned (spec §1, §10), and only what the client actually signed can match.

Error types and messages follow what AWS returns for ``kinesisvideo`` (403 with
``x-amzn-ErrorType``; wording from real responses quoted in SDK issues).
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote

from botocore.utils import normalize_url_path

from openkvs.server.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "kinesisvideo"
TERMINATOR = "aws4_request"
MAX_SKEW_S = 300  # AWS's 5 minutes, both directions
MAX_EXPIRES_S = 604_800  # a presigned URL lives at most 7 days
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
TOKEN_HEADER = "x-amz-security-token"
_QUERY_AUTH = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-SignedHeaders",
    "X-Amz-Date",
)
_HEADER_AUTH = ("Credential", "SignedHeaders", "Signature")

MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
UNKNOWN_TOKEN = "The security token included in the request is invalid."


@dataclass(frozen=True)
class Secret:
    """One configured key; ``session_token`` set means requests must carry that token."""

    access_key: str
    secret_key: str
    session_token: str | None = None


@dataclass(frozen=True)
class Received:
    """A request as it arrived: ``target`` is the raw path and query, headers in wire order."""

    method: str
    target: str
    headers: Sequence[tuple[str, str]]
    payload_hash: str

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> list[tuple[str, str]]:
        """Decoded query pairs, in order."""
        pairs = []
        for part in self.target.partition("?")[2].split("&"):
            if part:
                key, _, value = part.partition("=")
                pairs.append((unquote(key), unquote(value)))
        return pairs


@dataclass(frozen=True)
class Claim:
    """What a request says about its own signature (Authorization header or query string)."""

    access_key: str
    scope_date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str
    timestamp: str  # ISO-8601 basic, as signed
    presigned: bool
    expires_s: int = 0
    token: str | None = None

    @property
    def scope(self) -> str:
        return f"{self.scope_date}/{self.region}/{self.service}/{self.terminator}"


def is_presigned(request: Received) -> bool:
    """Query-string auth (a presigned URL) is recognised by its ``X-Amz-Algorithm``, as on AWS."""
    return any(key == "X-Amz-Algorithm" for key, _ in request.query)


def has_auth(request: Received) -> bool:
    """Whether the request tries any AWS authentication (else: MissingAuthenticationToken)."""
    return request.header("authorization") is not None or is_presigned(request)


def verify(
    request: Received,
    lookup: Callable[[str], Secret | None],
    now: float | None = None,
    service: str = SERVICE,
) -> Secret:
    """The key that signed ``request``; raises the AWS error a mismatch gets."""
    now = time.time() if now is None else now
    claim = parse_claim(request)
    check_scope(claim, service)
    secret = lookup(claim.access_key)
    if secret is None:
        raise UnrecognizedClientException(UNKNOWN_TOKEN)
    check_token(secret, claim.token or request.header(TOKEN_HEADER))
    check_time(claim, now)
    creq = canonical_request(request, claim)
    sts = string_to_sign(claim, creq)
    expected = signature(secret.secret_key, claim, sts)
    if not hmac.compare_digest(expected, claim.signature):
        raise InvalidSignatureException(
            f"{MISMATCH}\n\nThe Canonical String for this request should have been\n'{creq}'"
            f"\n\nThe String-to-Sign should have been\n'{sts}'\n"
        )
    return secret


# ---- parsing ---------------------------------------------------------------------------


def parse_claim(request: Received) -> Claim:
    """The signature a request claims; one mechanism only, malformed ones are Incomplete."""
    header = request.header("authorization")
    if is_presigned(request):
        if header is not None:
            raise IncompleteSignatureException(
                "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' "
                "as HTTP header."
            )
        return _query_claim(request)
    if header is None:
        raise MissingAuthenticationTokenException("Missing Authentication Token")
    return _header_claim(request, header)


def _header_claim(request: Received, header: str) -> Claim:
    algorithm, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    if algorithm == ALGORITHM:
        for part in (p.strip() for p in rest.split(",")):
            key, eq, value = part.partition("=")
            if not eq:
                raise IncompleteSignatureException(
                    f"'{part}' not a valid key=value pair (missing equal-sign) in "
                    f"Authorization header: '{header}'."
                )
            params[key.strip()] = value.strip()
    problems = [
        f"Authorization header requires '{k}' parameter." for k in _HEADER_AUTH if k not in params
    ]
    timestamp = request.header("x-amz-date") or _from_http_date(request.header("date"))
    if timestamp is None:
        problems.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if problems or timestamp is None:
        raise IncompleteSignatureException(" ".join(problems) + f" Authorization={header}")
    return _claim(params["Credential"], params["SignedHeaders"], params["Signature"], timestamp)


def _query_claim(request: Received) -> Claim:
    query = dict(request.query)
    missing = [
        f"AWS query-string parameters must include '{k}'." for k in _QUERY_AUTH if k not in query
    ]
    if missing:
        raise IncompleteSignatureException(
            " ".join(missing) + " Re-examine the query-string parameters."
        )
    if query["X-Amz-Algorithm"] != ALGORITHM:
        raise IncompleteSignatureException(
            f"Unsupported AWS 'algorithm': '{query['X-Amz-Algorithm']}'."
        )
    raw_expires = query.get("X-Amz-Expires", "")
    if not raw_expires.isdigit() or not 0 < int(raw_expires) <= MAX_EXPIRES_S:
        raise IncompleteSignatureException(
            f"X-Amz-Expires must be a whole number of seconds from 1 to {MAX_EXPIRES_S}, "
            f"got '{raw_expires}'."
        )
    claim = _claim(
        query["X-Amz-Credential"],
        query["X-Amz-SignedHeaders"],
        query["X-Amz-Signature"],
        query["X-Amz-Date"],
        presigned=True,
        expires_s=int(raw_expires),
    )
    token = query.get("X-Amz-Security-Token")
    return claim if token is None else replace(claim, token=token)


def _claim(
    credential: str,
    signed: str,
    sig: str,
    timestamp: str,
    *,
    presigned: bool = False,
    expires_s: int = 0,
) -> Claim:
    parts = credential.split("/")
    if len(parts) != 5:
        raise IncompleteSignatureException(
            "Credential must have exactly 5 slash-delimited elements, e.g. "
            f"keyid/date/region/service/term, got '{credential}'"
        )
    key, date, region, service, terminator = parts
    return Claim(
        key,
        date,
        region,
        service,
        terminator,
        tuple(h.strip().lower() for h in signed.split(";") if h.strip()),
        sig.lower(),
        timestamp,
        presigned,
        expires_s,
    )


def _from_http_date(value: str | None) -> str | None:
    """An RFC 1123 ``Date`` header as ISO-8601 basic (SigV4 accepts either)."""
    if not value:
        return None
    try:
        return time.strftime(TIME_FORMAT, parsedate_to_datetime(value).utctimetuple())
    except (TypeError, ValueError):
        return None


def _epoch(timestamp: str) -> float:
    try:
        return calendar.timegm(time.strptime(timestamp, TIME_FORMAT))
    except ValueError:
        raise IncompleteSignatureException(
            f"Date must be in ISO-8601 'basic format'. Got '{timestamp}'. "
            "See http://en.wikipedia.org/wiki/ISO_8601"
        ) from None


def _iso(epoch: float) -> str:
    return time.strftime(TIME_FORMAT, time.gmtime(epoch))


# ---- checks ----------------------------------------------------------------------------


def check_scope(claim: Claim, service: str = SERVICE) -> None:
    """Any region is fine on a self-hosted server, but it must be the one signed with."""
    if claim.service != service:
        raise InvalidSignatureException(
            f"Credential should be scoped to correct service: '{service}'. "
        )
    if claim.terminator != TERMINATOR:
        raise InvalidSignatureException(
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
            f"not '{claim.terminator}'. "
        )
    if not claim.region:
        raise InvalidSignatureException("Credential should be scoped to a valid region, not ''. ")
    if "host" not in claim.signed_headers:
        raise InvalidSignatureException(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )
    if claim.timestamp[:8] != claim.scope_date:
        raise InvalidSignatureException(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{claim.scope_date}' != '{claim.timestamp[:8]}', from '{claim.timestamp}'."
        )


def check_token(secret: Secret, token: str | None) -> None:
    """A key with a session token needs exactly that token; a key without one takes none."""
    token = token or None
    if secret.session_token is None and token is None:
        return
    if secret.session_token is None or token is None:
        raise UnrecognizedClientException(UNKNOWN_TOKEN)
    if not hmac.compare_digest(secret.session_token.encode(), token.encode()):
        raise UnrecognizedClientException(UNKNOWN_TOKEN)


def check_time(claim: Claim, now: float) -> None:
    """5 minutes of skew either way; a presigned URL also dies ``X-Amz-Expires`` after signing."""
    signed = _epoch(claim.timestamp)
    if signed > now + MAX_SKEW_S:
        raise InvalidSignatureException(
            f"Signature not yet current: {claim.timestamp} is still later than "
            f"{_iso(now + MAX_SKEW_S)} ({_iso(now)} + 5 min.)"
        )
    if claim.presigned:
        if now > signed + claim.expires_s:
            raise InvalidSignatureException(
                f"Signature expired: {claim.timestamp} is now earlier than "
                f"{_iso(now - claim.expires_s)} ({_iso(now)} - {claim.expires_s} sec.)"
            )
    elif signed < now - MAX_SKEW_S:
        raise InvalidSignatureException(
            f"Signature expired: {claim.timestamp} is now earlier than "
            f"{_iso(now - MAX_SKEW_S)} ({_iso(now)} - 5 min.)"
        )


# ---- the signature ---------------------------------------------------------------------


def canonical_request(request: Received, claim: Claim) -> str:
    """Rebuilt from the raw request and exactly the headers the client says it signed."""
    headers = "".join(f"{name}:{_header_value(request, name)}\n" for name in claim.signed_headers)
    return "\n".join(
        [
            request.method.upper(),
            quote(normalize_url_path(request.path), safe="/~"),
            canonical_query(request.query, drop_signature=claim.presigned),
            headers,
            ";".join(claim.signed_headers),
            request.payload_hash,
        ]
    )


def canonical_query(pairs: Iterable[tuple[str, str]], drop_signature: bool = False) -> str:
    """Decoded pairs re-encoded strictly (RFC 3986) and sorted, so any client encoding matches."""
    encoded = sorted(
        (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
        for k, v in pairs
        if not (drop_signature and k == "X-Amz-Signature")
    )
    return "&".join(f"{k}={v}" for k, v in encoded)


def _header_value(request: Received, name: str) -> str:
    """SigV4's Trimall: values trimmed, inner runs of spaces collapsed, repeats comma-joined."""
    return ",".join(" ".join(v.split()) for v in request.header_values(name))


def string_to_sign(claim: Claim, creq: str) -> str:
    digest = hashlib.sha256(creq.encode()).hexdigest()
    return f"{ALGORITHM}\n{claim.timestamp}\n{claim.scope}\n{digest}"


def signature(secret_key: str, claim: Claim, sts: str) -> str:
    """HMAC chain over the scope the client chose: any region verifies, but only its own."""
    key = ("AWS4" + secret_key).encode()
    for part in (claim.scope_date, claim.region, claim.service, claim.terminator):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
