"""Console sessions: a cookie issued for a valid access key, so a browser need not sign.

A person logs in to the web console once with an access key and its secret; the server
checks them against the same keys SigV4 uses and hands back a token in an ``HttpOnly;
SameSite=Strict`` cookie. The gate then treats a request that carries the cookie and the
console's own header as signed by that key: the access rules apply to it exactly as to a
signed request. The header is what a page on another site cannot send without a CORS
preflight, which OpenKVS never grants.

The token is ``key.issued.nonce.mac``, the MAC an HMAC-SHA256 under the key's own
secret, so every node of a cluster (same credentials) accepts it without shared state,
it survives a restart, and rotating the key ends its sessions. Logging out revokes the
token on the node that was asked (the browser drops the cookie everywhere).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping

from openkvs.server.auth.sigv4 import Secret

COOKIE = "openkvs_console"
HEADER = "X-OpenKVS-Console"
LIFETIME_S = 12 * 3600
MAX_REVOKED = 10_000  # past this, every session of this node ends: memory stays bounded
UNKNOWN = secrets.token_hex(20)  # compared against when the key is unknown


class ConsoleSessions:
    """Issues and checks console tokens for ``keys``, each valid ``lifetime_s``."""

    def __init__(
        self,
        keys: Mapping[str, Secret],
        lifetime_s: int = LIFETIME_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys, self.lifetime_s, self.clock = keys, lifetime_s, clock
        self._revoked: dict[str, int] = {}  # token -> its expiry
        self._not_before = 0  # tokens issued earlier are void (revocations overflowed)

    def login(self, access_key: str, secret: str) -> str | None:
        """A new token if ``secret`` is ``access_key``'s, else None."""
        known = self.keys.get(access_key)
        given = secret.encode(errors="surrogateescape")
        expected = (known.secret_key if known else UNKNOWN).encode(errors="surrogateescape")
        if not hmac.compare_digest(expected, given) or known is None or not _safe(access_key):
            return None  # the same work for an unknown key as for a wrong secret
        issued = int(self.clock())
        body = f"{access_key}.{issued}.{secrets.token_urlsafe(12)}"
        return f"{body}.{_mac(known, body)}"

    def access_key(self, token: str | None) -> str | None:
        """The key ``token`` was issued for, while it lasts."""
        if not token or not token.isascii() or token in self._revoked:
            return None
        body, _, mac = token.rpartition(".")
        parts = body.rsplit(".", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        access_key, issued = parts[0], int(parts[1])
        known = self.keys.get(access_key)
        if known is None or not hmac.compare_digest(mac.encode(), _mac(known, body).encode()):
            return None
        if not self._not_before <= issued <= self.clock() < issued + self.lifetime_s:
            return None
        return access_key

    def logout(self, token: str | None) -> None:
        if token is None or self.access_key(token) is None:
            return
        now = int(self.clock())
        self._revoked[token] = int(token.rsplit(".", 3)[1]) + self.lifetime_s
        if len(self._revoked) > MAX_REVOKED:
            self._revoked = {t: end for t, end in self._revoked.items() if end > now}
        if len(self._revoked) > MAX_REVOKED:  # never forget a live revocation: void them all
            self._not_before, self._revoked = now + 1, {}


def _safe(access_key: str) -> bool:
    """A key id a cookie can carry as it is (AWS's are letters and digits)."""
    return access_key.isascii() and all(c.isalnum() or c in "_-+/=:@" for c in access_key)


def _mac(key: Secret, body: str) -> str:
    message = f"openkvs-console\n{body}".encode()
    return hmac.new(
        key.secret_key.encode(errors="surrogateescape"), message, hashlib.sha256
    ).hexdigest()
