"""Reading GetMedia output: a sans-I/O FragmentReader and ``iter_fragments``.

Feed it the payload's bytes as they arrive; it returns each fragment as soon as
its trailing AWS tags (MILLIS_BEHIND_NOW, CONTINUATION_TOKEN) arrive, and the
last one at the end of the payload, so nothing waits for the next fragment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import botocore.exceptions
import urllib3.exceptions

from openkvs.media.decode import decode_arrays, decode_frames
from openkvs.wire import error_ids
from openkvs.wire.chunk import ChunkTags
from openkvs.wire.mkv import ebml
from openkvs.wire.mkv.elements import (
    BlockHeader,
    TrackEntry,
    parse_simple_tags,
    parse_timecode_scale,
    parse_tracks,
)
from openkvs.wire.mkv.reader import (
    ClusterStart,
    EbmlHeader,
    Element,
    EndOfStream,
    MkvReader,
    SegmentStart,
)


class GetMediaError(Exception):
    """An in-band error chunk (spec §6.2): the service could not deliver a fragment."""

    def __init__(self, error_id: int, error_code: str, fragment_number: str | None) -> None:
        super().__init__(
            f"GetMedia error {error_id} ({error_code}: {error_ids.meaning(error_id)}) "
            f"at fragment {fragment_number}"
        )
        self.error_id, self.error_code, self.fragment_number = error_id, error_code, fragment_number


@dataclass(slots=True)
class Frame:
    track: int
    timestamp_ms: int
    keyframe: bool
    data: bytes


@dataclass
class MediaFragment:
    """One GetMedia chunk: its AWS metadata, the producer's tags, tracks, frames and bytes."""

    number: str | None = None
    server_timestamp_ms: int | None = None
    producer_timestamp_ms: int | None = None
    millis_behind_now: int | None = None
    continuation_token: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    tracks: list[TrackEntry] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    raw: bytes = b""

    def decode(self, video_only: bool = False) -> Iterator[Any]:
        """PyAV frames of this fragment (needs ``pip install 'openkvs[decode]'``)."""
        return decode_frames(self.raw, video_only)

    def to_arrays(self, pixel_format: str = "rgb24") -> Iterator[Any]:
        """Each video frame as a numpy array (needs ``pip install 'openkvs[decode]'``)."""
        return decode_arrays(self.raw, pixel_format)


class FragmentReader:
    """Sans-I/O: ``feed(data)`` returns the fragments completed by ``data``."""

    def __init__(self) -> None:
        self._reader = MkvReader()
        self._current: MediaFragment | None = None
        self._parts: list[bytes] = []
        self._scale = 1_000_000
        self._cluster_ms = 0
        self._seen_cluster = False
        self.error: GetMediaError | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[MediaFragment]:
        self._raise()
        self._reader.feed(data)
        return self._drain()

    def feed_eof(self) -> list[MediaFragment]:
        self._raise()
        self._reader.feed_eof()
        out = self._drain()
        self._raise()
        return out

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _drain(self) -> list[MediaFragment]:
        out: list[MediaFragment] = []
        while (event := self._reader.next_event()) is not None:
            if isinstance(event, EbmlHeader):
                self._finish(out)
                self._current = MediaFragment()
                self._parts = [event.raw]
                self._scale, self._seen_cluster = 1_000_000, False
            elif isinstance(event, EndOfStream):
                self._finish(out)
            elif self._current is not None:
                if isinstance(event, SegmentStart | ClusterStart):
                    self._parts.append(event.raw)
                    self._seen_cluster |= isinstance(event, ClusterStart)
                elif isinstance(event, Element):
                    self._parts.append(event.raw)
                    if self._element(event):
                        self._finish(out)
            if self.error is not None:
                break
        return out

    def _element(self, element: Element) -> bool:
        """Take in one element; True when it completes the fragment."""
        current = self._current
        assert current is not None
        payload = element.payload
        if element.id == ebml.INFO:
            self._scale = parse_timecode_scale(payload)
        elif element.id == ebml.TRACKS:
            current.tracks = parse_tracks(payload)
        elif element.id == ebml.CLUSTER_TIMECODE:
            self._cluster_ms = ebml.read_uint(payload) * self._scale // 1_000_000
        elif element.id in (ebml.SIMPLE_BLOCK, ebml.BLOCK_GROUP):
            self._frame(current, element)
        elif element.id == ebml.TAGS:
            return self._tags(current, parse_simple_tags(payload))
        return False

    def _frame(self, current: MediaFragment, element: Element) -> None:
        block, data = BlockHeader.parse(element.id, element.payload)
        timestamp = self._cluster_ms + block.timecode * self._scale // 1_000_000
        current.frames.append(Frame(block.track, timestamp, block.keyframe, bytes(data)))

    def _tags(self, current: MediaFragment, pairs: list[tuple[str, str]]) -> bool:
        tags = ChunkTags.parse(pairs)
        if tags.error_id is not None:
            self.error = GetMediaError(tags.error_id, tags.error_code or "", tags.fragment_number)
            self._current = None
            return False
        if tags.fragment_number is not None:  # the head's tags
            current.number = tags.fragment_number
            current.server_timestamp_ms = tags.server_ms
            current.producer_timestamp_ms = tags.producer_ms
        if tags.continuation_token is not None:  # the tail's
            current.millis_behind_now = tags.millis_behind_now
            current.continuation_token = tags.continuation_token
        current.tags.update(tags.producer_tags)
        return self._seen_cluster and tags.continuation_token is not None

    def _finish(self, out: list[MediaFragment]) -> None:
        if self._current is not None:
            self._current.raw = b"".join(self._parts)
            out.append(self._current)
        self._current, self._parts = None, []


class Readable(Protocol):
    def read(self, amt: int = ...) -> bytes: ...


def iter_fragments(payload: Readable, piece: int = 65536) -> Iterator[MediaFragment]:
    """Fragments from a GetMedia payload (boto3's StreamingBody or any ``read(n)``).

    ``read(n)`` of an HTTP body waits for all ``n`` bytes, which would hold a live
    fragment back until the next one arrives; so this reads with ``read1`` (what
    has arrived, up to ``n``) where the payload or the urllib3 response under
    boto3's StreamingBody has it.
    """
    reader = FragmentReader()
    read = _read_available(payload)
    while data := read(piece):
        yield from reader.feed(data)
    yield from reader.feed_eof()


class AsyncReadable(Protocol):
    async def read(self, amt: int = ...) -> bytes: ...


async def aiter_fragments(
    payload: AsyncReadable, piece: int = 65536
) -> AsyncIterator[MediaFragment]:
    """``iter_fragments`` for an async payload (``openkvs.aio``'s, whose read returns what has arrived)."""
    reader = FragmentReader()
    while data := await payload.read(piece):
        for fragment in reader.feed(data):
            yield fragment
    for fragment in reader.feed_eof():
        yield fragment


def _read_available(payload: Readable) -> Callable[[int], bytes]:
    """``read1`` of the payload, with the errors boto3's StreamingBody.read would raise."""
    raw = getattr(payload, "_raw_stream", payload)
    read1 = getattr(raw, "read1", None)
    if read1 is None:
        return payload.read

    def read(amt: int) -> bytes:
        try:
            return read1(amt)
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise botocore.exceptions.ReadTimeoutError(endpoint_url=exc.url, error=exc) from exc
        except urllib3.exceptions.ProtocolError as exc:
            raise botocore.exceptions.ResponseStreamingError(error=exc) from exc

    return read
