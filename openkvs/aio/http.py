"""aiohttp plumbing: the connection pool a client owns, and which botocore error each aiohttp error is."""

from __future__ import annotations

import ssl

import aiohttp
from botocore.config import Config
from botocore.httpsession import get_cert_path

from openkvs.client.errors import ErrorTable

# http.client (under urllib3 and botocore) sends only Accept-Encoding: identity;
# aiohttp's own Accept and gzip Accept-Encoding would be the only differences.
SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding")
EXTRA_HEADERS = {"Accept-Encoding": "identity"}


def http_session(config: Config, verify: bool | str | None) -> aiohttp.ClientSession:
    """One pool per client, sized and timed like botocore's (``Config`` timeouts, pool size)."""
    tls: ssl.SSLContext | bool = False
    if verify is not False:
        tls = ssl.create_default_context(cafile=get_cert_path(True if verify is None else verify))
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=config.max_pool_connections, ssl=tls),
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=config.connect_timeout, sock_read=config.read_timeout
        ),
        auto_decompress=False,
        skip_auto_headers=SKIP_AUTO_HEADERS,
    )


# What botocore raises for the same failures under urllib3 (first match wins).
AIOHTTP_ERRORS: ErrorTable = [
    (aiohttp.ClientSSLError, "ssl"),
    (aiohttp.ClientProxyConnectionError, "proxy"),
    (aiohttp.ClientConnectorError, "connect"),
    (aiohttp.ConnectionTimeoutError, "connect_timeout"),
    (TimeoutError, "read_timeout"),
    ((aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError), "closed"),
]
