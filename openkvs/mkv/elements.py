"""Decoders and encoders for the few Matroska elements OpenKVS looks inside."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from openkvs.mkv import ebml


@dataclass(slots=True)
class TrackEntry:
    number: int
    codec_id: str
    codec_private: bytes
    track_type: int


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
        tracks.append(
            TrackEntry(
                number=ebml.read_uint(fields.get(ebml.TRACK_NUMBER, b"")),
                codec_id=ebml.read_str(fields.get(ebml.CODEC_ID, b"")),
                codec_private=bytes(fields.get(ebml.CODEC_PRIVATE, b"")),
                track_type=ebml.read_uint(fields.get(ebml.TRACK_TYPE, b"")),
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


def parse_block_header(block_payload: bytes | memoryview) -> tuple[int, int, int]:
    """``(track_number, relative_timecode, flags)`` of a SimpleBlock or Block."""
    got = ebml.read_size(block_payload, 0)
    if got is None or got[0] == ebml.UNKNOWN or len(block_payload) < got[1] + 3:
        raise ebml.EbmlError("block header is truncated")
    track, n = got
    rel = int.from_bytes(block_payload[n : n + 2], "big", signed=True)
    return track, rel, block_payload[n + 2]


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
