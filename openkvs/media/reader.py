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

from openkvs.getmedia import chunk as tags
from openkvs.media.decode import decode_arrays, decode_frames
from openkvs.mkv import ebml
from openkvs.mkv.elements import (
    TrackEntry,
    parse_block_header,
    parse_simple_tags,
    parse_timecode_scale,
    parse_tracks,
)
from openkvs.mkv.reader import (
    ClusterStart,
    EbmlHeader,
    Element,
    EndOfStream,
    MkvError,
    MkvReader,
    SegmentStart,
)

_AWS = "AWS_KINESISVIDEO_"


class GetMediaError(Exception):
    """An in-band error chunk (spec §6.2): the service could not deliver a fragment."""

    def __init__(self, error_id: int, error_code: str, fragment_number: str | None) -> None:
        super().__init__(f"GetMedia error {error_id} ({error_code}) at fragment {fragment_number}")
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


def _int(text: str, name: str) -> int:
    """A decimal AWS tag value; anything else is an MkvError, not a bare ValueError."""
    try:
        return int(text)
    except ValueError:
        raise MkvError(f"{name} is not a number: {text[:40]!r}") from None


def _ms(seconds: str, name: str) -> int:
    whole, _, frac = seconds.partition(".")
    sign = -1 if whole.startswith("-") else 1
    return _int(whole, name) * 1000 + sign * _int((frac + "000")[:3], name)


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
        payload = element.payload
        keyframe = element.id == ebml.SIMPLE_BLOCK
        if element.id == ebml.BLOCK_GROUP:
            children = dict(ebml.iter_children(payload))
            payload = children.get(ebml.BLOCK, memoryview(b""))
            keyframe = 0xFB not in children  # no ReferenceBlock: a keyframe
        track, relative, flags = parse_block_header(payload)
        head = ebml.read_size(payload, 0)
        assert head is not None
        keyframe = bool(flags & 0x80) if element.id == ebml.SIMPLE_BLOCK else keyframe
        timestamp = self._cluster_ms + relative * self._scale // 1_000_000
        current.frames.append(Frame(track, timestamp, keyframe, bytes(payload[head[1] + 3 :])))

    def _tags(self, current: MediaFragment, pairs: list[tuple[str, str]]) -> bool:
        values = dict(pairs)
        if tags.ERROR_ID in values:
            self.error = GetMediaError(
                _int(values[tags.ERROR_ID] or "0", tags.ERROR_ID),
                values.get(tags.ERROR_CODE, ""),
                values.get(tags.FRAGMENT_NUMBER),
            )
            self._current = None
            return False
        for name, value in pairs:
            if name == tags.FRAGMENT_NUMBER:
                current.number = value
            elif name == tags.SERVER_TIMESTAMP:
                current.server_timestamp_ms = _ms(value, name)
            elif name == tags.PRODUCER_TIMESTAMP:
                current.producer_timestamp_ms = _ms(value, name)
            elif name == tags.MILLIS_BEHIND_NOW:
                current.millis_behind_now = _int(value, name)
            elif name == tags.CONTINUATION_TOKEN:
                current.continuation_token = value
            elif not name.startswith(_AWS):
                current.tags[name] = value
        return self._seen_cluster and tags.CONTINUATION_TOKEN in values

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
