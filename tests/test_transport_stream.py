"""MPEG-TS segments (HLS ``MPEG_TS``) from real ffmpeg media cut by the Fragmenter, read back
by ffprobe and PyAV: the concatenated segments hold the source's frames at the source's
times, each segment plays alone, and the next one carries on where it stopped."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from openkvs.server.archive.transport_stream import WRAP, ts_segment
from openkvs.wire.fragmenter import FragmentDone, Fragmenter
from openkvs.wire.mkv import ebml
from openkvs.wire.mkv.frames import FrameError, cluster_frames
from openkvs.wire.mp4.codecs import CodecError
from tests.media import cluster, ffmpeg_mkv, simple_block, synthetic_mkv, track_entry

BASE_MS = 1_700_000_000_000  # a producer clock in epoch ms: far from 0, no wrap within 4 s
TICK_MS = 1 / 90
FRAME_MS = 40  # 25 fps
VIDEO = {
    "bframes": ["-c:v", "libx264", "-preset", "veryfast", "-bf", "2"],
    "hevc": [
        "-c:v",
        "libx265",
        "-x265-params",
        "keyint=25:min-keyint=25:scenecut=0:log-level=error",
        "-tag:v",
        "hvc1",
    ],
}


def encode(path: Path, case: str) -> Path:
    """A 4-second MKV, one 1-second Cluster per GOP, 25 fps 320x240 video and 44.1 kHz AAC."""
    if case == "h264":
        return ffmpeg_mkv(path, seconds=4)
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (.ci/run installs it with apt-get)")
    if case == "hevc" and "libx265" not in _encoders():
        pytest.skip("this ffmpeg has no libx265 encoder")
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
    if case != "audio_only":
        cmd += ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"]
    cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "4"]
    if case != "audio_only":
        cmd += [*VIDEO[case], "-g", "25", "-keyint_min", "25", "-sc_threshold", "0"]
        cmd += ["-pix_fmt", "yuv420p"]
    cmd += ["-c:a", "aac", "-b:a", "64k", "-cluster_size_limit", "8M", "-cluster_time_limit"]
    cmd += ["5000" if case != "audio_only" else "1000", "-f", "matroska", str(path)]
    subprocess.run(cmd, check=True)
    return path


def _encoders() -> str:
    return subprocess.run(
        ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout


def fragments(path: Path) -> list[FragmentDone]:
    fragmenter = Fragmenter()
    events = fragmenter.feed(path.read_bytes(), 0) + fragmenter.feed_eof(0)
    return [e for e in events if isinstance(e, FragmentDone)]


def segments(path: Path, base_ms: int = BASE_MS) -> list[bytes]:
    return [
        ts_segment(f.header, f.parts, f.producer_ms + base_ms, n)
        for n, f in enumerate(fragments(path))
    ]


def probe(path: Path, *entries: str) -> tuple[dict[str, list[dict[str, str]]], dict[str, str], str]:
    """Per codec type: ffprobe's packets or frames; the codec (and profile); its warnings."""
    show = ":".join(entries)
    out = subprocess.run(
        ["ffprobe", "-v", "warning", "-of", "json", "-show_entries", show, str(path)]
        + (["-show_frames"] if "frame" in show else ["-show_packets"]),
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout)
    kinds = {s["index"]: s["codec_type"] for s in data["streams"]}
    found: dict[str, list[dict[str, str]]] = {}
    for item in data.get("packets", []) + data.get("frames", []):
        found.setdefault(kinds[item["stream_index"]], []).append(item)
    names = {
        s["codec_type"]: " ".join(filter(None, (s.get("codec_name"), s.get("profile"))))
        for s in data["streams"]
    }
    return found, names, out.stderr


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory):
    made: dict[str, tuple[Path, list[bytes]]] = {}

    def make(case: str) -> tuple[Path, list[bytes]]:
        if case not in made:
            mkv = encode(tmp_path_factory.mktemp(case) / f"{case}.mkv", case)
            made[case] = mkv, segments(mkv)
        return made[case]

    return make


