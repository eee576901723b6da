"""Low-latency HLS (beyond AWS): parts of the fragment being received, blocking playlist
reloads, preload hints, and hls.js playing well under one fragment behind live."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.archive import LiveFeed, fetch, ffmpeg_variant, paced_pieces, packets
from tests.kvs import create_stream
from tests.test_playback_live import live_url

TWO_SECOND_GOPS = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-keyint_min", "50",
                   "-sc_threshold", "0"]

pytestmark = pytest.mark.serial  # wall-clock pacing and latency: run alone


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[float, bytes]]:
    """20 s of 2-second fragments, sent frame by frame in real time."""
    path = tmp_path_factory.mktemp("ll") / "camera.mkv"
    return paced_pieces(ffmpeg_variant(path, *TWO_SECOND_GOPS, seconds=20).read_bytes())


def media_url(master: str) -> str:
    status, body, _ = fetch(master)
    assert status == 200
    return master.rsplit("/", 1)[0] + "/" + body.decode().strip().splitlines()[-1]


def test_parts_grow_with_the_fragment_and_blocking_reload_waits_for_them(make_server, camera, tmp_path: Path) -> None:
    server = make_server()
    create_stream(server, "cam")
    with LiveFeed(server, "cam", pieces=camera) as feed:
        feed.wait_for(1)
        master = live_url(server, "cam", PlaybackMode="LIVE") + "&LowLatency=1"
        media = media_url(master)
        base = master.rsplit("/", 1)[0]
        text = fetch(media)[1].decode()
        assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=" in text
        assert "#EXT-X-PART-INF:PART-TARGET=0.200" in text
        hint = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', text)
        assert hint is not None
        msn, part = map(int, re.search(r"SegmentNumber=(\d+)&PartNumber=(\d+)", hint.group(1)).groups())  # type: ignore[union-attr]
        # the hinted part does not exist yet: the server holds the request until it does
        asked = time.monotonic()
        status, body, _ = fetch(f"{base}/{hint.group(1)}")
        waited = time.monotonic() - asked
        assert status == 200 and body[4:8] == b"moof" and waited < 1.0
        # a blocking reload for the part after it returns once that part is listed
        asked = time.monotonic()
        status, body, _ = fetch(f"{media}&_HLS_msn={msn}&_HLS_part={part + 1}")
        assert status == 200 and time.monotonic() - asked < 1.0
        assert f"SegmentNumber={msn}&PartNumber={part + 1}&" in body.decode()
        # the parts of a whole segment, after its init segment, decode to all its frames
        feed.wait_for(3)
        text = fetch(media)[1].decode()
    uris = re.findall(r'#EXT-X-PART:DURATION=[\d.]+,URI="([^"]+)"', text)
    first_msn = min(int(m) for m in re.findall(r"SegmentNumber=(\d+)", " ".join(uris)))
    whole = [u for u in uris if f"SegmentNumber={first_msn}&" in u]
    assert len(whole) == 10  # 2 s in 200 ms parts
    init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text).group(1)  # type: ignore[union-attr]
    joined = tmp_path / "parts.mp4"
    joined.write_bytes(fetch(f"{base}/{init}")[1] + b"".join(fetch(f"{base}/{u}")[1] for u in whole))
    times = packets(joined, "v")
    assert len(times) == 50
    assert all(round((b - a) * 1000) == 40 for a, b in zip(times, times[1:], strict=False))


@pytest.mark.browser
def test_hls_js_plays_low_latency_well_under_one_fragment_behind(make_server, camera, tmp_path: Path) -> None:
    from tests.browser import play, require_browser, screenshot_variance

    require_browser()
    server = make_server()
    create_stream(server, "cam")
    with LiveFeed(server, "cam", pieces=camera) as feed:
        feed.wait_for(1)
        master = live_url(
            server, "cam", PlaybackMode="LIVE", DisplayFragmentTimestamp="ALWAYS",
            HLSFragmentSelector={"FragmentSelectorType": "PRODUCER_TIMESTAMP"},
        )
        result = play("hls", master + "&LowLatency=1", 6, tmp_path / "ll.png", low_latency=True)
    assert result.advanced and result.advanced_s >= 4, result
    assert not result.fatal_errors, result.errors
    print("LL-HLS latency", result.latency_s, sorted(result.latencies)[len(result.latencies) // 2])
    assert result.latencies and min(result.latencies) < 2.0, result.latencies  # a fragment is 2 s
    assert screenshot_variance(tmp_path / "ll.png") > 0
