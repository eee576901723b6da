"""Media the tests make themselves with ffmpeg (H.264 + AAC in Matroska)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def ffmpeg_mkv(
    path: Path, seconds: int = 6, fps: int = 25, audio: bool = True, size: str = "320x240"
) -> Path:
    """One Cluster per 1-second GOP, as a KVS producer would send it (spec: TOOLING traps)."""
    subprocess.run(ffmpeg_command(str(path), seconds, fps, audio, size), check=True)
    return path


def ffmpeg_command(
    output: str,
    seconds: int = 6,
    fps: int = 25,
    audio: bool = True,
    size: str = "320x240",
    realtime: bool = False,
) -> list[str]:
    """The ffmpeg command line of ``ffmpeg_mkv``; ``output`` '-' writes to a pipe."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (.ci/run installs it with apt-get)")
    pace = ["-re"] if realtime else []
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
    cmd += [*pace, "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}"]
    if audio:
        cmd += [*pace, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    cmd += [
        "-t",
        str(seconds),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        str(fps),
        "-keyint_min",
        str(fps),
        "-sc_threshold",
        "0",
        "-pix_fmt",
        "yuv420p",
    ]
    if audio:
        cmd += ["-c:a", "aac", "-b:a", "64k"]
    cmd += ["-cluster_size_limit", "8M", "-cluster_time_limit", "5000", "-f", "matroska", output]
    return cmd


def probe_frames(path: Path) -> list[tuple[str, float]]:
    """(codec type, pts seconds) of every decoded frame, by PyAV."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for stream in container.streams:
            stream.thread_type = "AUTO"
        for frame in container.decode(*container.streams):
            kind = "video" if isinstance(frame, av.VideoFrame) else "audio"
            frames.append((kind, round(float(frame.time or 0), 3)))
    return frames


def ebml_header() -> bytes:
    from openkvs.wire.chunk import _EBML_HEADER

    return _EBML_HEADER


def track_entry(number: int, codec: str = "V_MPEG4/ISO/AVC") -> bytes:
    from openkvs.wire.mkv import ebml

    return ebml.element(
        ebml.TRACK_ENTRY,
        ebml.uint_element(ebml.TRACK_NUMBER, number)
        + ebml.uint_element(ebml.TRACK_TYPE, 1)
        + ebml.element(ebml.CODEC_ID, codec.encode()),
    )


def simple_block(track: int, relative: int, payload: bytes = b"frame", key: bool = True) -> bytes:
    from openkvs.wire.mkv import ebml

    head = ebml.encode_size(track) + relative.to_bytes(2, "big", signed=True)
    return ebml.element(ebml.SIMPLE_BLOCK, head + bytes([0x80 if key else 0]) + payload)


def cluster(timecode: int, blocks: list[bytes], known_size: bool = False) -> bytes:
    from openkvs.wire.mkv import ebml

    body = ebml.element(ebml.CLUSTER_TIMECODE, timecode.to_bytes(8, "big")) + b"".join(blocks)
    if known_size:
        return ebml.element(ebml.CLUSTER, body)
    return ebml.encode_id(ebml.CLUSTER) + b"\xff" + body


def synthetic_mkv(
    clusters: list[bytes], tracks: tuple[int, ...] = (1,), pre_cluster: bytes = b""
) -> bytes:
    """A PutMedia body shaped like the producer SDK's: unknown-size Segment and Clusters."""
    from openkvs.wire.mkv import ebml

    info = ebml.element(ebml.INFO, ebml.uint_element(ebml.TIMECODE_SCALE, 1_000_000))
    tracks_el = ebml.element(ebml.TRACKS, b"".join(track_entry(n) for n in tracks))
    return (
        ebml_header()
        + ebml.encode_id(ebml.SEGMENT)
        + b"\xff"
        + pre_cluster
        + info
        + tracks_el
        + b"".join(clusters)
    )


def end_of_fragment() -> bytes:
    from openkvs.wire.fragmenter import END_OF_FRAGMENT
    from openkvs.wire.mkv.elements import tags_element

    return tags_element([(END_OF_FRAGMENT, "")], width=1)


def ffprobe_duration(path: Path) -> float:
    """The container duration ffprobe reports, in seconds."""
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe is not installed (.ci/run installs ffmpeg with apt-get)")
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip())
