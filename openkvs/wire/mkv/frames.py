"""The frames of one stored fragment: what playback (MP4, TS, images) repackages.

Pure and copy-free: a fragment's header and Cluster bytes in, each frame's
track, time and a memoryview of its bytes out. A KVS fragment is one Cluster,
so a frame's time is its offset from the Cluster's Timecode, in milliseconds;
the caller adds the fragment's producer timestamp to place it in the stream.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from openkvs.wire.mkv import ebml
from openkvs.wire.mkv.elements import BlockHeader, TrackEntry, parse_timecode_scale, parse_tracks

LACING = 0x06
ENTERED = frozenset({ebml.SEGMENT, ebml.CLUSTER})


class FrameError(ValueError):
    """A Cluster whose blocks cannot be read as frames (truncated, laced, not EBML)."""


@dataclass(frozen=True, slots=True)
class Frame:
    track: int
    offset_ms: int
    """From the Cluster's Timecode (signed: B-frames may come before it)."""
    keyframe: bool
    data: memoryview


@dataclass(frozen=True, slots=True)
class Header:
    """A fragment header's tracks and TimecodeScale (ns)."""

    tracks: tuple[TrackEntry, ...]
    scale: int


def read_header(header: bytes | memoryview) -> Header:
    """The Info and Tracks of a producer header (EBML header, Segment start, then Segment
    children up to the first Cluster)."""
    view = memoryview(header)
    tracks: tuple[TrackEntry, ...] = ()
    scale = 1_000_000
    pos = 0
    try:
        while pos < len(view):
            element_id, payload, start, end = _element(view, pos)
            pos = start if element_id in ENTERED else end
            if element_id == ebml.INFO:
                scale = parse_timecode_scale(payload)
            elif element_id == ebml.TRACKS:
                tracks = tuple(parse_tracks(payload))
    except ebml.EbmlError as exc:
        raise FrameError(f"the fragment header is not readable: {exc}") from None
    return Header(tracks, scale)


def cluster_frames(body: Sequence[bytes] | bytes, scale: int) -> Iterator[Frame]:
    """Each frame of the fragment body (a Cluster, then Segment-level elements), in the
    order stored (decode order). ``body`` is the stored bytes or the parts as ingested."""
    parts = (body,) if isinstance(body, bytes | memoryview) else body
    for part in parts:
        yield from _frames(memoryview(part), scale)


def _frames(view: memoryview, scale: int) -> Iterator[Frame]:
    pos = 0
    try:
        while pos < len(view):
            element_id, payload, start, end = _element(view, pos)
            pos = start if element_id in ENTERED else end
            if element_id in (ebml.SIMPLE_BLOCK, ebml.BLOCK_GROUP):
                if element_id == ebml.SIMPLE_BLOCK and _laced(payload):
                    raise FrameError("laced blocks are not supported")
                block, data = BlockHeader.parse(element_id, payload)
                yield Frame(block.track, block.timecode * scale // 1_000_000, block.keyframe, data)
    except ebml.EbmlError as exc:
        raise FrameError(f"a block is not readable: {exc}") from None


def _laced(payload: memoryview) -> bool:
    got = ebml.read_size(payload, 0)
    return got is not None and len(payload) > got[1] + 2 and bool(payload[got[1] + 2] & LACING)


def _element(view: memoryview, pos: int) -> tuple[int, memoryview, int, int]:
    """``(id, payload, start, end)`` of the element at ``pos``; a Segment or Cluster
    (entered, not skipped) ends no later than ``view`` does."""
    got_id = ebml.read_id(view, pos)
    got_size = got_id and ebml.read_size(view, pos + got_id[1])
    if not got_id or not got_size:
        raise ebml.EbmlError("element header is truncated")
    size, size_len = got_size
    start = pos + got_id[1] + size_len
    end = len(view) if size == ebml.UNKNOWN else start + size
    if got_id[0] in ENTERED:
        end = min(end, len(view))  # its children may come in later parts
    elif end > len(view):
        raise ebml.EbmlError(f"element 0x{got_id[0]:X} is truncated")
    return got_id[0], view[start:end], start, end
