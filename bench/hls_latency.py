"""HLS LIVE latency (``hls_latency``): RECEIVED → in the media playlist, and frame → player.

    .venv/bin/python bench/hls_latency.py [--smoke] [--seconds 30] [--play-seconds 8] [--browser 1]

A producer streams in real time (the ``tests/archive.py`` LiveFeed pattern): ffmpeg
``-re`` encodes testsrc2 at 30 fps with a keyframe every ``-g`` frames (30: 1 s
fragments; 15: 0.5 s) and PutMedia sends it from a thread with RELATIVE timecodes,
each ACK kept with its arrival time. ffmpeg writes one Cluster per frame
(``-cluster_time_limit 0``), so each frame leaves it as soon as it is encoded, and the
producer re-clusters them by GOP into unknown-size Clusters sent frame by frame, as
the KVS producer SDK sends (ffmpeg's own GOP Clusters would come out whole, a GOP late).
The fragments' lengths are checked afterwards (ListFragments): one per GOP.

1. A LIVE HLS session's media playlist is polled every ~2 ms on one keep-alive
   connection; a fragment's delay is when its number first appears minus when the
   producer got its RECEIVED ack (p50, p99; one process, one clock). Baseline, in the
   same run: a GetMedia NOW reader (raw socket), its chunk's last byte minus RECEIVED,
   as in figure 4. The playlist request's own round trip is printed too.
2. ``player_latency``: hls.js in headless Chromium (``tests/browser.py``) plays the LIVE
   URL (PRODUCER_TIMESTAMP, DisplayFragmentTimestamp ALWAYS) for ``--play-seconds`` and
   reports the median of "now − the playhead frame's producer time"; then the same with
   ``&LowLatency=1`` (LL-HLS) when the server's playlist has ``#EXT-X-PART``. Baseline:
   the median age of a fragment's first frame when its RECEIVED ack arrived (the least
   a player of whole fragments could show). Skipped in ``--smoke`` and without Chromium.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import math
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.archive import aws_client
from bench.common import (
    Child,
    ChunkReader,
    Row,
    Settings,
    getmedia_request,
    open_reader,
    openkvs_server,
    percentile,
    percentile_rows,
    request_json,
    standalone,
)
from openkvs.wire.mkv import ebml
from openkvs.wire.mkv.reader import ClusterStart, EbmlHeader, Element, MkvReader, SegmentStart
from tests.producer import put_media

OPTIONS = {"seconds": 30, "play_seconds": 8, "browser": 1}
FPS = 30
GOPS = {"1 s": FPS, "0.5 s": FPS // 2}  # fragment length -> keyframe interval (frames)
POLL_S = 0.002
AWS_BEST = "≈ 1.4 s (AWS's best, 0.5 s fragments)"
FRAGMENT_NUMBER = re.compile(r"FragmentNumber=(\d+)")


# ---- the live producer ---------------------------------------------------------------------


class Reclusterer:
    """ffmpeg's Matroska (one Cluster per frame) in, a producer SDK's out: the EBML header,
    an unknown-size Segment, Info and Tracks, then an unknown-size Cluster per GOP (cut at
    each keyframe) whose SimpleBlocks are passed on one by one as they come."""

    def __init__(self) -> None:
        self.reader = MkvReader()
        self.cluster_ms: int | None = None  # the ffmpeg Cluster being read
        self.out_ms: int | None = None  # the Cluster being sent

    def feed(self, data: bytes) -> bytes:
        self.reader.feed(data)
        out = []
        while (event := self.reader.next_event()) is not None:
            if isinstance(event, EbmlHeader):
                out.append(event.raw)
            elif isinstance(event, SegmentStart):
                out.append(ebml.encode_id(ebml.SEGMENT) + b"\xff")
            elif isinstance(event, ClusterStart):
                self.cluster_ms = None
            elif isinstance(event, Element):
                out.append(self._element(event))
        return b"".join(out)

    def _element(self, element: Element) -> bytes:
        if element.level == 1:  # Info and Tracks before the first Cluster; not SeekHead, Tags, Cues
            keep = element.id in (ebml.INFO, ebml.TRACKS) and self.out_ms is None
            return element.raw if keep else b""
        if element.id == ebml.CLUSTER_TIMECODE:
            self.cluster_ms = ebml.read_uint(element.payload)
            return b""
        if element.id != ebml.SIMPLE_BLOCK or self.cluster_ms is None:
            return b""
        payload = bytes(element.payload)
        got = ebml.read_size(payload, 0)
        assert got is not None
        track_len = got[1]
        at_ms = self.cluster_ms + int.from_bytes(
            payload[track_len : track_len + 2], "big", signed=True
        )
        flags = payload[track_len + 2]
        head = b""
        if flags & 0x80 or self.out_ms is None:  # a keyframe opens the next fragment
            self.out_ms = at_ms
            timecode = ebml.element(ebml.CLUSTER_TIMECODE, at_ms.to_bytes(8, "big"))
            head = ebml.encode_id(ebml.CLUSTER) + b"\xff" + timecode
        relative = (at_ms - self.out_ms).to_bytes(2, "big", signed=True)
        block = payload[:track_len] + relative + payload[track_len + 2 :]
        return head + ebml.element(ebml.SIMPLE_BLOCK, block)


def ffmpeg_live(seconds: float, gop: int) -> list[str]:
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re"]
    cmd += ["-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={FPS}", "-t", f"{seconds:.0f}"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency"]
    cmd += ["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-pix_fmt", "yuv420p"]
    cmd += ["-cluster_time_limit", "0", "-flush_packets", "1", "-f", "matroska", "-"]
    return cmd


class LiveFeed:
    """ffmpeg ``-re`` through PutMedia in a thread; each ACK kept with its arrival time
    (``perf_counter`` and wall clock). The producer start timestamp is the wall-clock time
    ffmpeg's first bytes came out: frame 0's time, as ``-re`` paces from it."""

    def __init__(self, url: str, name: str, seconds: float, gop: int) -> None:
        self.url, self.name = url, name
        self.acks: list[tuple[float, float, dict[str, Any]]] = []
        self.start_s = math.nan
        self.ffmpeg = subprocess.Popen(ffmpeg_live(seconds, gop), stdout=subprocess.PIPE)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        stdout = self.ffmpeg.stdout
        assert isinstance(stdout, io.BufferedReader)
        first = stdout.read1(1 << 16)
        self.start_s = time.time()
        clusters = Reclusterer()

        async def body() -> AsyncIterator[bytes]:
            loop = asyncio.get_running_loop()
            data = first
            while data:
                if out := clusters.feed(data):
                    yield out
                data = await loop.run_in_executor(None, stdout.read1, 1 << 16)

        def on_ack(ack: dict[str, Any]) -> None:
            self.acks.append((time.perf_counter(), time.time(), ack))

        asyncio.run(
            put_media(
                self.url,
                self.name,
                body(),
                timecode_type="RELATIVE",
                start_timestamp=f"{self.start_s:.3f}",
                on_ack=on_ack,
            )
        )

    def received(self) -> dict[str, float]:
        """Fragment number -> ``perf_counter`` of its RECEIVED ack."""
        return {a["FragmentNumber"]: t for t, _, a in self.acks if a["EventType"] == "RECEIVED"}

    def ages(self) -> list[float]:
        """Seconds from each fragment's first frame (its producer time) to its RECEIVED ack."""
        return [
            wall - (self.start_s + a["FragmentTimecode"] / 1000)
            for _, wall, a in self.acks
            if a["EventType"] == "RECEIVED"
        ]

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received()) < count:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"{self.name}: {len(self.received())} of {count} fragments")
            time.sleep(0.02)

    def close(self) -> None:
        if self.ffmpeg.poll() is None:
            self.ffmpeg.kill()
        self.ffmpeg.wait()
        self.thread.join(60)

    def __enter__(self) -> LiveFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- watching the playlist and a GetMedia reader -------------------------------------------


