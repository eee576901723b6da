"""The web console at ``/console/``: its files, its login, and the figures it shows.

The page itself is static (``assets/``); it drives OpenKVS through the same AWS
operations a boto3 client calls (``POST /listStreams``, ``/getImages``, ...), which the
gate admits on a console session cookie instead of a signature. Only two things here
are the console's own: the login that issues that cookie, and ``stats``, the per-stream
figures of the Prometheus registry as JSON. hls.js is copied from ``node_modules`` into
``assets/vendor/`` by ``scripts/setup``: nothing is fetched from the internet at run time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from openkvs.server.auth import Gate
from openkvs.server.auth.sessions import COOKIE, HEADER, LIFETIME_S
from openkvs.server.metrics import ALL, OTHER, Metrics

ASSETS = Path(__file__).parent / "assets"
FILES = {
    "": ("index.html", "text/html"),
    "console.js": ("console.js", "text/javascript"),
    "console.css": ("console.css", "text/css"),
    "hls.min.js": ("vendor/hls.min.js", "text/javascript"),
}
POLICY = (  # the page loads nothing from elsewhere; hls.js plays through blob: URLs
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'"
)
POOLED = (OTHER, ALL)  # labels that sum many streams
MISSING_PLAYER = (
    "// hls.js is not installed in the console: run ./scripts/setup with npm on PATH "
    "(it copies node_modules/hls.js into openkvs/server/console/assets/vendor/).\n"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_routes(app: web.Application, gate: Gate, metrics: Metrics, https: bool) -> None:
    """Mount the console on ``app``; ``https``: its public URL is (a proxy may end TLS)."""
    router = app.router
    router.add_get("/console", _to_console)
    router.add_get("/console/api/session", session(gate))
    router.add_post("/console/api/login", login(gate, https))
    router.add_post("/console/api/logout", logout(gate))
    router.add_get("/console/api/stats", stats(gate, metrics))
    router.add_get("/console/{name:[a-z.]*}", asset)


async def _to_console(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console/")


async def asset(request: web.Request) -> web.StreamResponse:
    found = FILES.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    path, content_type = ASSETS / found[0], found[1]
    headers = {"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff"}
    if not path.is_file():
        if found[0].startswith("vendor/"):
            return web.Response(text=MISSING_PLAYER, content_type=content_type, headers=headers)
        raise web.HTTPNotFound()
    headers["Content-Type"] = content_type
    headers["Cache-Control"] = "no-cache"
    return web.FileResponse(path, headers=headers)


def _answer(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"})


def session(gate: Gate) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return _answer({"auth": gate.signed, "user": gate.console_key(request)})

    return handler


def _from_console(request: web.Request) -> bool:
    """A request the page made: its header and JSON, which a form on another site cannot
    send without a CORS preflight (never granted)."""
    return request.headers.get(HEADER) == "1" and request.content_type == "application/json"


def login(gate: Gate, https: bool) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if not _from_console(request):
            return _answer({"message": f"Log in from the console page ({HEADER} missing)."}, 403)
        if not gate.signed:
            return _answer({"auth": False, "user": None})
        try:
            body = json.loads(await request.read())
            key, secret = str(body["accessKeyId"]), str(body["secretAccessKey"])
        except (ValueError, KeyError, TypeError):
            return _answer({"message": "Send accessKeyId and secretAccessKey as JSON."}, 400)
        token = gate.sessions.login(key, secret)
        if token is None:
            return _answer({"message": "That access key and secret do not match a key."}, 403)
        response = _answer({"auth": True, "user": key})
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(LIFETIME_S),
            path="/",
            httponly=True,
            samesite="Strict",
            secure=https or request.secure,
        )
        return response

    return handler


def logout(gate: Gate) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if not _from_console(request):
            return _answer({"message": f"Log out from the console page ({HEADER} missing)."}, 403)
        gate.sessions.logout(request.cookies.get(COOKIE))
        response = _answer({"auth": gate.signed, "user": None})
        response.del_cookie(COOKIE, path="/")
        return response

    return handler


def stats(gate: Gate, metrics: Metrics) -> Handler:
    """Per-stream counters as JSON; the page turns their differences into rates."""

    async def handler(request: web.Request) -> web.StreamResponse:
        key = gate.console_key(request)
        if gate.signed and key is None:
            return _answer({"message": "Log in to the console first."}, 403)
        streams = metrics.by_stream()
        if key is not None and gate.rules is not None:  # only what ListStreams shows this key
            visible = gate.rules.visible(key)  # and not the totals of others under _other/_all
            streams = {
                name: s for name, s in streams.items() if visible(name) and name not in POOLED
            }
        return _answer({"now": time.time(), "perStream": metrics.per_stream, "streams": streams})

    return handler