@pytest.mark.parametrize("case", ["h264", "bframes", "hevc", "audio_only"])
def test_concatenated_segments_hold_the_source_frames_at_its_times(media, case, tmp_path) -> None:
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe is not installed (.ci/run installs ffmpeg with apt-get)")
    mkv, segs = media(case)
    ts = tmp_path / "all.ts"
    ts.write_bytes(b"".join(segs))
    assert len(segs) >= 4 and all(len(s) % 188 == 0 and s[0] == 0x47 for s in segs)

    source, codecs, _ = probe(
        mkv, "packet=stream_index,pts_time", "stream=index,codec_type,codec_name,profile"
    )
    packets, names, warnings = probe(
        ts, "packet=stream_index,pts,dts", "stream=index,codec_type,codec_name,profile"
    )
    assert warnings == ""  # no continuity, timestamp or parsing complaint
    assert (
        set(packets) == set(source) == ({"audio"} if case == "audio_only" else {"video", "audio"})
    )
    assert names == codecs and names["audio"] == "aac LC"
    shift = BASE_MS * 90 % WRAP
    for kind, theirs in source.items():
        ours = packets[kind]
        assert len(ours) == len(theirs)
        expected = [round(float(p["pts_time"]) * 90_000) + shift for p in theirs]
        pts = [int(p["pts"]) for p in ours]
        if kind == "video":
            assert pts == expected  # to the tick: what the MKV stored
        else:  # all but the first ADTS frame of a PES are timed by the demuxer
            assert max(abs(a - b) for a, b in zip(pts, expected, strict=True)) * TICK_MS <= 1
        dts = [int(p["dts"]) for p in ours]
        assert all(a < b for a, b in zip(dts, dts[1:], strict=False))
        assert all(d <= p for d, p in zip(dts, pts, strict=True))
        if case == "bframes" and kind == "video":
            assert dts != pts

    frames, _, warnings = probe(ts, "frame=stream_index", "stream=index,codec_type")
    assert warnings == ""
    assert {kind: len(f) for kind, f in frames.items()} == {k: len(v) for k, v in source.items()}


@pytest.mark.parametrize("case", ["h264", "bframes", "hevc"])
def test_each_segment_plays_alone_and_the_next_goes_on_from_it(media, case) -> None:
    av = pytest.importorskip("av")
    _, segs = media(case)
    previous: dict[str, tuple[int, int, int]] = {}
    for segment in segs:
        assert _pids(segment)[:2] == [0x0000, 0x1000]  # PAT, PMT
        with av.open(io.BytesIO(segment), format="mpegts") as container:
            assert next(container.decode(video=0)).key_frame
        got: dict[str, list[tuple[int, int]]] = {}
        with av.open(io.BytesIO(segment), format="mpegts") as container:
            for packet in container.demux():
                if packet.size:
                    got.setdefault(packet.stream.type, []).append((packet.pts, packet.dts))
        for kind, stamps in got.items():
            low, high = min(p for p, _ in stamps), max(p for p, _ in stamps)
            if kind in previous:
                last_high, last_dts = previous[kind][1:]
                assert stamps[0][1] > last_dts
                if kind == "video":
                    assert low - last_high == FRAME_MS * 90
                else:
                    assert 0 < (low - last_high) * TICK_MS < 25
            previous[kind] = (low, high, stamps[-1][1])


def test_timestamps_wrap_at_33_bits_as_ts_does(media, tmp_path) -> None:
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe is not installed (.ci/run installs ffmpeg with apt-get)")
    mkv, _ = media("bframes")
    base_ms = WRAP // 90 - 2_000  # the 90 kHz clock wraps 2 s into the stream
    segs = segments(mkv, base_ms)
    ts = tmp_path / "wrap.ts"
    ts.write_bytes(b"".join(segs))
    raw = [_first_pts(s) for s in segs]
    assert raw[0] > raw[-1]  # the stored PTS did wrap
    packets, _, warnings = probe(ts, "packet=stream_index,pts,dts", "stream=index,codec_type")
    assert warnings == ""
    for ours in packets.values():  # ffprobe unwraps: still one rising clock
        dts = [int(p["dts"]) for p in ours]
        assert all(a < b for a, b in zip(dts, dts[1:], strict=False))
    source, _, _ = probe(mkv, "packet=stream_index,pts_time", "stream=index,codec_type")
    video = [
        int(p["pts"]) - round(float(s["pts_time"]) * 90_000)
        for p, s in zip(packets["video"], source["video"], strict=True)
    ]
    assert len(set(video)) == 1


