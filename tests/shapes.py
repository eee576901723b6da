"""Media of the shapes real producers send, made by ffmpeg and PyAV, and a packet-level oracle.

Each shape is a Matroska file a producer might stream as it is: audio interleaved
with video across Cluster cuts, B-frames (decode order differs from display
order), H.265, wall-clock (ABSOLUTE) timecodes, and a file written by PyAV
(known-size Segment and Clusters, Cues at the end).
"""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from tests.media import ffmpeg_command

EPOCH_S = 1_700_000_000


@dataclass(frozen=True)
class Shape:
    name: str
    timecode_type: str = "RELATIVE"


SHAPES = [
    Shape("h264-aac-1s-clusters"),
    Shape("h264-bframes-aac"),
    Shape("h265-aac"),
    Shape("h264-aac-absolute", "ABSOLUTE"),
    Shape("pyav-h264-aac"),
]


def make(shape: Shape, directory: Path, seconds: int = 10) -> Path:
    path = directory / f"{shape.name}.mkv"
    if path.exists():
        return path
    if shape.name.startswith("pyav"):
        path.write_bytes(pyav_mkv(seconds))
        return path
    cmd = ffmpeg_command("-", seconds=seconds)  # to a pipe, as a live producer writes
    sine = next(i for i, arg in enumerate(cmd) if arg.startswith("sine="))
    cmd[sine] = "sine=frequency=440:sample_rate=48000"  # 1024-sample frames of 21.33 ms
    cut = cmd.index("-cluster_time_limit")
    cmd[cut + 1] = "1000"  # a Cluster a second, cut wherever the muxer likes (audio included)
    if shape.name.startswith("h264-bframes"):
        cmd[cmd.index("ultrafast")] = "veryfast"
        cmd[cut:cut] = ["-bf", "3"]
    if shape.name.startswith("h265"):
        cmd[cmd.index("libx264")] = "libx265"
        cmd[cut:cut] = ["-x265-params", "log-level=error:keyint=25:min-keyint=25:bframes=2"]
    if shape.name.endswith("absolute"):
        cmd[cut:cut] = ["-output_ts_offset", str(EPOCH_S)]
    with open(path, "wb") as out:
        subprocess.run(cmd, check=True, stdout=out)
    return path


def pyav_mkv(seconds: int, fps: int = 25) -> bytes:
    """H.264 + AAC encoded and muxed by PyAV in memory."""
    import av
    import numpy as np

    out = io.BytesIO()
    with av.open(out, "w", format="matroska") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        video.options = {"g": str(fps), "keyint_min": str(fps), "preset": "ultrafast"}
        audio = container.add_stream("aac", rate=44100)
        audio.layout = "mono"
        samples = 0
        for i in range(seconds * fps):
            image = np.full((240, 320, 3), (i * 7) % 256, dtype=np.uint8)
            image[:, (i * 4) % 320] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(video.encode(frame))
            while samples < (i + 1) * 44100 // fps:
                tone = np.sin(np.arange(samples, samples + 1024) * 2 * np.pi * 440 / 44100)
                sound = av.AudioFrame.from_ndarray(
                    (tone * 0.3).astype(np.float32).reshape(1, -1), format="fltp", layout="mono"
                )
                sound.sample_rate, sound.pts = 44100, samples
                container.mux(audio.encode(sound))
                samples += 1024
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return out.getvalue()


def packets(mkv: bytes | Path) -> list[tuple[int, int | None, bytes]]:
    """(stream index, pts, bytes) of every packet, as PyAV demuxes them."""
    import av

    source = io.BytesIO(mkv) if isinstance(mkv, bytes) else str(mkv)
    with av.open(source, format="matroska") as container:
        return [
            (p.stream.index, p.pts, bytes(p))
            for p in container.demux()
            if p.size  # the flush packets at the end carry nothing
        ]


def clusters(mkv: bytes) -> int:
    """How many Clusters (fragments) a Matroska file holds."""
    from openkvs.wire.mkv.reader import ClusterStart, MkvReader

    reader = MkvReader()
    reader.feed(mkv)
    reader.feed_eof()
    return sum(isinstance(e, ClusterStart) for e in reader.events())
