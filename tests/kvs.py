"""Small helpers over the real boto3 clients for the media tests."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from openkvs.wire.mkv.reader import EbmlHeader, EndOfStream, MkvReader
from tests.conftest import ServerProcess
from tests.layout import aws_tags
from tests.producer import PutMediaResult, put_media


def create_stream(server: ServerProcess, name: str, retention: int = 24) -> str:
    client = server.client()
    return client.create_stream(StreamName=name, DataRetentionInHours=retention)["StreamARN"]


def put(server: ServerProcess, name: str, body: bytes, **options: Any) -> PutMediaResult:
    return asyncio.run(put_media(server.url, name, body, **options))


def get_media(server: ServerProcess, name: str, selector: dict[str, Any]) -> bytes:
    """A whole GetMedia response through boto3 (the server ends it after its idle timeout)."""
    media = server.client("kinesis-video-media", read_timeout=30)
    response = media.get_media(StreamName=name, StartSelector=selector)
    assert response["ContentType"] == "video/webm"
    return response["Payload"].read()


def chunks(payload: bytes) -> list[bytes]:
    """Cut a GetMedia payload at each EBML header."""
    reader = MkvReader()
    reader.feed(payload)
    reader.feed_eof()
    starts = []
    while True:
        offset = reader.offset
        event = reader.next_event()
        if event is None or isinstance(event, EndOfStream):
            break
        if isinstance(event, EbmlHeader):
            starts.append(offset)
    if not starts:
        return []
    return [payload[a:b] for a, b in zip(starts, starts[1:] + [len(payload)], strict=True)]


def numbers(payload: bytes) -> list[str]:
    return [tags.get("FRAGMENT_NUMBER", "") for tags in aws_tags(payload)]


class LiveReader(threading.Thread):
    """Reads a GetMedia response in the background, chunk by chunk as bytes arrive."""

    def __init__(self, server: ServerProcess, name: str, selector: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        media = server.client("kinesis-video-media", read_timeout=30)
        self.response = media.get_media(StreamName=name, StartSelector=selector)
        self.data = bytearray()
        self.arrivals: list[tuple[float, int]] = []
        self.error: Exception | None = None
        self.start()

    def run(self) -> None:
        import time

        body = self.response["Payload"]
        read = body._raw_stream.read1  # what has arrived, not a full 64 KiB
        try:
            while piece := read(65536):
                self.data += piece
                self.arrivals.append((time.monotonic(), len(self.data)))
        except Exception as exc:  # the server went away (e.g. killed at teardown)
            self.error = exc


def per_fragment(acks: list[dict]) -> dict[int | None, list[str]]:
    """Each fragment's ACK events in order (ACKs of different fragments interleave)."""
    events: dict[int | None, list[str]] = {}
    for ack in acks:
        events.setdefault(ack.get("FragmentTimecode"), []).append(ack["EventType"])
    return events
