"""A chunked HTTP response body written straight to the socket.

aiohttp sends the status line, the headers and the closing ``0\\r\\n\\r\\n``; the
chunks in between are framed here. aiohttp's own chunked writer joins every
chunk with its framing into a new buffer (a copy of each fragment on Python
< 3.12.9), and a chunk framed once here can go to a thousand live readers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from openkvs.server.http import id_headers

COALESCE = 16 << 10  # parts smaller than this are copied next to their neighbours: one syscall


def frame(data: bytes) -> bytes:
    """``data`` as one HTTP chunk (a copy: for small pieces, or one sent to many readers)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def chunks_response(request: web.Request) -> web.StreamResponse:
    """The 200 ``video/webm`` response GetMedia-style chunks go in."""
    response = web.StreamResponse(status=200, headers=id_headers(request))
    response.content_type = "video/webm"
    response.enable_chunked_encoding()
    return response


async def begin_chunks(
    request: web.Request,
    response: web.StreamResponse,
    timeout: float,
    counted: Callable[[int], None] | None = None,
) -> ChunkedBody | None:
    """Send ``response``'s head; its body, or None if the client has gone already.
    ``counted`` is told how many bytes each write sends (a metric)."""
    writer = await response.prepare(request)
    transport = request.transport
    if writer is None or transport is None:
        return None
    return ChunkedBody(transport, writer, timeout, counted)


class ChunkedBody:
    """The body of one GetMedia response, after ``response.prepare``.

    ``timeout`` bounds how long a write may wait for a reader that takes nothing:
    such a reader would hold its connection slot forever.
    """

    def __init__(
        self,
        transport: asyncio.Transport,
        writer: AbstractStreamWriter,
        timeout: float,
        counted: Callable[[int], None] | None = None,
    ) -> None:
        self.transport = transport
        self.writer = writer
        self.timeout = timeout
        self.counted = counted or _uncounted

    @property
    def closed(self) -> bool:
        return self.transport.is_closing()

    def has_room(self) -> bool:
        """Is the socket's buffer under its high-water mark (a write need not wait)?"""
        transport = self.transport
        return transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[1]

    def send_framed_now(self, framed: bytes) -> None:
        """Write a chunk ``frame`` built, without waiting: the caller checked ``has_room``."""
        self.transport.write(framed)
        self.counted(len(framed))

    async def send_framed(self, framed: bytes) -> None:
        self._check_open()
        self.transport.write(framed)
        self.counted(len(framed))
        await self._drain()

    async def send(self, *parts: bytes) -> None:
        """One chunk holding ``parts`` in order: large parts are written as they are, runs of
        small ones joined into one write."""
        size = sum(map(len, parts))
        if not size:
            return
        self._check_open()
        write = self.transport.write
        head = b"%x\r\n" % size
        run, run_bytes = [head], 0
        for part in parts:
            if len(part) >= COALESCE:
                write(b"".join(run))
                write(part)
                run, run_bytes = [], 0
                continue
            run.append(part)
            run_bytes += len(part)
            if run_bytes >= COALESCE:
                write(b"".join(run))
                run, run_bytes = [], 0
        run.append(b"\r\n")
        write(b"".join(run))
        self.counted(len(head) + size + 2)
        await self._drain()

    def _check_open(self) -> None:
        if self.closed:
            raise ConnectionResetError("the reader went away")

    async def _drain(self) -> None:
        """Wait while the socket's buffer is over its high-water mark, up to ``timeout``."""
        if self.has_room():
            return
        async with asyncio.timeout(self.timeout):
            await self.writer.drain()


def _uncounted(size: int) -> None:
    pass
