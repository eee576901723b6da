"""Merge GetMedia fragments into one continuous, playable MKV.

Each GetMedia chunk is a complete MKV document; players stop at the end of the
first one. ``write_mkv`` keeps one EBML header, one Segment (unknown size), the
first fragment's Info and Tracks, and every fragment's Cluster with its
timecodes untouched. The AWS tags, SeekHeads (their offsets would be wrong) and
Cues are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

from openkvs.media.reader import MediaFragment
from openkvs.wire.mkv import ebml
from openkvs.wire.mkv.reader import ClusterEnd, ClusterStart, EbmlHeader, Element, MkvReader

_HEADER_ELEMENTS = (ebml.INFO, ebml.TRACKS)


def _pieces(raw: bytes, with_header: bool) -> Iterable[bytes]:
    reader = MkvReader()
    reader.feed(raw)
    reader.feed_eof()
    in_cluster = False
    for event in reader.events():
        if isinstance(event, EbmlHeader) and with_header:
            yield event.raw + ebml.encode_id(ebml.SEGMENT) + ebml.UNKNOWN_SIZE_8
        elif isinstance(event, ClusterStart):
            in_cluster = True
            yield event.raw
        elif isinstance(event, ClusterEnd):
            in_cluster = False
        elif isinstance(event, Element):
            if in_cluster or (with_header and event.id in _HEADER_ELEMENTS):
                yield event.raw


def write_mkv(fragments: Iterable[MediaFragment], file: BinaryIO) -> int:
    """Write ``fragments`` as one MKV to ``file``; returns how many fragments were written."""
    count = 0
    for fragment in fragments:
        for piece in _pieces(fragment.raw, with_header=count == 0):
            file.write(piece)
        count += 1
    return count
