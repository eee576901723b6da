"""A PutMedia client for tests that sends what the C producer SDK sends (spec §10).

Raw asyncio sockets: full duplex (ACKs read while the body is still being
sent), chunked body, ``Expect: 100-continue``, each ACK one HTTP chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class PutMediaResult:
    status: int
    headers: dict[str, str]
    acks: list[dict] = field(default_factory=list)
    raw_chunks: list[bytes] = field(default_factory=list)
    body: bytes = b""

    def events(self, kind: str) -> list[dict]:
        return [a for a in self.acks if a.get("EventType") == kind]


async def _read_chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        size_line = await reader.readline()
        if not size_line:
            return
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await reader.readline()
            return
        data = await reader.readexactly(size)
        await reader.readexactly(2)
        yield data


async def put_media(
    url: str,
    stream_name: str,
    body: bytes | Iterable[bytes] | AsyncIterable[bytes],
    *,
    timecode_type: str = "ABSOLUTE",
    start_timestamp: str | None = "1700000000.000",
    piece: int = 16384,
    delay: float = 0.0,
    extra_headers: dict[str, str] | None = None,
    finish: bool = True,
    wait_for_acks: int | None = None,
    on_ack: Callable[[dict], None] | None = None,
    on_status: Callable[[int], None] | None = None,
) -> PutMediaResult:
    """Send ``body`` (bytes cut in ``piece``-sized chunks, or an iterable of chunks).

    ``on_status`` sees the response status as soon as it arrives (a 200 comes before
    the body is sent, as the KVS producer SDKs expect).
    """
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    headers = {
        "Host": parts.hostname or "",
        "x-amzn-stream-name": stream_name,
        "x-amzn-fragment-timecode-type": timecode_type,
        "x-amzn-fragment-acknowledgment-required": "1",
        "Transfer-Encoding": "chunked",
        "Connection": "keep-alive",
        "Content-Type": "application/json",
        "User-Agent": "openkvs-tests/1.0",
        "Expect": "100-continue",
    }
    if start_timestamp is not None:
        headers["x-amzn-producer-start-timestamp"] = start_timestamp
    headers.update(extra_headers or {})
    head = "POST /putMedia HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(head.encode() + b"\r\n")
    await writer.drain()
    while True:
        status_line = await reader.readline()
        status = int(status_line.split()[1])
        response_headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            key, _, value = line.decode().partition(":")
            response_headers[key.strip().lower()] = value.strip()
        if status != 100:
            break
    result = PutMediaResult(status, response_headers)
    if on_status is not None:
        on_status(status)
    if status != 200:
        length = int(response_headers.get("content-length", "0"))
        result.body = await reader.readexactly(length)
        writer.close()
        return result

    async def collect() -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await _collect(reader)

    async def _collect(reader: asyncio.StreamReader) -> None:
        async for chunk in _read_chunks(reader):
            result.raw_chunks.append(chunk)
            result.acks.append(json.loads(chunk))
            if on_ack is not None:
                on_ack(result.acks[-1])

    acks = asyncio.create_task(collect())
    try:
        async for data in _pieces(body, piece):
            if acks.done():
                break
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()
            if delay:
                await asyncio.sleep(delay)
        if wait_for_acks is not None:
            while len(result.acks) < wait_for_acks and not acks.done():
                await asyncio.sleep(0.01)
        if finish and not acks.done():
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except ConnectionError:
        pass
    try:
        await asyncio.wait_for(acks, 30)
    finally:
        writer.close()
    return result


async def _pieces(
    body: bytes | Iterable[bytes] | AsyncIterable[bytes], piece: int
) -> AsyncIterator[bytes]:
    if isinstance(body, AsyncIterable):
        async for data in body:
            yield data
        return
    if isinstance(body, bytes | bytearray):
        body = [body[i : i + piece] for i in range(0, len(body), piece)]
    for data in body:
        yield data
