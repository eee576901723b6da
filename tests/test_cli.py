"""The ``openkvs`` client commands against a real server."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.kvs import put
from tests.media import ffmpeg_command, ffmpeg_mkv, probe_frames


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


def _progress(path: Path) -> int:
    """The last fragment count an ``openkvs get`` printed to its stderr file."""
    counts = re.findall(r"fragments: (\d+)", path.read_text())
    return int(counts[-1]) if counts else 0


def interruptible() -> None:
    """Let Ctrl-C (SIGINT) reach the child even where this run ignores it (a background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(condition, seconds: float) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_ffmpeg_pipe_to_put_and_get_follow_survive_a_server_restart(
    make_server, tmp_path, pytestconfig
) -> None:
    """ffmpeg -re ... | openkvs put cam1 -, read live by openkvs get --follow, server killed."""
    server = make_server()
    seconds = 8
    reference = ffmpeg_mkv(tmp_path / "reference.mkv", seconds=seconds)
    out, get_log = tmp_path / "live.mkv", tmp_path / "get.log"
    base = [sys.executable, "-m", "openkvs"]
    endpoint = ["--endpoint-url", server.url]
    with open(get_log, "w") as log:
        assert openkvs("streams", "create", "cam1", server=server).returncode == 0
        getter = subprocess.Popen(
            [*base, "get", "cam1", "--start", "EARLIEST", "--follow", "-o", str(out), *endpoint],
            stderr=log,
            preexec_fn=interruptible,
        )  # from the start of the empty stream: however soon the producer begins
        try:
            ffmpeg = subprocess.Popen(
                ffmpeg_command("-", seconds=seconds, realtime=True), stdout=subprocess.PIPE
            )
            putter = subprocess.Popen(
                [*base, "put", "cam1", "-", *endpoint],
                stdin=ffmpeg.stdout,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert ffmpeg.stdout is not None
            ffmpeg.stdout.close()
            _wait_for(lambda: _progress(get_log) >= 3, 15)
            server.stop(signal.SIGKILL)
            server.start()
            _, put_err = putter.communicate(timeout=60)
            assert ffmpeg.wait(10) == 0
            assert putter.returncode == 0, put_err
            assert f"{seconds} sent, {seconds} acknowledged, 0 refused" in put_err
            if not pytestconfig.getoption("--cluster"):  # there, the other node may own it
                assert "reconnected" in put_err
            _wait_for(lambda: _progress(get_log) >= seconds, 20)
        finally:
            getter.send_signal(signal.SIGINT)
            getter.wait(10)
    assert _progress(get_log) == seconds
    assert sorted(probe_frames(out)) == sorted(probe_frames(reference))


def test_fragments_clip_and_play(make_server, av_clip: Path, tmp_path: Path) -> None:
    from tests.archive import fetch, packets, relative

    server = make_server("--no-rate-limits")  # GetClip is one call a second per stream
    assert openkvs("streams", "create", "cli2", server=server).returncode == 0
    put(server, "cli2", av_clip.read_bytes(), timecode_type="RELATIVE")
    listed = openkvs("fragments", "cli2", "--start", "5m", server=server)
    assert listed.returncode == 0 and "6 fragments" in listed.stderr
    assert len(listed.stdout.splitlines()) == 7  # a header and a line each
    clip = tmp_path / "clip.mp4"
    got = openkvs("clip", "cli2", "--start", "5m", "-o", str(clip), server=server)
    assert got.returncode == 0 and f"written to {clip}" in got.stderr
    assert relative(packets(clip, "v")) == relative(packets(av_clip, "v"))
    empty = openkvs(
        "clip", "cli2", "--start", "2020-01-01T00:00:00Z", "--end", "2020-01-01T00:01:00Z",
        "-o", str(tmp_path / "none.mp4"), server=server,
    )
    assert empty.returncode == 1 and "openkvs fragments" in empty.stderr
    bad = openkvs("clip", "cli2", "--start", "yesterday", "-o", str(clip), server=server)
    assert bad.returncode != 0 and "ISO-8601" in bad.stderr
    played = openkvs("play", "cli2", "--mode", "ON_DEMAND", "--start", "5m", server=server)
    assert played.returncode == 0 and "ffplay" in played.stderr
    status, body, _ = fetch(played.stdout.strip())
    assert status == 200 and body.startswith(b"#EXTM3U")
    assert openkvs("play", "cli2", "--mode", "ON_DEMAND", server=server).returncode != 0
