"""HTTPS on the same port: the server's TLS context from ``--tls-cert``/``--tls-key``."""

from __future__ import annotations

import ssl

from openkvs.server.auth.keys import AuthConfigError
from openkvs.server.config import Config


def server_tls_context(config: Config) -> ssl.SSLContext | None:
    """None serves plain HTTP; a key without a certificate is a mistake worth stopping for."""
    if not config.tls_cert:
        if config.tls_key:
            raise AuthConfigError("--tls-key needs --tls-cert")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key or None)
    except (OSError, ssl.SSLError) as exc:
        raise AuthConfigError(f"cannot load TLS certificate {config.tls_cert}: {exc}") from None
    return context
