"""openkvs.media: reading real AWS GetMedia output and our own, fragment by fragment."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from openkvs.media import (
    FragmentReader,
    GetMediaError,
    MediaFragment,
    follow,
    iter_fragments,
    write_mkv,
)
from openkvs.wire.chunk import error_chunk
from openkvs.wire.mkv.reader import MkvError
from tests.conftest import fixture_path
from tests.kvs import chunks, create_stream, put
from tests.layout import aws_tags
from tests.media import ffprobe_duration, probe_frames

COMPLETE = [
    "output_get_media.mkv",
    "output_get_media_sparse_fragments.mkv",
    "test_mixed_tags.mkv",
    "empty-mkv-with-tags.mkv",
]


def read(data: bytes, piece: int) -> list:
    reader = FragmentReader()
    out = []
    for i in range(0, len(data), piece):
        out += reader.feed(data[i : i + piece])
    return out + reader.feed_eof()


def packets(chunk: bytes, tmp_path: Path) -> int:
    path = tmp_path / "chunk.mkv"
    path.write_bytes(chunk)
    with av.open(str(path)) as container:
        return sum(1 for p in container.demux() if p.size)


@pytest.mark.parametrize("name", COMPLETE)
def test_aws_captures_parse_with_numbers_tags_and_frames(name: str, tmp_path: Path) -> None:
    data = fixture_path("aws-getmedia/" + name).read_bytes()
    fragments = read(data, 4096)
    expected = aws_tags(data)
    assert [f.number for f in fragments] == [t.get("FRAGMENT_NUMBER") for t in expected]
    assert [f.continuation_token for f in fragments] == [
        t.get("CONTINUATION_TOKEN") for t in expected
    ]
    assert b"".join(f.raw for f in fragments) == data
    for fragment, chunk in zip(fragments, chunks(data), strict=True):
        assert fragment.raw == chunk
        if fragment.frames:
            assert len(fragment.frames) == packets(chunk, tmp_path)
            assert fragment.tracks and fragment.tracks[0].codec_id.startswith("V_")
    assert [f.number for f in read(data, 1 if len(data) < 30_000 else 7)] == [
        f.number for f in fragments
    ]


def test_mixed_tags_keep_producer_tags_and_timestamps() -> None:
    fragments = read(fixture_path("aws-getmedia/test_mixed_tags.mkv").read_bytes(), 65536)
    first = fragments[0]
    assert first.tags == {f"testTag_{i}": f"testTag_{i}_Value" for i in range(5)}
    assert (first.server_timestamp_ms, first.producer_timestamp_ms) == (1537574915281, 0)
    assert first.millis_behind_now == 910


def test_a_fragment_is_emitted_when_its_trailing_tags_arrive() -> None:
    data = fixture_path("aws-getmedia/output_get_media.mkv").read_bytes()
    first = chunks(data)[0]
    reader = FragmentReader()
    got = reader.feed(first)
    assert len(got) == 1 and got[0].raw == first


def test_a_truncated_capture_yields_its_whole_fragments_then_fails() -> None:
    data = fixture_path("aws-getmedia/output-get-media-non-increasing-timecode.mkv").read_bytes()
    reader = FragmentReader()
    fragments = reader.feed(data)
    assert len(fragments) == 11 and all(len(f.frames) == 30 for f in fragments)
    with pytest.raises(MkvError):
        reader.feed_eof()


def test_an_error_chunk_raises_after_the_fragments_before_it() -> None:
    good = chunks(fixture_path("aws-getmedia/output_get_media.mkv").read_bytes())[0]
    reader = FragmentReader()
    fragments = reader.feed(good + error_chunk("1" * 47, 4000, "FRAGMENT_NOT_FOUND"))
    assert len(fragments) == 1
    with pytest.raises(GetMediaError) as info:
        reader.feed_eof()
    assert (info.value.error_id, info.value.error_code) == (4000, "FRAGMENT_NOT_FOUND")
    assert info.value.fragment_number == "1" * 47


def clip_fragments(make_server, av_clip: Path) -> list[MediaFragment]:  # noqa: ANN001
    """The clip stored in a new server, read back with boto3 and iter_fragments."""
    server = make_server("--getmedia-idle-timeout-s", "0.5")
    create_stream(server, "clip")
    put(server, "clip", av_clip.read_bytes(), timecode_type="RELATIVE")
    media = server.client("kinesis-video-media")
    response = media.get_media(StreamName="clip", StartSelector={"StartSelectorType": "EARLIEST"})
    return list(iter_fragments(response["Payload"]))


def test_iter_fragments_over_boto3_payload_from_our_server(make_server, av_clip: Path) -> None:
    fragments = clip_fragments(make_server, av_clip)
    assert len(fragments) == 6
    assert sum(len(f.frames) for f in fragments) == 410
    assert all(f.frames[0].keyframe for f in fragments)
    assert {t.codec_id for t in fragments[0].tracks} == {"V_MPEG4/ISO/AVC", "A_AAC"}


def video_duration_ms(fragment) -> int:  # noqa: ANN001
    """First video frame to the end of the last (one frame interval after it)."""
    times = [f.timestamp_ms for f in fragment.frames if f.track == fragment.tracks[0].number]
    return times[-1] - times[0] + (times[-1] - times[-2])


def test_write_mkv_merges_aws_chunks_into_one_playable_file(tmp_path: Path) -> None:
    data = fixture_path("aws-getmedia/output_get_media.mkv").read_bytes()
    fragments = read(data, 65536)
    merged = tmp_path / "merged.mkv"
    with merged.open("wb") as out:
        assert write_mkv(fragments, out) == 5
    with av.open(str(merged)) as container:
        assert sum(1 for p in container.demux() if p.size) == sum(len(f.frames) for f in fragments)
        assert container.duration / 1e6 == pytest.approx(10.0, abs=0.05)
    total = sum(video_duration_ms(f) for f in fragments) / 1000
    assert total == pytest.approx(10.0, abs=0.05)
    assert ffprobe_duration(merged) == pytest.approx(total, abs=0.05)


def test_write_mkv_of_our_output_decodes_every_frame(make_server, av_clip: Path, tmp_path) -> None:
    fragments = clip_fragments(make_server, av_clip)
    merged = tmp_path / "merged.mkv"
    with merged.open("wb") as out:
        write_mkv(fragments, out)
    assert sorted(probe_frames(merged)) == sorted(probe_frames(av_clip))
    assert len(fragments) == 6
    total = sum(video_duration_ms(f) for f in fragments) / 1000
    assert ffprobe_duration(merged) == pytest.approx(total, abs=0.05)


def test_follow_resumes_across_a_server_kill_with_no_gap_or_duplicate(make_server, av_clip):
    import signal

    from tests.kvs import get_media, numbers

    server = make_server("--getmedia-idle-timeout-s", "0.5")
    create_stream(server, "follow")
    put(
        server,
        "follow",
        av_clip.read_bytes(),
        timecode_type="RELATIVE",
        start_timestamp="1700000000",
    )
    media = server.client("kinesis-video-media", read_timeout=5)
    seen = []
    for fragment in follow(media, "follow", {"StartSelectorType": "EARLIEST"}, retry_delay=0.2):
        seen.append(fragment.number)
        if len(seen) == 3:
            server.stop(signal.SIGKILL)
            server.start()
            put(
                server,
                "follow",
                av_clip.read_bytes(),
                timecode_type="RELATIVE",
                start_timestamp="1700000100",
            )
        if len(seen) == 12:
            break
    stored = numbers(get_media(server, "follow", {"StartSelectorType": "EARLIEST"}))
    assert seen == stored and len(set(seen)) == 12


def test_a_live_fragment_is_yielded_before_the_next_one_exists(make_server) -> None:
    """iter_fragments over boto3's payload must not wait for 64 KiB (or the next fragment)."""
    import contextlib
    import threading

    from openkvs.producer import Producer
    from tests.media import cluster, simple_block, synthetic_mkv

    server = make_server()
    create_stream(server, "live1")
    media = server.client("kinesis-video-media", read_timeout=30)
    payload = media.get_media(StreamName="live1", StartSelector={"StartSelectorType": "NOW"})[
        "Payload"
    ]
    first = threading.Event()

    def read() -> None:
        with contextlib.suppress(Exception):
            for _ in iter_fragments(payload):
                first.set()
                return

    threading.Thread(target=read, daemon=True).start()
    one_fragment = synthetic_mkv([cluster(0, [simple_block(1, 0, b"x" * 1000)])])
    assert Producer(server.url, "live1").put(one_fragment).fragments_acknowledged == 1
    assert first.wait(5), "the only fragment was held back"
    payload.close()


def test_fragments_decode_on_their_own_to_frames_and_arrays(make_server, av_clip: Path) -> None:
    fragments = clip_fragments(make_server, av_clip)
    frames = [frame for fragment in fragments for frame in fragment.decode()]
    video = [f for f in frames if isinstance(f, av.VideoFrame)]
    assert len(video) == 150 and len(frames) == len(probe_frames(av_clip))
    arrays = list(fragments[-1].to_arrays())
    assert len(arrays) == 25 and arrays[0].shape == (240, 320, 3)
    assert arrays[0].std() > 10  # a real picture, not a blank frame
