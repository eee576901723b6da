"""``GET /metrics`` in Prometheus's text format, and the event-loop lag it reports."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable

from aiohttp import web

from openkvs.server.config import Config
from openkvs.server.metrics import Metrics

LAG_PERIOD_S = 1.0
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"  # what every Prometheus scrapes


def metrics_page(
    metrics: Metrics,
    config: Config,
    stream_count: Callable[[], int],
    playback_sessions: Callable[[], dict[str, int]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler. Gauges no request handler keeps current are set at each scrape;
    ``stream_count`` and ``playback_sessions`` (open sessions by protocol) are given, as
    this layer may not import the control plane or the archive."""

    async def page(request: web.Request) -> web.Response:
        metrics.streams.set(stream_count())
        for protocol, count in playback_sessions().items():
            metrics.playback_sessions.labels(protocol).set(count)
        if config.store == "embedded" and config.data_dir != ":memory:":
            held, free = await asyncio.to_thread(disk, config.data_dir)
            metrics.store_bytes.set(held)
            metrics.store_free_bytes.set(free)
        return web.Response(body=metrics.render(), headers={"Content-Type": TEXT_FORMAT})

    return page


def disk(data_dir: str) -> tuple[int, int]:
    """Bytes the files under ``data_dir`` hold, and bytes free on its disk (blocking)."""
    held, dirs = 0, [data_dir]
    while dirs:
        try:
            with os.scandir(dirs.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            dirs.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            held += entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:  # deleted by retention meanwhile
                        pass
        except FileNotFoundError:
            pass
    return held, shutil.disk_usage(data_dir).free


async def watch_loop_lag(metrics: Metrics) -> None:
    """How late a timer fires: a blocked event loop delays every stream at once."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(LAG_PERIOD_S)
        metrics.loop_lag.set(max(0.0, loop.time() - start - LAG_PERIOD_S))
