"""Readers at the live edge get a fragment while it arrives, not after it completes."""

from __future__ import annotations

import asyncio
import time

from tests.kvs import LiveReader, chunks, create_stream, get_media, numbers
from tests.layout import aws_tags
from tests.media import cluster, end_of_fragment, simple_block, synthetic_mkv
from tests.producer import put_media

FIRST, SECOND = b"first-frame-" * 100, b"second-frame" * 100


def slow_fragment() -> list[bytes]:
    """One fragment sent in two halves 0.8 s apart, then its end-of-fragment tag."""
    body = synthetic_mkv([cluster(1000, [simple_block(1, 0, FIRST)])])
    return [body, simple_block(1, 40, SECOND), end_of_fragment()]


def send(server, name: str, pieces: list[bytes], delay: float) -> dict[str, float]:  # noqa: ANN001
    """Send ``pieces`` with ``delay`` between them; when each ACK type first arrived."""
    seen: dict[str, float] = {}

    def on_ack(ack: dict) -> None:
        seen.setdefault(ack["EventType"], time.monotonic())

    result = asyncio.run(
        put_media(server.url, name, pieces, delay=delay, on_ack=on_ack, start_timestamp=None)
    )
    assert not result.events("ERROR"), result.acks
    return seen


def arrived(reader: LiveReader, marker: bytes) -> float:
    """When the reader's bytes first held ``marker``."""
    for at, size in reader.arrivals:
        if marker in reader.data[:size]:
            return at
    raise AssertionError(f"{marker[:12]!r} never arrived")


def test_a_now_reader_gets_frames_before_the_fragment_completes(make_server) -> None:
    server = make_server("--getmedia-idle-timeout-s", "1")
    create_stream(server, "edge")
    reader = LiveReader(server, "edge", {"StartSelectorType": "NOW"})
    acks = send(server, "edge", slow_fragment(), delay=0.8)
    reader.join(10)
    assert reader.error is None
    first, second = arrived(reader, FIRST), arrived(reader, SECOND)
    assert first < acks["RECEIVED"] - 0.5, "the first frame waited for the fragment to complete"
    assert second < acks["RECEIVED"] + 0.5
    live = bytes(reader.data)
    stored = get_media(server, "edge", {"StartSelectorType": "EARLIEST"})
    assert numbers(live) == numbers(stored) and len(numbers(live)) == 1
    tags = [{k: v for k, v in t.items() if k != "MILLIS_BEHIND_NOW"} for t in aws_tags(live)]
    assert tags == [{k: v for k, v in t.items() if k != "MILLIS_BEHIND_NOW"} for t in aws_tags(stored)]
    (live_chunk,), (stored_chunk,) = chunks(live), chunks(stored)
    assert len(live_chunk) == len(stored_chunk)  # same bytes but for the MILLIS_BEHIND_NOW value


def test_a_fragment_that_is_never_stored_breaks_the_live_read(make_server) -> None:
    """The producer goes away mid-fragment: a live reader must not keep half a chunk."""
    server = make_server("--getmedia-idle-timeout-s", "5")
    create_stream(server, "cut")
    reader = LiveReader(server, "cut", {"StartSelectorType": "NOW"})
    body = synthetic_mkv([cluster(1000, [simple_block(1, 0, FIRST)])])

    async def half_then_drop() -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        head = (
            "POST /putMedia HTTP/1.1\r\nHost: x\r\nx-amzn-stream-name: cut\r\n"
            "x-amzn-fragment-timecode-type: ABSOLUTE\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        writer.write(head.encode() + b"%x\r\n" % len(body) + body + b"\r\n")
        await writer.drain()
        await asyncio.sleep(0.8)
        writer.transport.abort()  # ...and the connection breaks

    asyncio.run(half_then_drop())
    reader.join(10)
    assert not reader.is_alive() and reader.error is not None  # aborted, not left hanging
    assert FIRST in reader.data  # it was being forwarded
    assert numbers(get_media(server, "cut", {"StartSelectorType": "EARLIEST"})) == []
