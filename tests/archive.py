"""Helpers for the archived-media tests: streams with real media in them, probes of the output."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerProcess
from tests.kvs import create_stream, put

PRODUCER_START_S = 1_700_000_000.0


@dataclass
class Loaded:
    """A stream holding ``source``'s fragments, and when they were sent."""

    name: str
    source: Path
    before: float
    after: float
    acks: list[dict[str, Any]]

    def server_range(self) -> dict[str, float]:
        return {"StartTimestamp": self.before - 1, "EndTimestamp": self.after + 1}

    @property
    def numbers(self) -> list[str]:
        return [a["FragmentNumber"] for a in self.acks if a["EventType"] == "PERSISTED"]


def load(server: ServerProcess, name: str, source: Path, retention: int = 24) -> Loaded:
    """Create ``name`` and PutMedia ``source`` into it with RELATIVE timecodes."""
    create_stream(server, name, retention)
    before = time.time()
    result = put(
        server,
        name,
        source.read_bytes(),
        timecode_type="RELATIVE",
        start_timestamp=f"{PRODUCER_START_S:.3f}",
    )
    assert result.status == 200
    return Loaded(name, source, before, time.time(), result.acks)


AAC_AUDIO = ("-c:a", "aac", "-b:a", "64k")


def ffmpeg_variant(
    path: Path,
    *codec: str,
    audio: bool = False,
    seconds: int = 4,
    audio_codec: tuple[str, ...] = AAC_AUDIO,
) -> Path:
    """An MKV of ``seconds`` with one 1-second Cluster per GOP, encoded with ``codec`` args
    (and, with ``audio``, a 440 Hz tone encoded with ``audio_codec`` args)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (.ci/run installs it with apt-get)")
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
    cmd += ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    cmd += ["-t", str(seconds), *codec, "-pix_fmt", "yuv420p"]
    if audio:
        cmd += audio_codec
    cmd += ["-cluster_size_limit", "8M", "-cluster_time_limit", "5000", "-f", "matroska", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"this ffmpeg cannot encode {codec}: {done.stderr.strip()[-200:]}")
    return path


def packets(source: str | Path, kind: str) -> list[float]:
    """Presentation times (s) of the ``kind`` ('v' or 'a') packets ffprobe reads, sorted."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", kind, "-show_entries", "packet=pts_time",
         "-of", "csv=p=0", str(source)],
        capture_output=True, text=True, check=True, timeout=120,
    )
    return sorted(float(line.strip(",")) for line in out.stdout.split() if line.strip(","))


def relative(times: list[float]) -> list[int]:
    """Times in ms from the first (MP4 and MKV start at different origins)."""
    return [round((t - times[0]) * 1000) for t in times] if times else []


def fetch(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def error_of(body: bytes) -> str:
    return json.loads(body).get("Message", "")


def paced_pieces(mkv: bytes) -> list[tuple[float, bytes]]:
    """``mkv`` cut into (seconds from the start, bytes) at each block: what a camera
    producer (the KVS SDK, GStreamer's matroskamux) sends, one frame at a time."""
    from openkvs.wire.mkv import ebml

    entered = {ebml.SEGMENT, ebml.CLUSTER}
    pieces: list[tuple[float, bytes]] = []
    view = memoryview(mkv)
    pos, cut, cluster_ms = 0, 0, 0
    while pos < len(view):
        element_id, id_len = ebml.read_id(view, pos) or (0, 0)
        size, size_len = ebml.read_size(view, pos + id_len) or (0, 0)
        start = pos + id_len + size_len
        end = len(view) if size == ebml.UNKNOWN else start + size
        if element_id == ebml.CLUSTER_TIMECODE:
            cluster_ms = ebml.read_uint(view[start:end])
        elif element_id in (ebml.SIMPLE_BLOCK, ebml.BLOCK_GROUP):
            offset = int.from_bytes(view[start + 1 : start + 3], "big", signed=True)
            if element_id == ebml.BLOCK_GROUP:  # its Block follows the group's header
                offset = int.from_bytes(view[start + 3 : start + 5], "big", signed=True)
            pieces.append((max(cluster_ms + offset, 0) / 1000, bytes(view[cut:end])))
            cut = end
        pos = start if element_id in entered else end
    if cut < len(view):
        pieces.append((pieces[-1][0] if pieces else 0.0, bytes(view[cut:])))
    return pieces


class LiveFeed:
    """A producer streaming in real time through PutMedia in a thread; each ACK is kept
    with the time it arrived. By default ffmpeg ``-re`` (it writes one 1-second GOP per
    Cluster at once); with ``pieces`` (``paced_pieces``) frame by frame, as cameras do."""

    def __init__(
        self,
        server: ServerProcess,
        name: str,
        seconds: int = 10,
        fps: int = 25,
        pieces: list[tuple[float, bytes]] | None = None,
    ) -> None:
        from tests.media import ffmpeg_command

        self.server, self.name, self.pieces = server, name, pieces
        self.acks: list[tuple[float, dict[str, Any]]] = []
        self.ffmpeg: subprocess.Popen[bytes] | None = None
        if pieces is None:
            cmd = ffmpeg_command("-", seconds=seconds, fps=fps, audio=False, realtime=True)
            self.ffmpeg = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import asyncio

        from tests.producer import put_media

        async def body() -> Any:
            if self.pieces is not None:
                begin = time.monotonic()
                for at, piece in self.pieces:
                    if self.stopped.is_set():
                        return
                    await asyncio.sleep(max(0.0, begin + at - time.monotonic()))
                    yield piece
                return
            loop = asyncio.get_running_loop()
            assert self.ffmpeg is not None and self.ffmpeg.stdout is not None
            while data := await loop.run_in_executor(None, self.ffmpeg.stdout.read1, 1 << 16):
                yield data

        asyncio.run(
            put_media(
                self.server.url,
                self.name,
                body(),
                timecode_type="RELATIVE",
                start_timestamp=f"{time.time():.3f}",
                on_ack=lambda ack: self.acks.append((time.time(), ack)),
            )
        )

    def received(self) -> dict[str, float]:
        """Fragment number -> when its RECEIVED ack arrived."""
        return {a["FragmentNumber"]: t for t, a in self.acks if a["EventType"] == "RECEIVED"}

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received()) < count:
            assert time.monotonic() < deadline, f"{len(self.received())} of {count} fragments"
            time.sleep(0.05)

    def close(self) -> None:
        self.stopped.set()
        if self.ffmpeg is not None:
            if self.ffmpeg.poll() is None:
                self.ffmpeg.kill()
            self.ffmpeg.wait()
        self.thread.join(30)

    def __enter__(self) -> LiveFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
