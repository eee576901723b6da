"""The push parser, fed whole, byte by byte, in odd pieces, and with bad input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openkvs.wire.mkv import ebml
from openkvs.wire.mkv.reader import (
    ClusterEnd,
    ClusterStart,
    EbmlHeader,
    Element,
    EndOfStream,
    MkvError,
    MkvReader,
    SegmentEnd,
    SegmentStart,
)
from tests.conftest import fixture_path
from tests.media import cluster, simple_block, synthetic_mkv

AWS_FILES = [
    "aws-getmedia/output_get_media.mkv",
    "aws-getmedia/output_get_media_sparse_fragments.mkv",
    "aws-getmedia/output-get-media-non-increasing-timecode.mkv",
    "aws-getmedia/test_mixed_tags.mkv",
    "aws-getmedia/empty-mkv-with-tags.mkv",
]


def summary(events: list[object]) -> list[tuple[str, int, int]]:
    out = []
    for e in events:
        if isinstance(e, Element):
            out.append(("element", e.id, len(e.raw)))
        elif isinstance(e, tuple):
            out.append(("truncated", 0, e[1]))
        else:
            out.append((type(e).__name__, 0, len(getattr(e, "raw", b""))))
    return out


def read_all(data: bytes, piece: int) -> list[object]:
    reader = MkvReader()
    events: list[object] = []
    for i in range(0, len(data), piece):
        reader.feed(data[i : i + piece])
        events += reader.events()
    reader.feed_eof()
    try:
        events += reader.events()
    except MkvError:
        events.append(("truncated", reader.buffered))
    return events


@pytest.mark.parametrize("name", AWS_FILES)
def test_aws_captures_parse_the_same_in_any_pieces(name: str) -> None:
    data = fixture_path(name).read_bytes()
    whole = read_all(data, len(data))
    truncated = name.endswith("non-increasing-timecode.mkv")  # the capture itself is cut short
    assert isinstance(whole[-1], tuple if truncated else EndOfStream)
    if truncated:
        data = data[: len(data) - whole[-1][1]]
        whole = read_all(data, len(data))
    assert sum(isinstance(e, EbmlHeader) for e in whole) >= 1
    for piece in (1, 7, 4096):
        if piece == 1 and len(data) > 100_000:
            continue
        assert summary(read_all(data, piece)) == summary(whole)
    raw = b"".join(
        e.raw if isinstance(e, (Element, EbmlHeader, SegmentStart, ClusterStart)) else b""
        for e in whole
    )
    assert raw == data  # every byte is accounted for, in order


def test_byte_by_byte_on_a_capture_prefix() -> None:
    data = fixture_path("aws-getmedia/output_get_media.mkv").read_bytes()[:60_000]
    reader = MkvReader()
    pieces = []
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        pieces += reader.events()
    whole = MkvReader()
    whole.feed(data)
    assert summary(pieces) == summary(whole.events())


def test_producer_capture_clusters_close_at_the_next_level1_element(sdk_capture: bytes) -> None:
    reader = MkvReader()
    reader.feed(sdk_capture)
    events = reader.events()
    kinds = [type(e) for e in events]
    assert kinds.count(ClusterStart) == 3
    assert kinds.count(ClusterEnd) == 2  # the third is cut short by the capture
    after = kinds.index(ClusterEnd)
    assert isinstance(events[after + 1], Element) and events[after + 1].id == ebml.TAGS
    reader.feed_eof()
    with pytest.raises(MkvError, match="ends inside an element"):
        reader.events()


def test_trailing_garbage_is_an_error() -> None:
    data = fixture_path("aws-getmedia/test_mixed_tags.mkv").read_bytes()
    reader = MkvReader()
    reader.feed(data + b"\x00\x00\x00")
    with pytest.raises(MkvError):
        reader.events()


@pytest.mark.parametrize(
    "data, error_id",
    [
        (b"\x00\x00", 4006),  # invalid id byte
        (b"\x1f\x43\xb6\x75\x80", 4006),  # a Cluster at the top level
        (b"\x1a\x45\xdf\xa3\xff", 4006),  # EBML header of unknown size
        (b"\x1a\x45\xdf\xa3\x08\xff\xff\xff\xff\xff\xff\xfe", 4001),  # huge declared size
        (b"\x18\x53\x80\x67\xff\x16\x54\xae\x6b\xff", 4006),  # unknown-size Tracks
        (b"\x18\x53\x80\x67\x85\x16\x54\xae\x6b\x90", 4006),  # child runs past its parent
    ],
)
def test_bad_input_raises_mkv_error(data: bytes, error_id: int) -> None:
    reader = MkvReader(max_element_size=1 << 20)
    reader.feed(data)
    with pytest.raises(MkvError) as info:
        reader.events()
        reader.feed_eof()
        reader.events()
    assert info.value.error_id == error_id


def test_known_size_segment_and_cluster_end_at_their_size() -> None:
    cluster = ebml.element(ebml.CLUSTER, ebml.uint_element(ebml.CLUSTER_TIMECODE, 5))
    segment = ebml.element(ebml.SEGMENT, cluster)
    reader = MkvReader()
    reader.feed(ebml.element(ebml.EBML, b"") + segment + ebml.element(ebml.EBML, b""))
    kinds = [type(e).__name__ for e in reader.events()]
    assert kinds == [
        "EbmlHeader",
        "SegmentStart",
        "ClusterStart",
        "Element",
        "ClusterEnd",
        "SegmentEnd",
        "EbmlHeader",
    ]


def test_vint_round_trip() -> None:
    for value in (0, 1, 126, 127, 128, 16382, 16383, 2**35, 2**56 - 2):
        encoded = ebml.encode_size(value)
        assert ebml.read_size(encoded, 0) == (value, len(encoded))
    assert ebml.read_size(b"\xff", 0) == (ebml.UNKNOWN, 1)
    assert ebml.read_size(ebml.UNKNOWN_SIZE_8, 0) == (ebml.UNKNOWN, 8)
    assert ebml.read_size(ebml.encode_size(5, 4), 0) == (5, 4)
    with pytest.raises(ebml.EbmlError):
        ebml.encode_size(300, 1)


def test_segment_end_event_type_exists() -> None:
    assert SegmentEnd() == SegmentEnd()


def test_large_frames_in_any_pieces_come_out_byte_exact() -> None:
    """Frames of 256 KiB and more are gathered from the feeds' own bytes, then joined once."""
    frames = [bytes([i + 1]) * (300_000 + i) for i in range(3)]
    data = synthetic_mkv(
        [
            cluster(0, [simple_block(1, 40 * k, frame) for k, frame in enumerate(frames)]),
            cluster(1000, [simple_block(1, 0, b"small")]),
        ]
    )
    whole = read_all(data, len(data))
    assert isinstance(whole[-1], EndOfStream)
    for piece in (1000, 65536, 65537, 299_999, 700_000):
        events = read_all(data, piece)
        assert summary(events) == summary(whole)
        raw = b"".join(
            e.raw
            for e in events
            if isinstance(e, (Element, EbmlHeader, SegmentStart, ClusterStart))
        )
        assert raw == data
    cut = data[: len(data) - 400_000]  # ends inside the second large frame
    assert summary(read_all(cut, 65536)) == summary(read_all(cut, len(cut)))
    assert isinstance(read_all(cut, 65536)[-1], tuple)


