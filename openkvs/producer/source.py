"""Producer input: any byte source cut into whole fragments, one per Cluster.

The producer keeps each fragment until the server acknowledges it, so it cuts
the input with the same fragmenter the server uses. Blocking reads (files,
pipes, plain iterators) run in a thread so the event loop keeps reading ACKs.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from openkvs.clock import now_ms
from openkvs.wire.fragmenter import END_OF_FRAGMENT, FragmentDone, Fragmenter
from openkvs.wire.mkv.elements import tags_element

PIECE = 1 << 20
END_OF_FRAGMENT_TAGS = tags_element([(END_OF_FRAGMENT, "")])
"""Appended to each fragment so the server completes it at once, as the C SDK does."""

Source = str | Path | bytes | bytearray | IO[bytes] | Iterable[bytes] | AsyncIterable[bytes]


@dataclass(frozen=True, slots=True)
class InputFragment:
    header: bytes
    """EBML header, Segment start, Info and Tracks: what each PutMedia body starts with."""
    timecode: int
    producer_ms: int
    data: bytes


class InputError(Exception):
    """The input is not a Matroska stream the service would accept."""


async def read_bytes(source: Source) -> AsyncIterator[bytes]:
    """Yield the source's bytes: a path ('-' is stdin), bytes, a binary file or an iterator."""
    if isinstance(source, bytes | bytearray):
        view = memoryview(source)
        for i in range(0, len(view), PIECE):
            yield bytes(view[i : i + PIECE])
        return
    if isinstance(source, AsyncIterable):
        async for data in source:
            yield data
        return
    if isinstance(source, str | Path):
        if str(source) == "-":
            async for data in read_bytes(sys.stdin.buffer):
                yield data
            return
        with open(source, "rb") as file:
            async for data in read_bytes(file):
                yield data
        return
    read: Any = getattr(source, "read1", None) or getattr(source, "read", None)
    if read is None:
        iterator = iter(source)  # type: ignore[arg-type]
        read = lambda _size: next(iterator, b"")  # noqa: E731
    while data := await asyncio.to_thread(read, PIECE):
        yield data


async def read_fragments(source: Source) -> AsyncIterator[InputFragment]:
    """Cut the source into fragments as its bytes arrive (a live pipe included)."""
    fragmenter = Fragmenter(max_duration_ms=1 << 40)
    chunks = aiter(read_bytes(source))
    header = b""
    next_read: asyncio.Future[bytes] | None = None
    finished = False
    while not finished:
        if next_read is None:
            next_read = asyncio.ensure_future(anext(chunks, b""))
        deadline = fragmenter.deadline_ms()
        timeout = None if deadline is None else max(0.0, (deadline - now_ms()) / 1000)
        done, _ = await asyncio.wait({next_read}, timeout=timeout)
        if not done:
            events = fragmenter.tick(now_ms())
        else:
            data, next_read = next_read.result(), None
            finished = not data
            events = fragmenter.feed(data, now_ms()) if data else fragmenter.feed_eof(now_ms())
        for event in events:
            if isinstance(event, FragmentDone):
                header = header or event.header
                yield InputFragment(
                    header, event.timecode, event.producer_ms, event.body + END_OF_FRAGMENT_TAGS
                )
        if fragmenter.error is not None:
            if next_read is not None:
                next_read.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await next_read
            raise InputError(f"the input is not valid KVS Matroska: {fragmenter.error}")
