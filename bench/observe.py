"""Figure 17: what a Prometheus scrape and a console poll cost, with many streams.

    .venv/bin/python bench/observe.py [--smoke] [--streams 1000]

A server with N streams, each holding 5 fragments (so each has its per-stream series:
fragments and bytes in, last fragment time; N = 1,000 is where the per-stream labels stop),
is asked ``GET /metrics`` (text of every series, plus the data dir's size walked off the
event loop) and the console's ``GET /console/api/stats`` (the same registry as JSON)
200 times each, one at a time. Baseline: ``GET /health`` on the same server, the least an
HTTP request costs there.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp

from bench.common import (
    Row,
    Settings,
    media_body,
    openkvs_server,
    percentile_rows,
    request_json,
    standalone,
)
from tests.producer import put_media

OPTIONS = {"streams": 1000}
ROUNDS = 200


async def fill(url: str, streams: int) -> None:
    body = media_body(4096, 5)
    for i in range(streams):
        name = f"cam-{i:05d}"
        await request_json(url, "createStream", {"StreamName": name, "DataRetentionInHours": 1})
        await put_media(url, name, body)


async def timed(url: str, path: str, rounds: int) -> tuple[list[float], int]:
    """Milliseconds of each GET, and the size of the last answer."""
    times, size = [], 0
    async with aiohttp.ClientSession() as session:
        for _ in range(rounds):
            started = time.perf_counter()
            async with session.get(url + path) as response:
                size = len(await response.read())
                assert response.status == 200, (path, response.status)
            times.append((time.perf_counter() - started) * 1000)
    return times, size


STATS = "/console/api/stats"


async def measure(url: str, rounds: int) -> dict[str, tuple[list[float], int]]:
    return {path: await timed(url, path, rounds) for path in ("/health", "/metrics", STATS)}


async def meanwhile(url: str, rounds: int) -> list[float]:
    """``GET /health`` times while another client scrapes ``/metrics`` back to back: how
    long everyone else waits on a scrape (every stream's readers and producers too)."""
    stop = asyncio.Event()

    async def scrape() -> None:
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                async with session.get(url + "/metrics") as response:
                    await response.read()

    scraper = asyncio.create_task(scrape())
    try:
        await asyncio.sleep(0.2)
        times = []
        async with aiohttp.ClientSession() as session:
            for _ in range(rounds):
                started = time.perf_counter()
                async with session.get(url + "/health") as response:
                    await response.read()
                times.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.005)
        return times
    finally:
        stop.set()
        await scraper


def run(settings: Settings) -> list[Row]:
    streams = 20 if settings.smoke else settings.options.get("streams", OPTIONS["streams"])
    rounds = 20 if settings.smoke else ROUNDS
    with openkvs_server(settings.work / "observe", "--no-rate-limits") as server:
        started = time.perf_counter()
        asyncio.run(fill(server.url, streams))
        print(f"  {streams:,} streams of 5 fragments in {time.perf_counter() - started:.1f} s")
        found = asyncio.run(measure(server.url, rounds))
        during = asyncio.run(meanwhile(server.url, rounds))
    health = found["/health"][0]
    rows = []
    for path, name in (("/metrics", "GET /metrics"), (STATS, "console stats")):
        times, size = found[path]
        print(f"  {name}: {size / 1000:,.0f} KB an answer")
        rows += percentile_rows(f"{name}, {streams:,} streams", times, health, "ms", "GET /health")
    rows += percentile_rows(
        "GET /health while /metrics is scraped non-stop", during, health, "ms", "GET /health alone"
    )
    return rows


if __name__ == "__main__":
    standalone(run, __doc__, OPTIONS)