class PlaylistWatcher(threading.Thread):
    """GETs a media playlist every ``POLL_S`` on one keep-alive connection; notes when each
    fragment number first shows (``perf_counter``) and each request's round trip (ms)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        parts = urlsplit(url)
        self.path = f"{parts.path}?{parts.query}"
        self.conn = http.client.HTTPConnection(parts.hostname or "", parts.port)
        self.seen: dict[str, float] = {}
        self.rtts: list[float] = []
        self.first_poll = math.inf
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            started = time.perf_counter()
            self.conn.request("GET", self.path)
            response = self.conn.getresponse()
            text = response.read().decode()
            now = time.perf_counter()
            self.rtts.append((now - started) * 1000)
            self.first_poll = min(self.first_poll, now)
            for number in FRAGMENT_NUMBER.findall(text):
                self.seen.setdefault(number, now)
            time.sleep(POLL_S)
        self.conn.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


class NowReader(threading.Thread):
    """A raw-socket GetMedia NOW reader (``bench.common.ChunkReader``) on its own loop."""

    def __init__(self, server: Child, name: str) -> None:
        super().__init__(daemon=True)
        self.server, self.name = server, name
        self.reader: ChunkReader | None = None
        self.ready = threading.Event()
        self.halt = threading.Event()
        self.connected = math.inf

    def run(self) -> None:
        async def read() -> None:
            request = getmedia_request(self.name, "NOW")
            self.reader = await open_reader(self.server.port, request, expect=1 << 30)
            self.connected = await self.reader.answered
            self.ready.set()
            while not self.halt.is_set():
                await asyncio.sleep(0.05)
            self.reader.close()

        try:
            asyncio.run(read())
        finally:
            self.ready.set()

    @property
    def arrived(self) -> dict[str, float]:
        return dict(self.reader.arrived) if self.reader else {}

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def live_url(client: Any, name: str, **options: Any) -> str:
    """A LIVE HLS session's master playlist URL (retried until the stream is live)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return str(
                client.get_hls_streaming_session_url(
                    StreamName=name, PlaybackMode="LIVE", **options
                )["HLSStreamingSessionURL"]
            )
        except client.exceptions.ResourceNotFoundException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def get(url: str) -> str:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        conn.request("GET", f"{parts.path}?{parts.query}")
        response = conn.getresponse()
        text = response.read().decode()
        if response.status != 200:
            raise RuntimeError(f"GET {url}: HTTP {response.status} {text[:200]}")
        return text
    finally:
        conn.close()