def test_continuity_counters_run_on_across_consecutive_segments(media) -> None:
    _, segs = media("h264")
    counters: dict[int, int] = {}
    for segment in segs:
        for pos in range(0, len(segment), 188):
            packet = segment[pos : pos + 188]
            pid, cc, has_payload = (
                int.from_bytes(packet[1:3]) & 0x1FFF,
                packet[3] & 0xF,
                packet[3] & 0x10,
            )
            assert packet[0] == 0x47 and has_payload
            if pid in counters:
                assert cc == (counters[pid] + 1) % 16, pid
            counters[pid] = cc
    assert set(counters) == {0x0000, 0x1000, 0x0100, 0x0101}


def test_an_audio_gap_and_a_frame_over_64_kib_keep_their_times_and_bytes(media) -> None:
    av = pytest.importorskip("av")
    mkv, _ = media("h264")
    fragment = fragments(mkv)[1]
    frames = list(cluster_frames(fragment.parts, 1_000_000))
    audio = [f for f in frames if f.track == 2]
    kept = [f for f in frames if f.track == 1 or not 10 <= audio.index(f) < 20]
    key = next(f for f in frames if f.keyframe and f.track == 1)
    filler = (70_001).to_bytes(4, "big") + b"\x0c" + b"\xff" * 69_999 + b"\x80"  # filler NAL
    blocks = [
        simple_block(
            f.track, f.offset_ms, bytes(f.data) + (filler if f is key else b""), f.keyframe
        )
        for f in kept
    ]
    segment = ts_segment(fragment.header, cluster(0, blocks, known_size=True), 5_000, 0)

    with av.open(io.BytesIO(segment), format="mpegts") as container:
        assert next(container.decode(video=0)).key_frame
    with av.open(io.BytesIO(segment), format="mpegts") as container:
        packets = [(p.stream.type, p.pts, p.size) for p in container.demux() if p.size]
    pts = [pts for kind, pts, _ in packets if kind == "audio"]
    expected = [(5_000 + f.offset_ms) * 90 for f in kept if f.track == 2]
    assert len(pts) == len(expected)
    assert max(abs(a - b) for a, b in zip(pts, expected, strict=True)) * TICK_MS <= 1
    assert max(size for kind, _, size in packets if kind == "video") > 70_000
    lengths = [int.from_bytes(pes[4:6]) for pes in _video_pes_starts(segment)]
    assert lengths.count(0) == 1  # too long for PES_packet_length: left unbounded


def test_frames_that_are_not_nal_units_and_tracks_hls_cannot_carry_are_refused(media) -> None:
    mkv, _ = media("h264")
    header = fragments(mkv)[0].header
    overrun = cluster(0, [simple_block(1, 0, b"\x00\x00\x00\x09abc")], known_size=True)
    with pytest.raises(FrameError):
        ts_segment(header, overrun, 0, 0)

    body = cluster(0, [simple_block(1, 0)], known_size=True)
    with pytest.raises(CodecError) as caught:
        ts_segment(synthetic_mkv([]), body, 0, 0)  # AVC with no CodecPrivate
    assert caught.value.kind == "missing"
    tracks = ebml.element(ebml.TRACKS, track_entry(1))
    vp8 = synthetic_mkv([]).replace(tracks, ebml.element(ebml.TRACKS, track_entry(1, "V_VP8")))
    with pytest.raises(CodecError) as caught:
        ts_segment(vp8, body, 0, 0)
    assert caught.value.kind == "unsupported"


def _pids(segment: bytes) -> list[int]:
    return [int.from_bytes(segment[p + 1 : p + 3]) & 0x1FFF for p in range(0, len(segment), 188)]


def _video_pes_starts(segment: bytes) -> list[bytes]:
    """The first packet's payload of each video PES."""
    starts = []
    for pos in range(0, len(segment), 188):
        packet = segment[pos : pos + 188]
        if int.from_bytes(packet[1:3]) == 0x4000 | 0x0100:
            starts.append(packet[5 + packet[4] :] if packet[3] & 0x20 else packet[4:])
    return starts


def _first_pts(segment: bytes) -> int:
    """The PTS of the segment's first video PES, as stored (33 bits)."""
    t = _video_pes_starts(segment)[0][9:14]
    return (t[0] >> 1 & 7) << 30 | t[1] << 22 | (t[2] >> 1) << 15 | t[3] << 7 | t[4] >> 1
