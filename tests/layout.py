"""Describe a GetMedia payload's element layout, to compare ours with AWS captures."""

from __future__ import annotations

from collections.abc import Iterator

from openkvs.wire.mkv import ebml
from openkvs.wire.mkv.elements import parse_simple_tags
from openkvs.wire.mkv.reader import (
    ClusterStart,
    EbmlHeader,
    Element,
    MkvError,
    MkvReader,
    SegmentStart,
)

AWS_PREFIX = "AWS_KINESISVIDEO_"


def events(payload: bytes) -> Iterator[object]:
    """Every event of a payload; a payload cut short (a broken read) ends at the cut."""
    reader = MkvReader()
    reader.feed(payload)
    reader.feed_eof()
    while True:
        try:
            event = reader.next_event()
        except MkvError:
            return
        if event is None:
            return
        yield event


def chunk_layouts(payload: bytes) -> list[list[str]]:
    """Per chunk, its Segment-level sequence: AWS tag groups by name, other elements by kind."""
    chunks: list[list[str]] = []
    for event in events(payload):
        if isinstance(event, EbmlHeader):
            chunks.append(["EBML"])
        elif isinstance(event, SegmentStart):
            chunks[-1].append("Segment:" + event.raw[4:].hex())
        elif isinstance(event, ClusterStart):
            chunks[-1].append("Cluster")
        elif isinstance(event, Element) and event.level == 1:
            if event.id == ebml.TAGS:
                names = [n for n, _ in parse_simple_tags(event.payload)]
                if names and all(n.startswith(AWS_PREFIX) for n in names):
                    chunks[-1].append("AWS:" + ",".join(n[len(AWS_PREFIX) :] for n in names))
                    continue
            chunks[-1].append(f"0x{event.id:X}")
    return chunks


def aws_skeleton(layout: list[str]) -> list[str]:
    """Only what every KVS chunk has, whatever the producer sent around it."""
    return [x for x in layout if x == "EBML" or x.startswith(("Segment", "AWS:", "Cluster"))]


def aws_tags(payload: bytes) -> list[dict[str, str]]:
    """The AWS tag values of each chunk, merged per chunk."""
    chunks: list[dict[str, str]] = []
    for event in events(payload):
        if isinstance(event, EbmlHeader):
            chunks.append({})
        elif isinstance(event, Element) and event.level == 1 and event.id == ebml.TAGS:
            for name, value in parse_simple_tags(event.payload):
                if name.startswith(AWS_PREFIX):
                    chunks[-1][name[len(AWS_PREFIX) :]] = value
    return chunks
