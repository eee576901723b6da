"""An OpenKVS server inside the test's own event loop, over a store the test controls.

Most tests run the real server as a child process. Races that need a store
operation held at an exact point (an append under way while something else
happens) run the same server in-process instead, on a real store wrapped in a
gate: real HTTP on 127.0.0.1, real boto3, only the timing pinned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from openkvs.server.app import build_app
from openkvs.server.config import Config
from tests.conftest import free_port


class Gate:
    """Holds an operation until the test opens it; ``entered`` says one is waiting."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self._open = asyncio.Event()
        self.failure: BaseException | None = None

    async def pass_through(self) -> None:
        self.entered.set()
        await self._open.wait()
        if self.failure is not None:
            raise self.failure

    def open(self, failure: BaseException | None = None) -> None:
        self.failure = failure
        self._open.set()


@contextlib.asynccontextmanager
async def serving(store: Any, **settings: Any) -> AsyncIterator[str]:
    """Serve ``store`` on a free port for the block; yields the base URL."""
    config = Config(port=free_port(), **{"rate_limits": False, **settings})
    runner = web.AppRunner(build_app(config, store), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", config.port)
    await site.start()
    try:
        yield config.base_url()
    finally:
        await runner.cleanup()


async def control(url: str, op: str, body: dict[str, Any]) -> dict[str, Any]:
    """One control-plane call (development mode: no signature needed)."""
    async with aiohttp.ClientSession() as http, http.post(f"{url}/{op}", json=body) as response:
        data = await response.read()
        reply = json.loads(data) if data else {}
        if response.status != 200:
            reply["__status__"] = response.status
            reply["__type__"] = response.headers.get("x-amzn-ErrorType")
        return reply
