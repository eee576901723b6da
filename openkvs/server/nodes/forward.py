"""PutMedia that reaches a node other than its stream's owner is relayed to the owner
(and GetMedia of a stream without retention, whose fragments only the owner holds).

Relayed, not redirected: a producer streams its body as it films, so a 307 would
need a body it can replay, and neither curl (the C producer SDK) nor most HTTP
clients follow a redirect of a streamed POST. The relay passes the request's
headers through untouched (the owner checks the same SigV4 signature, Host
included), streams the body up and the ACKs down as they come, and marks the
request so that a node never relays a relayed one: if ownership moved meanwhile,
the client gets AWS's InvalidEndpointException and asks GetDataEndpoint again.
While an owner that died still holds its lease, the relay waits the lease out
and then serves the stream here, so a producer's reconnect lands without a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from openkvs.server.errors import InvalidEndpointException, ServiceUnavailable
from openkvs.server.http import RAW_BODY
from openkvs.server.nodes.ownership import Ownership

log = logging.getLogger("openkvs.nodes")

FORWARDED = "x-openkvs-forwarded"
HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
     "trailer", "transfer-encoding", "upgrade", "expect")
)
RETRY_S = 0.5


class Forwarder:
    """Relays PutMedia to owners; one HTTP client per node, made on first use."""

    def __init__(self, ownership: Ownership, lease_s: float) -> None:
        self.ownership = ownership
        self.wait_s = lease_s + 2 * RETRY_S
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def put_media(self, request: web.Request, key: str) -> web.StreamResponse | None:
        """Relay the request to the stream's owner and return the response sent; None when
        this node owns the stream (now) and should serve it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while True:
            owner = await self.ownership.acquire(key)
            if owner is None:
                return None
            if request.headers.get(FORWARDED):
                raise InvalidEndpointException(
                    "This node no longer owns the stream; call GetDataEndpoint with "
                    "APIName PUT_MEDIA and use the endpoint it returns."
                )
            try:
                return await self._relay(request, owner, _body(request))
            except aiohttp.ClientConnectorError:  # nothing was sent: the owner is down
                if loop.time() >= deadline:
                    raise ServiceUnavailable(
                        "The stream's node cannot be reached; retry in a few seconds."
                    ) from None
                log.info("owner unreachable, waiting for its lease", extra={"owner": owner})
                await asyncio.sleep(RETRY_S)

    async def get_media(self, request: web.Request, key: str) -> web.StreamResponse | None:
        """Relay a GetMedia of a stream without retention to its owner, the only node that
        holds its fragments (in memory); None to serve it here. Its body was read already."""
        owner = await self.ownership.owner_elsewhere(key)
        if owner is None or request.headers.get(FORWARDED):
            return None
        try:
            return await self._relay(request, owner, request[RAW_BODY])
        except aiohttp.ClientConnectorError:
            return None  # the owner is down: its fragments went with it

    async def _relay(
        self, request: web.Request, owner: str, body: bytes | AsyncIterator[bytes]
    ) -> web.StreamResponse:
        if self._http is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
            self._http = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers[FORWARDED] = "1"
        async with self._http.post(
            owner.rstrip("/") + request.rel_url.path_qs,
            data=body,
            headers=headers,
            skip_auto_headers=("Content-Type",),
            expect100=not isinstance(body, bytes),  # headers now: the owner's 200 comes first
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status,
                headers={
                    k: v
                    for k, v in upstream.headers.items()
                    if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"
                },
            )
            response.enable_chunked_encoding()
            response.force_close()
            await response.prepare(request)
            with contextlib.suppress(aiohttp.ClientError, ConnectionError, RuntimeError):
                piece: list[bytes] = []
                async for data, chunk_ends in upstream.content.iter_chunks():
                    piece.append(data)
                    if chunk_ends:  # one ACK per HTTP chunk, as the owner sent them
                        await response.write(b"".join(piece))
                        piece.clear()
                if piece:
                    await response.write(b"".join(piece))
                await response.write_eof()
        return response


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for data in request.content.iter_any():
        yield data
