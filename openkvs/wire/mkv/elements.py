"""Decoders and encoders for the few Matroska elements OpenKVS looks inside."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from openkvs.wire.mkv import ebml

VIDEO_TRACK = 1
AUDIO_TRACK = 2


@dataclass(frozen=True, slots=True)
class TrackEntry:
    """What a track declares: playback (HLS, DASH, clips) needs the codec, its private
    data and, for the MP4 sample entry, the picture size or the sampling rate."""

    number: int
    codec_id: str
    codec_private: bytes
    track_type: int
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0


def parse_timecode_scale(info_payload: bytes | memoryview) -> int:
    """TimecodeScale from an Info payload, in nanoseconds (Matroska default 1 ms)."""
    for child_id, data in ebml.iter_children(info_payload):
        if child_id == ebml.TIMECODE_SCALE:
            return ebml.read_uint(data) or 1_000_000
    return 1_000_000


def parse_tracks(tracks_payload: bytes | memoryview) -> list[TrackEntry]:
    tracks = []
    for child_id, entry in ebml.iter_children(tracks_payload):
        if child_id != ebml.TRACK_ENTRY:
            continue
        fields = {cid: data for cid, data in ebml.iter_children(entry)}
        video = dict(ebml.iter_children(fields.get(ebml.VIDEO, b"")))
        audio = dict(ebml.iter_children(fields.get(ebml.AUDIO, b"")))
        tracks.append(
            TrackEntry(
                number=ebml.read_uint(fields.get(ebml.TRACK_NUMBER, b"")),
                codec_id=ebml.read_str(fields.get(ebml.CODEC_ID, b"")),
                codec_private=bytes(fields.get(ebml.CODEC_PRIVATE, b"")),
                track_type=ebml.read_uint(fields.get(ebml.TRACK_TYPE, b"")),
                width=ebml.read_uint(video.get(ebml.PIXEL_WIDTH, b"")),
                height=ebml.read_uint(video.get(ebml.PIXEL_HEIGHT, b"")),
                sample_rate=round(ebml.read_float(audio.get(ebml.SAMPLING_FREQUENCY, b""))),
                channels=ebml.read_uint(audio.get(ebml.CHANNELS, b"")),
            )
        )
    return tracks


MAX_SIMPLE_TAG_DEPTH = 16
"""SimpleTags may nest; producers nest none, and a deeper nest is refused, not recursed into."""


def iter_simple_tags(tags_payload: bytes | memoryview) -> Iterator[tuple[str, str]]:
    """Each (TagName, TagString) pair of a Tags payload, nested SimpleTags flattened.

    A generator, so a Tags element packed with millions of tiny SimpleTags is
    scanned in constant memory; nesting deeper than ``MAX_SIMPLE_TAG_DEPTH`` is
    an EbmlError rather than unbounded recursion.
    """
    for tag_id, tag in ebml.iter_children(tags_payload):
        if tag_id != ebml.TAG:
            continue
        for cid, data in ebml.iter_children(tag):
            if cid == ebml.SIMPLE_TAG:
                yield from _simple_tag(data, 1)


def _simple_tag(payload: memoryview, depth: int) -> Iterator[tuple[str, str]]:
    if depth > MAX_SIMPLE_TAG_DEPTH:
        raise ebml.EbmlError(f"SimpleTags nested more than {MAX_SIMPLE_TAG_DEPTH} deep")
    name = value = ""
    for cid, data in ebml.iter_children(payload):
        if cid == ebml.TAG_NAME:
            name = ebml.read_str(data)
        elif cid == ebml.TAG_STRING:
            value = ebml.read_str(data)
        elif cid == ebml.SIMPLE_TAG:
            yield from _simple_tag(data, depth + 1)
    yield name, value


def parse_simple_tags(tags_payload: bytes | memoryview) -> list[tuple[str, str]]:
    """Every (TagName, TagString) pair in a Tags payload, nested SimpleTags flattened."""
    return list(iter_simple_tags(tags_payload))


REFERENCE_BLOCK = 0xFB


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """The head of a SimpleBlock or of a BlockGroup's Block: whose frame, when, and whether
    it is a keyframe (SimpleBlock's flag; a BlockGroup without ReferenceBlock)."""

    track: int
    timecode: int
    """Relative to the Cluster's Timecode, in TimecodeScale units (signed)."""
    keyframe: bool

    @classmethod
    def parse(cls, element_id: int, payload: bytes | memoryview) -> tuple[BlockHeader, memoryview]:
        """The header and the frame's bytes of a SimpleBlock or BlockGroup payload."""
        view = memoryview(payload)
        keyframe = None
        if element_id == ebml.BLOCK_GROUP:
            children = dict(ebml.iter_children(view))
            if ebml.BLOCK not in children:
                raise ebml.EbmlError("a BlockGroup without a Block")
            view, keyframe = children[ebml.BLOCK], REFERENCE_BLOCK not in children
        got = ebml.read_size(view, 0)
        if got is None or got[0] == ebml.UNKNOWN or len(view) < got[1] + 3:
            raise ebml.EbmlError("block header is truncated")
        track, n = got
        relative = int.from_bytes(view[n : n + 2], "big", signed=True)
        if keyframe is None:
            keyframe = bool(view[n + 2] & 0x80)
        return cls(track, relative, keyframe), view[n + 3 :]


def tags_element(pairs: list[tuple[str, str]], width: int = 4) -> bytes:
    """A Tags element with one Tag of SimpleTags, every size ``width`` bytes wide.

    AWS writes its own tags with 4-byte sizes (spec §6.1); the fixed width keeps
    the element's length independent of the values.
    """
    simple = b"".join(
        ebml.element(
            ebml.SIMPLE_TAG,
            ebml.element(ebml.TAG_NAME, name.encode(), width)
            + ebml.element(ebml.TAG_STRING, value.encode(), width),
            width,
        )
        for name, value in pairs
    )
    return ebml.element(ebml.TAGS, ebml.element(ebml.TAG, simple, width), width)


def header_tracks(header: bytes) -> tuple[TrackEntry, ...]:
    """The tracks a fragment header (EBML header, Segment start, pre-Cluster elements)
    declares; none if it holds no readable Tracks element."""
    from openkvs.wire.mkv.reader import Element, MkvError, MkvReader

    reader = MkvReader(max_element_size=len(header))
    reader.feed(header)
    try:
        while (event := reader.next_event()) is not None:
            if isinstance(event, Element) and event.id == ebml.TRACKS:
                return tuple(parse_tracks(event.payload))
    except (MkvError, ebml.EbmlError):
        pass
    return ()
