"""The browser-playback helper (tests/browser.py) on live HLS and DASH that ffmpeg makes,
without OpenKVS: headless Chromium with hls.js / dash.js plays it, time advances, the
picture is not blank, and the live latency is read from the player."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import Kind, StaticServer, play, require_browser, screenshot_variance

pytestmark = pytest.mark.browser

PLAY_SECONDS = 6.0


def _live(out: Path, kind: str) -> list[str]:
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-re"]
    cmd += ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "120"]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "25"]
    if kind == "hls":
        cmd += ["-f", "hls", "-hls_time", "1", "-hls_segment_type", "fmp4"]
        cmd += ["-hls_flags", "program_date_time+delete_segments+temp_file", "-hls_list_size", "5"]
        cmd += [str(out / "live.m3u8")]
    else:
        cmd += ["-f", "dash", "-seg_duration", "1", "-window_size", "5", "-use_timeline", "1"]
        cmd += ["-streaming", "1", str(out / "live.mpd")]
    return cmd


@pytest.fixture
def live_stream(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """ffmpeg writing a live HLS or DASH presentation into a tmp dir, served with CORS;
    yields the playlist/manifest URL once three segments exist; stops ffmpeg at teardown."""
    require_browser()
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (.ci/run installs it with apt-get)")
    kind: str = request.param
    out = tmp_path / kind
    out.mkdir()
    log = (tmp_path / f"ffmpeg-{kind}.log").open("wb")
    proc = subprocess.Popen(_live(out, kind), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        manifest = out / ("live.m3u8" if kind == "hls" else "live.mpd")
        deadline = time.monotonic() + 20
        while len(list(out.glob("*.m4s"))) < 3 or not manifest.exists():
            if proc.poll() is not None:
                pytest.fail(
                    f"ffmpeg exited {proc.returncode}: {(tmp_path / f'ffmpeg-{kind}.log').read_text()}"
                )
            if time.monotonic() > deadline:
                pytest.fail("ffmpeg made no three segments in 20 s")
            time.sleep(0.1)
        with StaticServer(out) as media:
            yield f"{media.url}/{manifest.name}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.parametrize("live_stream", ["hls", "dash"], indirect=True)
def test_live_playback_in_chromium(live_stream: str, tmp_path: Path) -> None:
    kind: Kind = "hls" if live_stream.endswith(".m3u8") else "dash"
    shot = tmp_path / f"{kind}.png"
    result = play(kind, live_stream, PLAY_SECONDS, shot)
    report = f"{result!r}"
    assert result.started, report
    assert not result.fatal_errors, report
    assert result.advanced, report
    assert result.advanced_s >= 3.0, report
    assert result.played_s >= 3.0, report
    assert result.current_times == sorted(result.current_times), report
    assert result.video_size == (320, 240), report
    # ffmpeg stamps the stream with the wall clock at its start (-re keeps it there), so the
    # playhead is a few segments behind now, never ahead and never minutes behind.
    assert result.latency_s is not None, report
    assert 0.0 < result.latency_s < 15.0, report
    assert shot.is_file() and shot.stat().st_size > 0
    assert screenshot_variance(shot) > 0.0, report
