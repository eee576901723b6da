"""The web console: its session cookie over raw HTTP, then the whole page in headless Chromium.

The browser test does what a person would: logs in (a wrong secret first), creates a
stream, streams ``ffmpeg -re | openkvs put`` into it, plays it live (``currentTime``
advances), sees the timeline with GetImages thumbnails, plays from a thumbnail,
downloads a clip (decoded by PyAV) and deletes the stream. Screenshots go to
``test-artifacts/console/`` (``$OPENKVS_TEST_ARTIFACTS``); the README's is one of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import boto3
import pytest
import urllib3

from tests.browser import ROOT, artifacts, require_browser, screenshot_variance
from tests.conftest import ServerProcess
from tests.media import ffmpeg_command

KEY, SECRET = "AKIDCONSOLE", "console-secret"
HEADER = {"X-OpenKVS-Console": "1"}
VENDORED = ROOT / "openkvs/server/console/assets/vendor/hls.min.js"


@pytest.fixture
def secured(make_server, tmp_path: Path) -> ServerProcess:  # type: ignore[no-untyped-def]
    credentials = tmp_path / "credentials.json"
    credentials.write_text(json.dumps({KEY: SECRET, "AKIDOTHER": "other"}))
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {
                KEY: {"admin": [""], "read": [""], "write": [""]},
                "AKIDOTHER": {"read": ["cam-"]},
            }
        )
    )
    return make_server("--credentials", str(credentials), "--access-rules", str(rules))


class Visitor:
    """A browser without the browser: keeps the console cookie, sends the console header
    unless told not to."""

    def __init__(self, server: ServerProcess) -> None:
        self.url, self.cookie = server.url, ""
        self.pool = urllib3.PoolManager()

    def send(
        self, method: str, path: str, body: dict[str, Any] | None = None, header: bool = True
    ) -> urllib3.BaseHTTPResponse:
        headers = {"Cookie": self.cookie, **(HEADER if header else {})}
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        answer = self.pool.request(method, self.url + path, body=data, headers=headers)
        issued = answer.headers.get("Set-Cookie", "")
        if issued:
            self.cookie = issued.split(";")[0]
        return answer

    def login(self, key: str = KEY, secret: str = SECRET) -> urllib3.BaseHTTPResponse:
        return self.send(
            "POST", "/console/api/login", {"accessKeyId": key, "secretAccessKey": secret}
        )


def test_a_console_session_acts_with_its_keys_rights_and_nothing_else(secured) -> None:  # type: ignore[no-untyped-def]
    stranger = Visitor(secured)
    page = stranger.send("GET", "/console/")
    assert page.status == 200 and 'id="login-form"' in page.data.decode()
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    if VENDORED.is_file():
        assert stranger.send("GET", "/console/hls.min.js").data == VENDORED.read_bytes()
    assert stranger.send("GET", "/console/api/session").json() == {"auth": True, "user": None}
    assert stranger.send("GET", "/console/api/stats").status == 403

    wrong = stranger.login(secret="nope")
    assert wrong.status == 403 and "do not match" in wrong.json()["message"]
    assert "Set-Cookie" not in wrong.headers and stranger.cookie == ""
    unknown = stranger.login("AKIDNOBODY")
    assert unknown.status == 403 and unknown.json() == wrong.json()
    # a form on another site can post text/plain JSON, but not the console's header
    forged = stranger.send("POST", "/console/api/login", None, header=False)
    assert forged.status == 403 and "Set-Cookie" not in forged.headers
    for path in ("/console", "/console%2FlistStreams", "/console/api/nothing"):
        refused = stranger.send("POST", path, {})
        assert refused.status in (403, 404, 405), (path, refused.status)
        if refused.status == 403:
            assert refused.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    preflight = stranger.pool.request(
        "OPTIONS",
        f"{secured.url}/listStreams",
        headers={
            "Origin": "https://elsewhere.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-openkvs-console",
        },
    )
    assert not any(h.lower().startswith("access-control-allow") for h in preflight.headers)
    for cookie in ("AKIDCONSOLE.1.x.\u00e9", "AKIDCONSOLE.1.x.y", "x" * 5000, "...."):
        stranger.cookie = "openkvs_console=" + cookie
        assert stranger.send("POST", "/listStreams", {}).status == 403
        assert stranger.send("GET", "/console/api/session").json()["user"] is None
    stranger.cookie = ""

    admin = Visitor(secured)
    answer = admin.login()
    assert answer.status == 200 and answer.json() == {"auth": True, "user": KEY}
    assert admin.cookie.startswith("openkvs_console=")
    issued = answer.headers["Set-Cookie"]
    assert "HttpOnly" in issued and "SameSite=Strict" in issued

    # the cookie alone is not enough: a page on another site could send that, not the header
    bare = admin.send("POST", "/createStream", {"StreamName": "cam-1"}, header=False)
    assert bare.status == 403
    assert bare.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    made = admin.send("POST", "/createStream", {"StreamName": "cam-1", "DataRetentionInHours": 1})
    assert made.status == 200, made.data
    assert (
        admin.send(
            "POST", "/createStream", {"StreamName": "door", "DataRetentionInHours": 1}
        ).status
        == 200
    )
    assert admin.send("GET", "/console/api/stats").status == 200

    from openkvs.producer import Producer
    from tests.media import cluster, simple_block, synthetic_mkv

    for name in ("cam-1", "door"):
        summary = Producer(
            secured.url,
            name,
            region_name="us-west-2",
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            timecode_type="RELATIVE",
            max_retries=0,
        ).put(synthetic_mkv([cluster(0, [simple_block(1, 0), simple_block(1, 500)])]))
        assert summary.fragments_acknowledged == 1, summary.errors
    seen = admin.send("GET", "/console/api/stats").json()["streams"]
    assert seen["cam-1"]["fragmentsIn"] == seen["door"]["fragmentsIn"] == 1

    # the access rules hold for a session as for a signed request
    reader = Visitor(secured)
    assert reader.login("AKIDOTHER", "other").status == 200
    listed = reader.send("POST", "/listStreams", {}).json()
    assert [s["StreamName"] for s in listed["StreamInfoList"]] == ["cam-1"]
    refused = reader.send("POST", "/deleteStream", {"StreamARN": made.json()["StreamARN"]})
    assert refused.status == 401, refused.data
    assert refused.headers["x-amzn-ErrorType"] == "NotAuthorizedException"
    assert reader.send("GET", "/console/api/session").json()["user"] == "AKIDOTHER"
    assert list(reader.send("GET", "/console/api/stats").json()["streams"]) == ["cam-1"]

    cookie = admin.cookie
    admin.send("POST", "/console/api/logout", {})
    admin.cookie = cookie  # replayed after logout
    assert admin.send("POST", "/listStreams", {}).status == 403
    assert admin.send("GET", "/console/api/stats").status == 403


def test_console_tokens_expire_resist_tampering_and_end_with_their_key() -> None:
    from openkvs.server.auth.sessions import ConsoleSessions
    from openkvs.server.auth.sigv4 import Secret

    now = [1_800_000_000.0]
    keys = {KEY: Secret(KEY, SECRET), "AKIDOTHER": Secret("AKIDOTHER", "other")}
    sessions = ConsoleSessions(keys, lifetime_s=60, clock=lambda: now[0])
    assert sessions.login(KEY, "wrong") is None and sessions.login("AKIDNOBODY", SECRET) is None
    token = sessions.login(KEY, SECRET)
    assert token is not None and sessions.access_key(token) == KEY
    other = ConsoleSessions(dict(keys), clock=lambda: now[0])  # another node, same keys
    assert other.access_key(token) == KEY
    forged = token.replace(KEY, "AKIDOTHER", 1)
    assert sessions.access_key(forged) is None
    longer = token.split(".")
    longer[1] = str(int(longer[1]) + 3600)
    assert sessions.access_key(".".join(longer)) is None
    for bad in (None, "", "a.b", token + "x"):
        assert sessions.access_key(bad) is None
    del other.keys[KEY]  # the key removed (or rotated): its sessions end
    assert other.access_key(token) is None
    now[0] += 61
    assert sessions.access_key(token) is None
    fresh = sessions.login(KEY, SECRET)
    sessions.logout(fresh)
    assert sessions.access_key(fresh) is None


def test_no_console_flag_and_development_mode(make_server) -> None:  # type: ignore[no-untyped-def]
    off = Visitor(make_server("--no-console"))
    assert off.send("GET", "/console/").status == 404
    dev = Visitor(make_server())
    assert dev.send("GET", "/console/api/session").json() == {"auth": False, "user": None}
    stats = dev.send("GET", "/console/api/stats").json()
    assert stats["perStream"] is True and stats["streams"] == {}


def _wait(page, script: str, seconds: float = 20) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import TimeoutError as Timeout

    try:
        page.wait_for_function(script, timeout=seconds * 1000, polling=200)
    except Timeout:
        said = page.evaluate("""() => document.querySelector('#message').textContent + ' | '
            + [...document.querySelectorAll('#thumbnails img')].map(i => i.naturalWidth)
            + ' | ' + document.querySelectorAll('#timeline .fragment').length""")
        raise AssertionError(f"timed out waiting for {script}; the page said {said!r}") from None


@pytest.mark.browser
def test_console_in_chromium_logs_in_streams_plays_shows_thumbnails_and_deletes(
    secured, tmp_path: Path
) -> None:
    require_browser()
    if not VENDORED.is_file():
        pytest.skip("the console's hls.js is not vendored: run ./scripts/setup with npm on PATH")
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM_ARGS, chromium_path

    out = artifacts("console")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    ffmpeg = putter = None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 860})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{secured.url}/console/")
            page.wait_for_selector("#login-form", state="visible")
            page.fill("#access-key", KEY)
            page.fill("#secret-key", "not-the-secret")
            page.click("#login-button")
            _wait(page, "() => document.querySelector('#message').textContent.includes('match')")
            page.screenshot(path=str(out / "login.png"))
            page.fill("#secret-key", SECRET)
            page.click("#login-button")
            page.wait_for_selector("#console", state="visible")

            page.fill("#create-name", "lobby")
            page.click("#create-button")
            page.wait_for_selector('tr[data-stream="lobby"]')
            page.fill("#create-name", "front-door")
            page.fill("#create-retention", "2")
            page.click("#create-button")
            page.wait_for_selector('tr[data-stream="front-door"]')
            page.fill("#retention-input", "3")
            page.click("#retention-save")
            _wait(
                page,
                """() => document.querySelector('tr[data-stream="front-door"]')
                .cells[2].textContent === '3 h'""",
            )
            ffmpeg = subprocess.Popen(
                ffmpeg_command("-", seconds=40, audio=False, size="640x360", realtime=True),
                stdout=subprocess.PIPE,
            )
            putter = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "openkvs",
                    "put",
                    "front-door",
                    "-",
                    "--endpoint-url",
                    secured.url,
                ],
                stdin=ffmpeg.stdout,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            assert ffmpeg.stdout is not None
            ffmpeg.stdout.close()
            _wait(
                page,
                """() => {
                const row = document.querySelector('tr[data-stream="front-door"]');
                return row && row.cells[4].textContent.endsWith('ago')
                    && row.cells[3].textContent.includes('Mbit/s');
            }""",
            )

            page.click("#live-button")
            _wait(page, "() => document.querySelector('#video').currentTime > 0.2")
            start = page.evaluate("() => document.querySelector('#video').currentTime")
            time.sleep(3)
            played = page.evaluate("() => document.querySelector('#video').currentTime") - start
            assert played >= 2, played
            page.screenshot(path=str(out / "live.png"))

            page.click("#now-button")
            _wait(
                page,
                """() => {
                const imgs = [...document.querySelectorAll('#thumbnails img')];
                return imgs.length >= 2 && imgs.every(i => i.complete && i.naturalWidth === 160)
                    && document.querySelectorAll('#timeline .fragment').length >= 3;
            }""",
            )
            page.evaluate("() => document.querySelector('#metrics').scrollIntoView()")
            page.screenshot(path=str(out / "console.png"), full_page=True)
            assert screenshot_variance(out / "console.png") > 0

            page.click("#thumbnails figure")
            _wait(
                page,
                """() => document.querySelector('#player-state').textContent
                .startsWith('from') && document.querySelector('#video').currentTime > 0.5""",
            )
            with page.expect_download() as download:
                page.click("#clip-button")
            clip = tmp_path / "clip.mp4"
            download.value.save_as(clip)
            with av.open(str(clip)) as container:
                frames = sum(1 for _ in container.decode(video=0))
            assert frames >= 25, frames

            page.on("dialog", lambda dialog: dialog.accept())
            page.click("#delete-button")
            page.wait_for_selector('tr[data-stream="front-door"]', state="detached")
            assert errors == []
            said = page.evaluate("() => document.querySelector('#message').textContent")
            assert said == "Deleted front-door.", said
        finally:
            browser.close()
            for proc in (putter, ffmpeg):
                if proc is not None:
                    proc.kill()
                    proc.wait()
    client = boto3.client(
        "kinesisvideo",
        endpoint_url=secured.url,
        region_name="us-west-2",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
    )
    assert [s["StreamName"] for s in client.list_streams()["StreamInfoList"]] == ["lobby"]
