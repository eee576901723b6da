"""LIVE and LIVE_REPLAY playback while a producer streams in real time: playlists that
follow the stream, ffmpeg reading a LIVE URL, and hls.js and dash.js in Chromium."""

from __future__ import annotations

import re
import statistics
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.archive import LiveFeed, fetch, packets
from tests.conftest import ServerProcess
from tests.kvs import create_stream

pytestmark = pytest.mark.serial  # wall-clock pacing and latency: run alone


def live_url(server: ServerProcess, name: str, kind: str = "HLS", **options: object) -> str:
    archived = server.client("kinesis-video-archived-media")
    deadline = time.monotonic() + 15
    while True:
        try:
            if kind == "HLS":
                return archived.get_hls_streaming_session_url(StreamName=name, **options)[
                    "HLSStreamingSessionURL"
                ]
            return archived.get_dash_streaming_session_url(StreamName=name, **options)[
                "DASHStreamingSessionURL"
            ]
        except archived.exceptions.ResourceNotFoundException:
            assert time.monotonic() < deadline, "the stream never went live"
            time.sleep(0.1)


def media_playlist_url(master_url: str) -> str:
    status, body, _ = fetch(master_url)
    assert status == 200
    return master_url.rsplit("/", 1)[0] + "/" + body.decode().strip().splitlines()[-1]


class PlaylistWatcher(threading.Thread):
    """Polls a media playlist every few ms; remembers when each fragment first showed."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.seen, self.sequences = url, {}, []  # type: ignore[var-annotated]
        self.playlists: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            status, body, _ = fetch(self.url)
            now = time.time()
            text = body.decode()
            self.playlists.append(text)
            for number in re.findall(r"FragmentNumber=(\d+)", text):
                self.seen.setdefault(number, now)
            if found := re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text):
                self.sequences.append(int(found.group(1)))
            time.sleep(0.005)


def test_hls_live_playlist_follows_the_stream_within_50_ms(make_server, tmp_path: Path) -> None:
    server = make_server()
    create_stream(server, "live")
    with LiveFeed(server, "live", seconds=9) as feed:
        feed.wait_for(1)
        url = live_url(
            server, "live", PlaybackMode="LIVE", DisplayFragmentTimestamp="ALWAYS",
            HLSFragmentSelector={"FragmentSelectorType": "PRODUCER_TIMESTAMP"},
        )
        watcher = PlaylistWatcher(media_playlist_url(url))
        watcher.start()
        copy = tmp_path / "live.mp4"
        follower = subprocess.Popen(
            ["ffmpeg", "-v", "error", "-y", "-i", url, "-c", "copy", "-t", "4", str(copy)]
        )
        try:
            feed.wait_for(7)
            time.sleep(0.3)
        finally:
            watcher.stop.set()
            watcher.join(10)
        assert follower.wait(30) == 0
    received = feed.received()
    delays = [watcher.seen[n] - t for n, t in received.items() if n in watcher.seen and t > min(watcher.seen.values()) - 0.001]
    assert len(delays) >= 4
    assert statistics.median(delays) < 0.05, delays
    assert max(delays) < 0.25, delays
    last = watcher.playlists[-1]
    assert "#EXT-X-ENDLIST" not in last and "#EXT-X-PLAYLIST-TYPE" not in last
    assert last.count("#EXTINF:") <= 5 and "#EXT-X-PROGRAM-DATE-TIME:" in last
    assert watcher.sequences == sorted(watcher.sequences) and watcher.sequences[-1] > watcher.sequences[0]
    assert len(packets(copy, "v")) >= 75  # ffmpeg followed the LIVE playlist for 4 s


def test_live_replay_adds_fragments_at_their_pace(make_server) -> None:
    server = make_server()
    create_stream(server, "replay")
    with LiveFeed(server, "replay", seconds=5) as feed:
        start = time.time()
        feed.wait_for(5)
    end = time.time()
    url = live_url(
        server, "replay", PlaybackMode="LIVE_REPLAY",
        HLSFragmentSelector={
            "FragmentSelectorType": "SERVER_TIMESTAMP",
            "TimestampRange": {"StartTimestamp": start - 1, "EndTimestamp": end},
        },
    )
    media = media_playlist_url(url)
    counts = []
    for _ in range(3):
        counts.append(fetch(media)[1].decode().count("#EXTINF:"))
        time.sleep(1.05)
    assert counts[0] == 1 and counts[1] >= 2 and counts[2] >= 3 and counts[2] <= 4
    assert "#EXT-X-ENDLIST" not in fetch(media)[1].decode()


@pytest.mark.browser
def test_browsers_play_live_hls_and_dash(make_server, tmp_path: Path) -> None:
    from tests.browser import play, require_browser, screenshot_variance

    require_browser()
    server = make_server()
    create_stream(server, "cam")
    with LiveFeed(server, "cam", seconds=30) as feed:
        feed.wait_for(2)
        hls = live_url(
            server, "cam", PlaybackMode="LIVE",
            HLSFragmentSelector={"FragmentSelectorType": "PRODUCER_TIMESTAMP"},
            DisplayFragmentTimestamp="ALWAYS",
        )
        result = play("hls", hls, 5, tmp_path / "hls.png")
        assert result.advanced and result.advanced_s >= 3, result
        assert not result.fatal_errors, result.errors
        assert result.latency_s is not None and 0 < result.latency_s < 8, result.latencies
        assert screenshot_variance(tmp_path / "hls.png") > 0
        dash = live_url(server, "cam", kind="DASH", PlaybackMode="LIVE")
        result = play("dash", dash, 5, tmp_path / "dash.png")
        assert result.advanced and result.advanced_s >= 3, result
        assert not result.fatal_errors, result.errors
        assert result.latency_s is not None and 0 < result.latency_s < 8, result.latencies
        assert screenshot_variance(tmp_path / "dash.png") > 0
