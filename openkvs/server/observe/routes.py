"""``GET /metrics`` in Prometheus's text format, and the event-loop lag it reports."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import generate_latest

from openkvs.server.config import Config
from openkvs.server.metrics import Metrics

LAG_PERIOD_S = 1.0
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"  # what every Prometheus scrapes


def metrics_page(
    metrics: Metrics, config: Config, stream_count: Callable[[], int]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def page(request: web.Request) -> web.Response:
        metrics.streams.set(stream_count())
        if config.store == "embedded" and config.data_dir != ":memory:":
            usage = await asyncio.to_thread(shutil.disk_usage, config.data_dir)
            metrics.store_free_bytes.set(usage.free)
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": TEXT_FORMAT})

    return page


async def watch_loop_lag(metrics: Metrics) -> None:
    """How late a timer fires: a blocked event loop delays every stream at once."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(LAG_PERIOD_S)
        metrics.loop_lag.set(max(0.0, loop.time() - start - LAG_PERIOD_S))
