"""Readers at the live edge get a fragment while it arrives, not after it completes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from openkvs.wire.mkv import ebml
from tests.kvs import LiveReader, chunks, create_stream, get_media, numbers
from tests.layout import aws_tags
from tests.media import cluster, end_of_fragment, simple_block, synthetic_mkv
from tests.producer import put_media

FIRST, SECOND = b"first-frame-" * 100, b"second-frame" * 100


def first_half() -> bytes:
    """A PutMedia body up to the middle of its only fragment."""
    return synthetic_mkv([cluster(1000, [simple_block(1, 0, FIRST)])])


async def holds(reader: LiveReader, marker: bytes, seconds: float = 10) -> None:
    """Wait until the reader's bytes hold ``marker``."""
    deadline = time.monotonic() + seconds
    while marker not in reader.data:
        assert time.monotonic() < deadline, f"{marker[:12]!r} never arrived"
        await asyncio.sleep(0.01)


def test_a_now_reader_gets_frames_before_the_fragment_completes(make_server) -> None:
    """The producer sends the second frame only once the reader holds the first."""
    server = make_server("--getmedia-idle-timeout-s", "1")
    create_stream(server, "edge")
    reader = LiveReader(server, "edge", {"StartSelectorType": "NOW"})

    async def body() -> AsyncIterator[bytes]:
        yield first_half()
        await holds(reader, FIRST)  # forwarded while the fragment is still open
        yield simple_block(1, 40, SECOND)
        await holds(reader, SECOND)
        yield end_of_fragment()

    result = asyncio.run(put_media(server.url, "edge", body(), start_timestamp=None))
    assert not result.events("ERROR"), result.acks
    reader.join(10)
    assert reader.error is None
    live = bytes(reader.data)
    stored = get_media(server, "edge", {"StartSelectorType": "EARLIEST"})
    assert numbers(live) == numbers(stored) and len(numbers(live)) == 1
    tags = [{k: v for k, v in t.items() if k != "MILLIS_BEHIND_NOW"} for t in aws_tags(live)]
    assert tags == [
        {k: v for k, v in t.items() if k != "MILLIS_BEHIND_NOW"} for t in aws_tags(stored)
    ]
    (live_chunk,), (stored_chunk,) = chunks(live), chunks(stored)
    assert without_tail(live_chunk) == without_tail(stored_chunk)


def test_a_fragment_that_is_never_stored_breaks_the_live_read(make_server) -> None:
    """The producer goes away mid-fragment: a live reader must not keep half a chunk."""
    server = make_server("--getmedia-idle-timeout-s", "5")
    create_stream(server, "cut")
    reader = LiveReader(server, "cut", {"StartSelectorType": "NOW"})
    body = first_half()

    async def half_then_drop() -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        head = (
            "POST /putMedia HTTP/1.1\r\nHost: x\r\nx-amzn-stream-name: cut\r\n"
            "x-amzn-fragment-timecode-type: ABSOLUTE\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        writer.write(head.encode() + b"%x\r\n" % len(body) + body + b"\r\n")
        await writer.drain()
        await holds(reader, FIRST)  # it is being forwarded...
        writer.transport.abort()  # ...and the connection breaks

    asyncio.run(half_then_drop())
    reader.join(10)
    assert not reader.is_alive() and reader.error is not None  # aborted, not left hanging
    assert FIRST in reader.data  # it was being forwarded
    assert numbers(get_media(server, "cut", {"StartSelectorType": "EARLIEST"})) == []


def without_tail(chunk: bytes) -> bytes:
    """A chunk up to its last Tags element (MILLIS_BEHIND_NOW there differs per reader)."""
    return chunk[: chunk.rfind(ebml.encode_id(ebml.TAGS))]


def test_live_readers_that_fall_behind_lose_nothing(make_server) -> None:
    """Seven readers keep up; one reads nothing while 24 MB go by, then catches up.

    The stream writes to caught-up readers itself. A reader whose socket fills (24 MB is
    more than the kernel buffers on both ends) is let go to catch up on its own, and must
    end with the same bytes as the rest, mid-fragment included.
    """
    server = make_server(
        "--no-rate-limits", "--getmedia-idle-timeout-s", "5", "--getmedia-max-connections", "9"
    )
    create_stream(server, "fan")
    now = {"StartSelectorType": "NOW"}
    keeping_up = [LiveReader(server, "fan", now) for _ in range(7)]
    media = server.client("kinesis-video-media", read_timeout=30)
    stalled = media.get_media(StreamName="fan", StartSelector=now)
    frame = bytes(range(256)) * 800  # 200 KB
    body = synthetic_mkv(
        [
            cluster(i * 1000, [simple_block(1, k * 100, frame) for k in range(10)])
            + end_of_fragment()
            for i in range(12)
        ]
    )
    pieces = [body[at : at + 100_000] for at in range(0, len(body), 100_000)]
    result = asyncio.run(put_media(server.url, "fan", pieces, delay=0.002, start_timestamp=None))
    assert not result.events("ERROR"), result.acks
    late = stalled["Payload"].read()
    for reader in keeping_up:
        reader.join(15)
        assert reader.error is None
    stored = get_media(server, "fan", {"StartSelectorType": "EARLIEST"})
    expected = [without_tail(c) for c in chunks(stored)]
    assert len(expected) == 12
    for payload in [bytes(r.data) for r in keeping_up] + [late]:
        assert [without_tail(c) for c in chunks(payload)] == expected