def media_playlist(master_url: str) -> str:
    """The URL of the (first) media playlist a master playlist names."""
    lines = [line for line in get(master_url).splitlines() if line and not line.startswith("#")]
    return master_url.rsplit("/", 1)[0] + "/" + lines[0]


def playlist_delays(
    server: Child, feed: LiveFeed, seconds: float
) -> tuple[list[float], list[float], list[float]]:
    """Watch a LIVE session's playlist and a NOW reader for ``seconds``: the delays (ms)
    from RECEIVED to in-the-playlist and to the reader's last byte, and the playlist
    requests' round trips (ms). Only fragments RECEIVED once both were watching count."""
    client = aws_client(server.url)
    watcher = PlaylistWatcher(media_playlist(live_url(client, feed.name)))
    reader = NowReader(server, feed.name)
    reader.start()
    reader.ready.wait(15)
    watcher.start()
    try:
        time.sleep(seconds)
    finally:
        watcher.stop()
        reader.stop()
    time.sleep(0.1)
    watching = max(watcher.first_poll, reader.connected)
    received = {n: t for n, t in feed.received().items() if t > watching}
    seen, arrived = watcher.seen, reader.arrived
    delays = [(seen[n] - t) * 1000 for n, t in received.items() if n in seen]
    base = [(arrived[n] - t) * 1000 for n, t in received.items() if n in arrived]
    return delays, base, watcher.rtts


def fragment_lengths(server: Child, name: str) -> list[int]:
    client = aws_client(server.url)
    selector = {
        "FragmentSelectorType": "SERVER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": time.time() - 3600, "EndTimestamp": time.time() + 60},
    }
    pages = client.get_paginator("list_fragments").paginate(
        StreamName=name, FragmentSelector=selector
    )
    return [f["FragmentLengthInMilliseconds"] for page in pages for f in page["Fragments"]]


# ---- the player ----------------------------------------------------------------------------


def browser_missing() -> str | None:
    """Why hls.js in Chromium cannot run here (``tests/browser.py``), or None."""
    try:
        from tests import browser
    except ImportError as exc:
        return f"tests.browser does not import: {exc}"
    return browser.missing()


