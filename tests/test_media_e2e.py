"""PutMedia and GetMedia end to end: real server process, real boto3, real media, PyAV decoding."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import fixture_path
from tests.kvs import chunks, create_stream, get_media, numbers, per_fragment, put
from tests.layout import aws_skeleton, aws_tags, chunk_layouts
from tests.media import probe_frames

FAST = ("--getmedia-idle-timeout-s", "1")
SDK_TIMECODES = [1795571379696, 1795571381496, 1795571383296]


@pytest.fixture
def fast_server(make_server):
    return make_server(*FAST)


def test_sdk_capture_acks_then_get_media_matches_aws_layout(fast_server, sdk_capture) -> None:
    create_stream(fast_server, "sdk")
    result = put(fast_server, "sdk", sdk_capture, piece=8192)
    assert result.status == 200
    first, second, third = SDK_TIMECODES
    assert per_fragment(result.acks) == {
        first: ["BUFFERING", "RECEIVED", "PERSISTED"],
        second: ["BUFFERING", "RECEIVED", "PERSISTED"],
        third: ["BUFFERING", "ERROR"],  # the capture is cut mid-fragment
    }
    assert result.acks[-1]["ErrorId"] == 4006
    assert all(chunk.endswith(b"}\n") and chunk.count(b"\n") == 1 for chunk in result.raw_chunks)
    by_fragment = {a["FragmentTimecode"]: a["FragmentNumber"] for a in result.acks}
    assert all(re.fullmatch(r"\d{47}", n) for n in by_fragment.values())

    payload = get_media(fast_server, "sdk", {"StartSelectorType": "EARLIEST"})
    assert numbers(payload) == [by_fragment[first], by_fragment[second]]
    aws = chunk_layouts(fixture_path("aws-getmedia/output_get_media.mkv").read_bytes())
    for layout in chunk_layouts(payload):
        assert aws_skeleton(layout) == aws_skeleton(aws[0])
    tags = aws_tags(payload)
    assert tags[0]["PRODUCER_TIMESTAMP"] == "1795571379.696"
    assert tags[1]["CONTINUATION_TOKEN"] == by_fragment[second]
    frames = []
    for i, chunk in enumerate(chunks(payload)):
        path = fast_server.data_dir.parent / f"sdk{i}.mkv"
        path.write_bytes(chunk)
        frames += probe_frames(path)
    assert len(frames) == 90 and all(kind == "video" for kind, _ in frames)


def test_ffmpeg_clip_relative_round_trip_decodes_identically(fast_server, av_clip: Path) -> None:
    create_stream(fast_server, "cam")
    result = put(
        fast_server,
        "cam",
        av_clip.read_bytes(),
        timecode_type="RELATIVE",
        start_timestamp="1700000000.5",
    )
    events = per_fragment(result.acks)
    assert list(events.values()) == [["BUFFERING", "RECEIVED", "PERSISTED"]] * 6
    payload = get_media(fast_server, "cam", {"StartSelectorType": "EARLIEST"})
    tags = aws_tags(payload)
    assert [t["PRODUCER_TIMESTAMP"] for t in tags][:2] == ["1700000000.500", "1700000001.521"]
    decoded = []
    for i, chunk in enumerate(chunks(payload)):
        path = fast_server.data_dir.parent / f"cam{i}.mkv"
        path.write_bytes(chunk)
        decoded += probe_frames(path)
    original = probe_frames(av_clip)
    assert sorted(decoded) == sorted(original)
    assert len(original) == 410


def test_aws_cli_get_media_writes_the_payload(fast_server, av_clip: Path, tmp_path: Path) -> None:
    create_stream(fast_server, "cli")
    put(fast_server, "cli", av_clip.read_bytes(), timecode_type="RELATIVE")
    out = tmp_path / "out.mkv"
    env = {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": "us-west-2",
        "PATH": str(Path(sys.executable).parent),
    }
    aws = Path(sys.executable).parent / "aws"
    done = subprocess.run(
        [
            str(aws),
            "kinesis-video-media",
            "get-media",
            "--endpoint-url",
            fast_server.url,
            "--stream-name",
            "cli",
            "--start-selector",
            "StartSelectorType=EARLIEST",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"ContentType": "video/webm"' in done.stdout
    assert len(numbers(out.read_bytes())) == 6
    assert len(probe_frames_of_chunks(out, tmp_path)) == 410


def probe_frames_of_chunks(path: Path, tmp_path: Path) -> list[tuple[str, float]]:
    frames = []
    for i, chunk in enumerate(chunks(path.read_bytes())):
        part = tmp_path / f"part{i}.mkv"
        part.write_bytes(chunk)
        frames += probe_frames(part)
    return frames