LARGE_FRAMES = synthetic_mkv(
    [
        cluster(0, [simple_block(1, 40 * k, bytes([k + 1]) * (270_000 + k)) for k in range(3)]),
        cluster(1000, [simple_block(1, 0, b"small"), simple_block(1, 40, b"x" * 300_000)]),
    ]
)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    cuts=st.lists(st.integers(0, len(LARGE_FRAMES)), max_size=12),
    drain_every=st.integers(1, 6),
)
def test_k_feeds_then_drain_gives_the_events_of_one_feed(cuts: list[int], drain_every: int) -> None:
    """Feeding only buffers: however many feeds come before ``next_event``, the events
    (large elements gathered over several feeds included) are those of one whole feed."""
    whole = read_all(LARGE_FRAMES, len(LARGE_FRAMES))
    bounds = [0, *sorted(cuts), len(LARGE_FRAMES)]
    reader = MkvReader()
    events: list[object] = []
    for k, (start, end) in enumerate(zip(bounds, bounds[1:], strict=False)):
        reader.feed(LARGE_FRAMES[start:end])
        if k % drain_every == drain_every - 1:
            events += reader.events()
    reader.feed_eof()
    events += reader.events()
    assert summary(events) == summary(whole)
    raw = b"".join(
        e.raw for e in events if isinstance(e, (Element, EbmlHeader, SegmentStart, ClusterStart))
    )
    assert raw == LARGE_FRAMES


def test_two_feeds_past_a_large_element_before_reading() -> None:
    """The case that failed: a large element completed by one feed and followed by another."""
    frame = simple_block(1, 0, b"f" * 300_000)
    data = synthetic_mkv([cluster(0, [frame, simple_block(1, 40, b"g")])])
    start = data.find(frame)
    reader = MkvReader()
    reader.feed(data[: start + 1000])
    head = reader.events()  # the large element starts being gathered
    reader.feed(data[start + 1000 : start + len(frame) + 10])
    reader.feed(data[start + len(frame) + 10 :])
    reader.feed_eof()
    assert summary(head + reader.events()) == summary(read_all(data, len(data)))
