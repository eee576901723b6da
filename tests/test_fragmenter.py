"""The PutMedia fragmenter on real producer bytes, ffmpeg output and hand-made edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from openkvs.wire.fragmenter import FragmentBegun, FragmentDone, Fragmenter, FragmentError
from openkvs.wire.mkv.elements import tags_element
from tests.media import cluster, end_of_fragment, simple_block, synthetic_mkv


def run(data: bytes, piece: int | None = None, eof: bool = True, **options: object) -> list:
    fragmenter = Fragmenter(**options)  # type: ignore[arg-type]
    piece = piece or len(data)
    events = []
    for i in range(0, len(data), piece):
        events += fragmenter.feed(data[i : i + piece], now_ms=i)
    if eof:
        events += fragmenter.feed_eof(now_ms=len(data))
    fragmenter.raise_error()
    return events


def test_sdk_capture_gives_two_fragments_then_a_truncated_one(sdk_capture: bytes) -> None:
    fragmenter = Fragmenter()
    events = fragmenter.feed(sdk_capture, now_ms=1)
    assert fragmenter.error is None
    done = [e for e in events if isinstance(e, FragmentDone)]
    begun = [e for e in events if isinstance(e, FragmentBegun)]
    assert [d.timecode for d in done] == [1795571379696, 1795571381496]
    assert len(begun) == 3 and [d.frames for d in done] == [45, 45]
    assert all(d.duration_ms == 1800 for d in done)
    assert fragmenter.feed_eof(now_ms=2) == []
    with pytest.raises(FragmentError) as info:
        fragmenter.raise_error()
    assert info.value.error_id == 4006 and info.value.timecode == 1795571383296


@pytest.mark.parametrize("piece", [1, 13, 4096, 65536])
def test_sdk_capture_in_any_pieces(sdk_capture: bytes, piece: int) -> None:
    data = sdk_capture[: 2 * 1024 * 1024 - 20_000] if piece > 1 else sdk_capture[:950_000]
    whole = [(type(e), e.timecode) for e in run(data, eof=False)]
    assert [(type(e), e.timecode) for e in run(data, piece, eof=False)] == whole


def test_end_of_fragment_tag_completes_at_once_and_is_not_stored() -> None:
    data = synthetic_mkv(
        [
            cluster(1000, [simple_block(1, 0), simple_block(1, 40)])
            + tags_element([("K", "V")], width=1)
            + end_of_fragment()
        ]
    )
    events = run(data, eof=False)
    assert [type(e) for e in events] == [FragmentBegun, FragmentDone]
    done = events[1]
    assert b"AWS_KINESISVIDEO_END_OF_FRAGMENT" not in done.body
    assert done.body.endswith(tags_element([("K", "V")], width=1))
    assert (done.producer_ms, done.duration_ms, done.frames) == (1000, 80, 2)


def test_next_cluster_completes_the_previous_fragment() -> None:
    data = synthetic_mkv([cluster(0, [simple_block(1, 0)]), cluster(40, [simple_block(1, 0)])])
    events = run(data, eof=False)
    assert [type(e) for e in events] == [FragmentBegun, FragmentDone, FragmentBegun]
    assert [type(e) for e in run(data)][-1] is FragmentDone


def test_known_size_cluster_completes_after_settling() -> None:
    data = synthetic_mkv([cluster(0, [simple_block(1, 0)], known_size=True)])
    fragmenter = Fragmenter(settle_ms=100)
    assert [type(e) for e in fragmenter.feed(data, now_ms=1000)] == [FragmentBegun]
    assert fragmenter.deadline_ms() == 1100
    assert fragmenter.tick(1099) == []
    assert [type(e) for e in fragmenter.tick(1100)] == [FragmentDone]


def test_pre_cluster_tags_go_with_the_first_fragment_only() -> None:
    tags = tags_element([("PRODUCER", "1")], width=1)
    data = synthetic_mkv([cluster(t, [simple_block(1, 0)]) for t in (0, 40, 80)], pre_cluster=tags)
    done = [e for e in run(data) if isinstance(e, FragmentDone)]
    assert tags in done[0].header and all(tags not in d.header for d in done[1:])


def test_relative_timecodes_add_the_producer_start(av_clip: Path) -> None:
    events = run(av_clip.read_bytes(), 65536, relative=True, producer_start_ms=1_700_000_000_000)
    done = [e for e in events if isinstance(e, FragmentDone)]
    assert len(done) == 6 and sum(d.frames for d in done) == 150 + 260
    assert done[0].producer_ms == 1_700_000_000_000 + done[0].timecode


@pytest.mark.parametrize(
    "data, options, error_id",
    [
        (synthetic_mkv([cluster(0, [simple_block(1, 0)])], tracks=(1, 2, 3, 4)), {}, 4012),
        (synthetic_mkv([cluster(0, [simple_block(2, 0)])]), {}, 4010),
        (
            synthetic_mkv([cluster(0, [simple_block(1, 0, b"x" * 5000)])]),
            {"max_fragment_bytes": 4000},
            4001,
        ),
        (synthetic_mkv([cluster(0, [simple_block(1, 0), simple_block(1, 30000)])]), {}, 4002),
        (synthetic_mkv([cluster(0, [simple_block(1, 0)])]), {"relative": True}, 4007),
        (synthetic_mkv([cluster(0, [simple_block(1, 0)])]) * 2, {}, 4006),
        (synthetic_mkv([])[:-40] + cluster(0, [simple_block(1, 0)]), {}, 4006),
        (synthetic_mkv([cluster(0, [])]), {}, 4006),
        (b"not matroska at all", {}, 4006),
    ],
    ids=[
        "tracks",
        "undeclared-track",
        "size",
        "duration",
        "relative-no-start",
        "two-segments",
        "no-tracks",
        "no-frames",
        "garbage",
    ],
)
def test_rejections_carry_the_kvs_error_id(data: bytes, options: dict, error_id: int) -> None:
    with pytest.raises(FragmentError) as info:
        run(data, **options)
    assert info.value.error_id == error_id
