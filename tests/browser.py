"""Real-browser playback for tests: headless Chromium runs hls.js or dash.js on a URL.

``play("hls"|"dash", url, seconds, screenshot)`` serves a one-video player page plus the
pinned player scripts from ``node_modules/`` (``npm ci`` at the repo root installs them;
nothing is fetched at test time) on a throwaway 127.0.0.1 port, opens it in Debian's
``/usr/bin/chromium`` through Playwright's bundled driver (never ``playwright install``),
waits for playback to start, samples ``video.currentTime`` and the live latency for
``seconds``, takes a screenshot and closes everything it started.

The player page and the media are on different origins (different ports), as with AWS,
so the media server must answer with CORS headers (``Access-Control-Allow-Origin: *``).
``StaticServer`` serves a folder that way, for tests that make their own HLS/DASH.

Latency is "wall clock now minus the wall-clock time of the frame at the playhead", read
in the page (the browser and the servers share this machine's clock):

* hls.js: ``Date.now() - hls.playingDate``, where ``playingDate`` is the playhead's
  EXT-X-PROGRAM-DATE-TIME (None when the playlist carries no PROGRAM-DATE-TIME);
* dash.js: ``player.getCurrentLiveLatency()`` (now minus availabilityStartTime plus
  the playhead's presentation time; None for a static MPD). dash.js's UTC sync with a
  public time server is switched off so that it uses the local clock and the page makes
  no outside request; a caller may turn it back on through ``config``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import json
import mimetypes
import os
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / "node_modules"
PLAYER_SCRIPTS = {
    "hls": NODE_MODULES / "hls.js" / "dist" / "hls.min.js",
    "dash": NODE_MODULES / "dashjs" / "dist" / "modern" / "umd" / "dash.all.min.js",
}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
VIEWPORT = {"width": 640, "height": 360}

Kind = Literal["hls", "dash"]


def chromium_path() -> str | None:
    """``$OPENKVS_CHROMIUM``, else Debian's ``chromium`` on PATH, else None."""
    env = os.environ.get("OPENKVS_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def missing() -> str | None:
    """Why a browser test cannot run here, or None when it can."""
    if chromium_path() is None:
        return "chromium is not installed (.ci/run installs Debian's chromium with apt-get)"
    for kind, script in PLAYER_SCRIPTS.items():
        if not script.is_file():
            return f"{script.relative_to(ROOT)} ({kind} player) is missing: run `npm ci` at the repo root"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return None


def artifacts(name: str) -> Path:
    """A folder for a test's screenshots that outlives the run: ``$OPENKVS_TEST_ARTIFACTS``
    (CI can keep it), else ``test-artifacts/`` at the repo root."""
    path = Path(os.environ.get("OPENKVS_TEST_ARTIFACTS") or ROOT / "test-artifacts") / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def require_browser() -> None:
    """Skip the calling test, saying why, when Chromium, node_modules or playwright is missing."""
    reason = missing()
    if reason is not None:
        pytest.skip(reason)


# --- a static HTTP server with CORS, in a thread -------------------------------------------------

mimetypes.add_type("application/vnd.apple.mpegurl", ".m3u8")
mimetypes.add_type("application/dash+xml", ".mpd")
mimetypes.add_type("video/iso.segment", ".m4s")
mimetypes.add_type("video/mp4", ".mp4")
mimetypes.add_type("text/javascript", ".js")


class _Handler(SimpleHTTPRequestHandler):
    files: Mapping[str, bytes | Path] = {}

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Headers", "*")
        self.send_header("Access-Control-Expose-Headers", "*")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def do_OPTIONS(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(204)
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send_head(self):  # type: ignore[no-untyped-def]
        entry = self.files.get(self.path.split("?", 1)[0])
        if entry is None:
            return super().send_head()
        body = entry.read_bytes() if isinstance(entry, Path) else entry
        ctype = mimetypes.guess_type(self.path.split("?", 1)[0])[0] or "application/octet-stream"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass


class StaticServer:
    """Serves ``root`` (and/or in-memory ``files``: URL path -> bytes or file) on a free
    127.0.0.1 port from a daemon thread, with ``Access-Control-Allow-Origin: *`` and
    ``Cache-Control: no-store``. Use as a context manager; ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(
        self, root: Path | None = None, files: Mapping[str, bytes | Path] | None = None
    ) -> None:
        directory = str(root) if root is not None else os.devnull
        handler = type(
            "Handler",
            (_Handler,),
            {
                "files": dict(files or {}),
                "__init__": lambda s, *a, **k: _Handler.__init__(s, *a, directory=directory, **k),
            },
        )
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port: int = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    def __enter__(self) -> StaticServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.is_alive():
            self.httpd.shutdown()
            self._thread.join(5)
        self.httpd.server_close()


# --- the player page -----------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>openkvs player</title>
<style>html,body{margin:0;background:#000;overflow:hidden}
video{display:block;width:100vw;height:100vh;object-fit:contain;background:#000}</style>
<script src="/%(script)s"></script></head>
<body><video id="v" muted playsinline autoplay></video>
<script>
"use strict";
const P = %(params)s;
const video = document.getElementById("v");
const S = window.__state = {
  playing: false, startTime: null, fatal: false, errors: [], player: null,
};
function err(fatal, text) {
  S.errors.push({fatal: !!fatal, text: String(text)});
  if (fatal) S.fatal = true;
}
function play() { video.play().catch(e => err(false, "video.play(): " + e)); }
video.muted = true;
video.addEventListener("playing", () => {
  if (!S.playing) { S.playing = true; S.startTime = video.currentTime; }
});
video.addEventListener("error", () => {
  const e = video.error;
  err(true, "video element error " + (e ? e.code + ": " + e.message : "?"));
});
window.__latency = () => null;
try {
  if (P.kind === "hls") {
    if (!Hls.isSupported()) throw new Error("hls.js: MediaSource is not supported here");
    const hls = S.player = window.hls = new Hls(Object.assign({}, P.defaults, P.config));
    hls.on(Hls.Events.ERROR, (_, d) => err(d.fatal,
      "hls.js " + d.type + "/" + d.details + (d.reason ? ": " + d.reason : "")
      + (d.response && d.response.code ? " (HTTP " + d.response.code + ")" : "")
      + (d.error && d.error.message ? ": " + d.error.message : "")));
    hls.on(Hls.Events.MANIFEST_PARSED, play);
    hls.loadSource(P.url);
    hls.attachMedia(video);
    window.__latency = () => {
      const d = hls.playingDate;
      return d ? (Date.now() - d.getTime()) / 1000 : null;
    };
  } else {
    const player = S.player = window.player = dashjs.MediaPlayer().create();
    player.updateSettings(P.defaults);
    player.updateSettings(P.config);
    player.on(dashjs.MediaPlayer.events.ERROR, e => {
      const x = e.error || e;
      err(true, "dash.js error " + (x.code !== undefined ? x.code + ": " : "") + (x.message || JSON.stringify(x)));
    });
    player.on(dashjs.MediaPlayer.events.PLAYBACK_ERROR, e => err(true, "dash.js playback error " + JSON.stringify(e.error || e)));
    player.initialize(video, P.url, true);
    window.__latency = () => {
      if (!player.isReady() || !player.isDynamic()) return null;
      const l = player.getCurrentLiveLatency();
      return Number.isFinite(l) && l > 0 ? l : null;
    };
  }
} catch (e) { err(true, "player setup: " + e); }
window.__sample = () => {
  let latency = null;
  try { latency = window.__latency(); } catch (e) { latency = null; }
  const b = video.buffered;
  let played = 0;
  for (let i = 0; i < video.played.length; i++) played += video.played.end(i) - video.played.start(i);
  return {
    currentTime: video.currentTime, latency: latency, paused: video.paused,
    readyState: video.readyState, played: played,
    bufferedEnd: b.length ? b.end(b.length - 1) : null,
    width: video.videoWidth, height: video.videoHeight,
  };
};
</script></body></html>
"""


def _defaults(kind: Kind, low_latency: bool) -> dict[str, Any]:
    if kind == "hls":
        if low_latency:
            # no liveSyncDuration(Count): a user value would override the playlist's
            # PART-HOLD-BACK, the target an LL-HLS player keeps behind live
            return {"lowLatencyMode": True, "maxLiveSyncPlaybackRate": 1.5}
        return {"lowLatencyMode": False}
    streaming: dict[str, Any] = {"utcSynchronization": {"enabled": False}}
    if low_latency:
        streaming["liveCatchup"] = {"enabled": True}
    return {"streaming": streaming}


def player_page(
    kind: Kind, url: str, low_latency: bool = False, config: Mapping[str, Any] | None = None
) -> bytes:
    """The player HTML for ``kind`` playing ``url``; ``config`` goes to ``new Hls(config)`` (after
    the defaults) or ``player.updateSettings(config)`` (dash.js)."""
    params = {
        "kind": kind,
        "url": url,
        "defaults": _defaults(kind, low_latency),
        "config": dict(config or {}),
    }
    text = _PAGE % {
        "script": PLAYER_SCRIPTS[kind].name,
        "params": json.dumps(params).replace("</", "<\\/"),
    }
    return text.encode()


# --- playing --------------------------------------------------------------------------------------


@dataclass
class Sample:
    elapsed_s: float
    """Wall-clock seconds since playback started (the first ``playing`` event was seen)."""
    current_time: float
    latency_s: float | None
    paused: bool
    ready_state: int
    buffered_end: float | None


@dataclass
class PlayResult:
    kind: Kind
    url: str
    started: bool
    """Whether the video element fired ``playing`` within ``start_timeout``."""
    start_time: float | None
    """``video.currentTime`` at the first ``playing`` event (a live player starts near the edge)."""
    samples: list[Sample] = field(default_factory=list)
    current_times: list[float] = field(default_factory=list)
    final_time: float = 0.0
    advanced_s: float = 0.0
    """``final_time - start_time`` (0 when playback never started)."""
    played_s: float = 0.0
    """Seconds actually played: the sum of ``video.played``'s ranges (seeks do not count)."""
    advanced: bool = False
    """Playback started and ``currentTime`` moved forward by at least 0.5 s."""
    latency_s: float | None = None
    """The last latency sample that was not None (see the module's docstring), else None."""
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """What the player, the video element or the page reported; fatal ones start with 'fatal: '."""
    console: list[str] = field(default_factory=list)
    """The page's console messages of level warning and error."""
    video_size: tuple[int, int] = (0, 0)
    screenshot: Path | None = None
    wall_s: float = 0.0
    """Seconds the whole call took, Chromium's start and stop included."""

    @property
    def fatal_errors(self) -> list[str]:
        return [e for e in self.errors if e.startswith("fatal: ")]


def play(
    kind: Kind,
    url: str,
    seconds: float,
    screenshot: Path,
    low_latency: bool = False,
    *,
    start_timeout: float = 20.0,
    interval: float = 0.5,
    config: Mapping[str, Any] | None = None,
) -> PlayResult:
    """Play ``url`` with hls.js (``kind="hls"``) or dash.js (``"dash"``) in headless Chromium.

    Waits up to ``start_timeout`` s for the first ``playing`` event (or a fatal error), then
    samples every ``interval`` s for ``seconds`` s, writes a PNG of the page (the video fills
    it, 640x360) to ``screenshot`` and returns what it saw. Skips the test when Chromium,
    node_modules or playwright is missing. Safe to call from a coroutine test too (Playwright
    runs in a thread of its own), though it blocks that event loop: use ``play_async`` there.

    ``low_latency``: hls.js gets ``lowLatencyMode: true`` (LL-HLS parts), a live sync point
    two segments from the edge instead of three and catch-up up to 1.5x speed (else
    ``lowLatencyMode: false``); dash.js gets ``liveCatchup.enabled: true`` (its target delay
    stays the MPD's suggestedPresentationDelay / ServiceDescription; low-latency chunked mode
    is what dash.js itself detects in the MPD). ``config`` is merged over these.
    """
    if kind not in PLAYER_SCRIPTS:
        raise ValueError(f"kind must be 'hls' or 'dash', not {kind!r}")
    require_browser()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chromium") as pool:
        future = pool.submit(
            _play,
            kind,
            url,
            seconds,
            Path(screenshot),
            low_latency,
            start_timeout,
            interval,
            config,
        )
        return future.result()


async def play_async(
    kind: Kind, url: str, seconds: float, screenshot: Path, low_latency: bool = False, **kw: Any
) -> PlayResult:
    """``play`` for coroutine tests: the event loop keeps running meanwhile."""
    require_browser()
    return await asyncio.to_thread(play, kind, url, seconds, screenshot, low_latency, **kw)


def _play(
    kind: Kind,
    url: str,
    seconds: float,
    screenshot: Path,
    low_latency: bool,
    start_timeout: float,
    interval: float,
    config: Mapping[str, Any] | None,
) -> PlayResult:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    began = time.monotonic()
    result = PlayResult(kind=kind, url=url, started=False, start_time=None)
    files: dict[str, bytes | Path] = {
        "/player.html": player_page(kind, url, low_latency, config),
        "/favicon.ico": b"",
        "/" + PLAYER_SCRIPTS[kind].name: PLAYER_SCRIPTS[kind],
    }
    with StaticServer(files=files) as site, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            context = browser.new_context(viewport=VIEWPORT, ignore_https_errors=True)  # type: ignore[arg-type]
            page = context.new_page()
            page.on("pageerror", lambda e: result.errors.append(f"fatal: page error: {e}"))
            page.on(
                "console",
                lambda m: (
                    result.console.append(f"{m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None
                ),
            )
            page.goto(f"{site.url}/player.html", wait_until="load")
            try:
                page.wait_for_function(
                    "() => window.__state && (window.__state.playing || window.__state.fatal)",
                    timeout=start_timeout * 1000,
                    polling=100,
                )
            except PlaywrightError:
                pass  # never started: reported as started=False with whatever errors it had
            state = page.evaluate(
                "() => ({playing: __state.playing, startTime: __state.startTime})"
            )
            result.started = bool(state["playing"])
            result.start_time = state["startTime"]
            t0 = time.monotonic()
            if result.started:
                while True:
                    elapsed = time.monotonic() - t0
                    s = page.evaluate("() => __sample()")
                    result.samples.append(
                        Sample(
                            elapsed_s=round(elapsed, 3),
                            current_time=float(s["currentTime"]),
                            latency_s=s["latency"],
                            paused=bool(s["paused"]),
                            ready_state=int(s["readyState"]),
                            buffered_end=s["bufferedEnd"],
                        )
                    )
                    result.played_s = float(s["played"])
                    result.video_size = (int(s["width"]), int(s["height"]))
                    if elapsed >= seconds:
                        break
                    time.sleep(min(interval, max(0.0, seconds - elapsed)))
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))
            result.screenshot = screenshot
            for e in page.evaluate("() => __state.errors"):
                result.errors.append(("fatal: " if e["fatal"] else "") + e["text"])
            context.close()
        finally:
            browser.close()
    result.current_times = [s.current_time for s in result.samples]
    result.latencies = [s.latency_s for s in result.samples if s.latency_s is not None]
    result.latency_s = result.latencies[-1] if result.latencies else None
    if result.samples and result.start_time is not None:
        result.final_time = result.samples[-1].current_time
        result.advanced_s = result.final_time - result.start_time
    result.advanced = result.started and result.advanced_s >= 0.5
    result.wall_s = time.monotonic() - began
    return result


def screenshot_variance(path: Path) -> float:
    """The variance of a PNG's pixel values (decoded with PyAV); 0 for a uniform (blank) image."""
    import av
    import numpy as np

    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        pixels = frame.to_ndarray(format="rgb24")
    return float(np.var(pixels.astype(np.float64)))