def player_latency(
    server_url: str, stream: str, low_latency: bool, screenshot: Path, seconds: float = 8
) -> tuple[float, str]:
    """hls.js in headless Chromium playing ``stream`` LIVE (PRODUCER_TIMESTAMP,
    DisplayFragmentTimestamp ALWAYS) for ``seconds``: the median "producer frame → player"
    latency in seconds (``tests.browser.play``'s ``latencies``: now minus the playhead's
    EXT-X-PROGRAM-DATE-TIME time). ``low_latency`` plays the master URL with
    ``&LowLatency=1`` in hls.js's low-latency mode. Returns (NaN, why) when it cannot be
    measured (no browser, no LL-HLS on this server, playback never started), else
    (latency, "")."""
    why = browser_missing()
    if why is not None:
        return math.nan, f"not available: {why}"
    from tests.browser import play

    url = live_url(
        aws_client(server_url),
        stream,
        HLSFragmentSelector={"FragmentSelectorType": "PRODUCER_TIMESTAMP"},
        DisplayFragmentTimestamp="ALWAYS",
    )
    if low_latency:
        url += "&LowLatency=1"
        if "#EXT-X-PART" not in get(url) + get(media_playlist(url)):
            return math.nan, "not available: no #EXT-X-PART with LowLatency=1"
    result = play("hls", url, seconds, screenshot, low_latency=low_latency)
    if not result.latencies:
        errors = "; ".join(result.errors[:3]) or "no latency sample"
        return math.nan, f"not measured: started={result.started}, {errors}"
    return statistics.median(result.latencies), ""


# ---- the benchmark -------------------------------------------------------------------------


def run(settings: Settings) -> list[Row]:
    options = {**OPTIONS, **settings.options}
    watch_s = 1.5 if settings.smoke else float(options["seconds"])
    play_s = float(options["play_seconds"])
    browser = bool(options["browser"]) and not settings.smoke
    # enough stream for the watch, then two plays (Chromium's start and hls.js's included)
    feed_s = watch_s + 5 + (2 * (play_s + 30) if browser else 0)
    rows = []
    with openkvs_server(settings.work / "data", "--no-rate-limits") as server:
        gops = list(GOPS.items())[-1:] if settings.smoke else GOPS.items()  # smoke: 0.5 s only
        for label, gop in gops:
            name = f"live-{gop}"
            body = {"StreamName": name, "DataRetentionInHours": 1}
            asyncio.run(request_json(server.url, "createStream", body))
            with LiveFeed(server.url, name, feed_s, gop) as feed:
                feed.wait_for(1)
                delays, base, rtts = playlist_delays(server, feed, watch_s)
                print(
                    f"  {label} fragments: {len(delays)} in the playlist, {len(base)} read by "
                    f"GetMedia; playlist GET round trip p50 {percentile(rtts, 50):.2f} ms, "
                    f"p99 {percentile(rtts, 99):.2f} ms ({len(rtts)} polls)",
                    flush=True,
                )
                players = {}
                if browser:
                    for low in (False, True):
                        shot = settings.work / f"player-{gop}-{'ll' if low else 'hls'}.png"
                        players[low] = player_latency(server.url, name, low, shot, play_s)
                ages = feed.ages()
            lengths = fragment_lengths(server, name)
            expected = 1000 * gop / FPS
            middle = statistics.median(lengths[1:-1] or lengths)
            print(f"  {label} fragments: {len(lengths)} stored, median length {middle:.0f} ms")
            if abs(middle - expected) > expected / 4:
                raise RuntimeError(f"fragments of {middle} ms, not one per {expected:.0f} ms GOP")
            rows += percentile_rows(
                f"HLS LIVE, {label} fragments: RECEIVED → in media playlist",
                delays,
                base,
                "ms",
                "GetMedia NOW reader, RECEIVED → last byte",
            )
            why_skipped = (
                "not measured: smoke run" if settings.smoke else "not measured: --browser 0"
            )
            for low, what in (
                (False, "HLS LIVE in hls.js"),
                (True, "LL-HLS (LowLatency=1) in hls.js"),
            ):
                latency, why = players.get(low, (math.nan, why_skipped))
                rows.append(
                    Row(
                        f"{what}, {label} fragments: producer frame → player, median"
                        + (f" — {why}" if why else ""),
                        latency,
                        statistics.median(ages) if ages else None,
                        "s",
                        quota=AWS_BEST,
                        baseline_name="first frame's age at RECEIVED",
                    )
                )
    return rows


if __name__ == "__main__":
    standalone(run, __doc__, OPTIONS)
