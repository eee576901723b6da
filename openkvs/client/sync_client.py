"""The synchronous client: urllib3 underneath, botocore's ``StreamingBody`` as the payload.

The response is opened with ``preload_content=False`` and handed over unread,
so ``Payload`` streams a live GetMedia response as it arrives.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import urllib3
from botocore.httpsession import get_cert_path
from botocore.response import StreamingBody
from urllib3 import exceptions as u3

from openkvs.client import errors
from openkvs.client.base import BaseClient
from openkvs.client.core import ClientSettings
from openkvs.client.errors import ErrorTable


class KinesisVideoMediaClient(BaseClient):
    """boto3's ``kinesis-video-media`` client: same methods, arguments, results and exceptions."""

    def __init__(self, settings: ClientSettings) -> None:
        super().__init__(settings)
        config = settings.config
        self._pool = urllib3.PoolManager(
            maxsize=config.max_pool_connections,
            timeout=urllib3.Timeout(connect=config.connect_timeout, read=config.read_timeout),
            retries=False,
            **tls_options(settings.verify),
        )

    def get_media(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """GetMedia; ``Payload`` is a ``StreamingBody`` over the open connection."""
        call = self._core.start("get_media", args, kwargs)
        while True:
            request = call.next_request()
            try:
                response = self._pool.urlopen(
                    request.method,
                    request.url,
                    body=request.body,
                    headers=request.headers,
                    redirect=False,
                    assert_same_host=False,
                    preload_content=False,
                    decode_content=False,
                )
                headers = errors.headers_dict(response.headers.items())
                if response.status < 300:
                    body = StreamingBody(response, headers.get("content-length"))
                    return call.result(response.status, headers, body)
                content = response.read()
                response.release_conn()
            except (u3.HTTPError, OSError) as exc:
                error = errors.transport_error(exc, request.url, URLLIB3_ERRORS)
                time.sleep(call.retry_after_exception(error))
                continue
            time.sleep(call.retry_after_error(response.status, headers, content))

    def close(self) -> None:
        """Close the pooled connections (payloads still being read keep theirs)."""
        self._pool.clear()

    def __enter__(self) -> KinesisVideoMediaClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def tls_options(verify: bool | str | None) -> dict[str, Any]:
    """urllib3 certificate options for botocore's ``verify`` (False, a CA bundle path, or True)."""
    if verify is False:
        return {"cert_reqs": "CERT_NONE"}
    return {
        "cert_reqs": "CERT_REQUIRED",
        "ca_certs": get_cert_path(True if verify is None else verify),
    }


# botocore's urllib3 session raises these for urllib3's errors (first match wins).
URLLIB3_ERRORS: ErrorTable = [
    (u3.SSLError, "ssl"),
    ((u3.NewConnectionError, socket.gaierror), "connect"),
    (u3.ProxyError, "proxy"),
    (u3.ConnectTimeoutError, "connect_timeout"),
    (u3.ReadTimeoutError, "read_timeout"),
    ((u3.ProtocolError, ConnectionError), "closed"),
]
