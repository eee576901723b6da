"""Helpers for the archived-media tests: streams with real media in them, probes of the output."""

from __future__ import annotations

import json
import shutil
import subprocess
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


def ffmpeg_variant(path: Path, *codec: str, audio: bool = False, seconds: int = 4) -> Path:
    """An MKV of ``seconds`` with one 1-second Cluster per GOP, encoded with ``codec`` args."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (.ci/run installs it with apt-get)")
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
    cmd += ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    cmd += ["-t", str(seconds), *codec, "-pix_fmt", "yuv420p"]
    if audio:
        cmd += ["-c:a", "aac", "-b:a", "64k"]
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
