"""The ``openkvs`` client commands against a real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.kvs import put
from tests.media import probe_frames


def openkvs(*args: str, server=None) -> subprocess.CompletedProcess[str]:  # noqa: ANN001
    extra = ["--endpoint-url", server.url] if server is not None else []
    return subprocess.run(
        [sys.executable, "-m", "openkvs", *args, *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_streams_and_get_round_trip(make_server, av_clip: Path, tmp_path: Path) -> None:
    server = make_server("--getmedia-idle-timeout-s", "0.5")
    created = openkvs("streams", "create", "cli1", server=server)
    assert created.returncode == 0 and created.stdout.startswith("arn:aws:kinesisvideo:")
    assert "cli1\tACTIVE\t24h" in openkvs("streams", "list", server=server).stdout
    put(server, "cli1", av_clip.read_bytes(), timecode_type="RELATIVE")
    out = tmp_path / "out.mkv"
    got = openkvs("get", "cli1", "--start", "EARLIEST", "-o", str(out), server=server)
    assert got.returncode == 0 and "fragments: 6 written" in got.stderr
    assert sorted(probe_frames(out)) == sorted(probe_frames(av_clip))
    assert openkvs("streams", "delete", "cli1", server=server).returncode == 0
    missing = openkvs("streams", "describe", "cli1", server=server)
    assert missing.returncode == 1 and "openkvs streams create" in missing.stderr


def test_errors_say_what_to_do_next(tmp_path: Path) -> None:
    from tests.conftest import ServerProcess

    nobody = ServerProcess(tmp_path)  # never started: nothing listens on its port
    down = openkvs("streams", "list", server=nobody)
    assert down.returncode == 1 and "Start it with ./scripts/serve" in down.stderr
