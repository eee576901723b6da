"""Figures 3 and 4 (and the latency half of 7): one live stream fanned out to N NOW readers.

    .venv/bin/python bench/fanout.py [--smoke] [--fragments 10] [--max-readers 1000]

A producer sends a live stream at 4 Mbit/s in 1-second fragments (~500 KB) of 25 frames
(a keyframe 4x the size of the rest), paced in 25 pieces a second. N raw-socket readers (GetMedia, NOW) connect first, in batches. A
fragment's delivery lag at a reader is the time its chunk's last byte arrived minus the
time the producer got its RECEIVED ack; readers and producer share this process and its
clock. Server CPU % is utime+stime from /proc over the run. N = 1 is figure 4 (latency).
Baseline: ``bench.baselines relay``, a raw asyncio relay that acks each whole fragment
and writes the very same chunk bytes to every reader.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baselines import LENGTH, PRODUCE
from bench.common import (
    KB,
    Child,
    ChunkReader,
    Profiler,
    Row,
    Settings,
    baseline_server,
    cpu_seconds,
    fragments_of,
    getmedia_chunks,
    getmedia_request,
    media_body,
    open_reader,
    openkvs_server,
    percentile,
    profile_path,
    raise_nofile,
    request_json,
    split,
    standalone,
)
from tests.producer import put_media

OPTIONS = {"fragments": 10, "max_readers": 1000}
READERS = (10, 100, 1000)
BITRATE = 4_000_000  # bits per second
FRAMES = 25  # per fragment: 25 frames a second
PIECES = 25  # per fragment: about a frame at a time, as a camera sends
BATCH = 100  # readers connecting at once
LATENCY = "latency vs readers"

# A producer sends the stream and returns fragment number -> time of its RECEIVED ack.
Produce = Callable[[], Awaitable[dict[str, float]]]


@dataclass
class Run:
    """Delivery lags (ms) of every (reader, fragment); server and client CPU % meanwhile.

    The client (producer and readers, this process) is shown too: when it nears 100 %
    the lag measures the client, not the server.
    """

    lags: list[float]
    cpu_percent: float
    client_percent: float

    @property
    def p50(self) -> float:
        return percentile(self.lags, 50)

    @property
    def p99(self) -> float:
        return percentile(self.lags, 99)


async def connect(port: int, request: bytes, n: int, expect: int) -> list[ChunkReader]:
    """``n`` readers, ``BATCH`` at a time, each answered before the next batch."""
    readers: list[ChunkReader] = []
    for start in range(0, n, BATCH):
        batch = await asyncio.gather(
            *(open_reader(port, request, expect, 64 * KB) for _ in range(min(BATCH, n - start)))
        )
        readers += batch
        await asyncio.gather(*(r.answered for r in batch))
    return readers


async def measure(
    server: Child, request: bytes, n: int, count: int, produce: Produce, timeout: float
) -> Run:
    readers = await connect(server.port, request, n, count)
    try:
        cpu, client, started = cpu_seconds(server.pid), process_cpu(), time.perf_counter()
        received = await produce()
        await asyncio.wait([asyncio.ensure_future(r.done) for r in readers], timeout=timeout)
        used, client = cpu_seconds(server.pid) - cpu, process_cpu() - client
        wall = time.perf_counter() - started
    finally:
        for reader in readers:
            reader.close()
    lags = [
        (t - received[number]) * 1000
        for reader in readers
        for number, t in reader.arrived.items()
        if number in received
    ]
    return Run(lags, 100 * used / wall, 100 * client / wall)


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def openkvs_producer(url: str, stream: str, body: bytes, count: int, interval: float) -> Produce:
    async def produce() -> dict[str, float]:
        received: dict[str, float] = {}

        def on_ack(ack: dict) -> None:
            if ack.get("EventType") == "RECEIVED":
                received[ack["FragmentNumber"]] = time.perf_counter()

        piece = -(-len(body) // (count * PIECES))
        await put_media(url, stream, body, piece=piece, delay=interval / PIECES, on_ack=on_ack)
        return received

    return produce


def relay_producer(port: int, chunks: list[bytes], numbers: list[str], interval: float) -> Produce:
    async def produce() -> dict[str, float]:
        received: dict[str, float] = {}
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def acks() -> None:
            for number in numbers:
                await reader.readexactly(1)
                received[number] = time.perf_counter()

        acked = asyncio.create_task(acks())
        try:
            writer.write(PRODUCE)
            for chunk in chunks:
                for piece in split(len(chunk).to_bytes(LENGTH, "big") + chunk, PIECES):
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(interval / PIECES)
            await asyncio.wait_for(acked, 30)
        finally:
            acked.cancel()
            writer.close()
        return received

    return produce


def rows_for(n: int, ours: Run, base: Run) -> list[Row]:
    latency = n == 1
    title = "Latency, 1 NOW reader" if latency else f"Fan-out, {n:,} NOW readers"
    quota = "—" if latency else "3 readers per stream"
    p50_target, p99_target = ("< 2 ms", "< 10 ms") if latency else ("", "")
    if n == 1000:
        p99_target = "< 50 ms"

    def row(what: str, ours: float, base: float, unit: str, target: str = "") -> Row:
        series = what.split()[-1]
        plot = (LATENCY, series, float(n)) if unit == "ms" else None
        return Row(
            f"{title}, {what}",
            ours,
            base,
            unit,
            quota=quota,
            target=target,
            baseline_name="raw asyncio relay",
            plot=plot,
        )

    return [
        row("lag p50", ours.p50, base.p50, "ms", p50_target),
        row("lag p99", ours.p99, base.p99, "ms", p99_target),
        row("server CPU", ours.cpu_percent, base.cpu_percent, "%"),
        row("client CPU", ours.client_percent, base.client_percent, "%"),
    ]


def measure_counts(settings: Settings, counts: tuple[int, ...], name: str) -> list[Row]:
    """Run each reader count against OpenKVS, then against the relay; profile the largest."""
    count = 4 if settings.smoke else settings.options.get("fragments", OPTIONS["fragments"])
    interval = 0.25 if settings.smoke else 1.0
    raise_nofile(2 * max(counts) + 256)  # the server child inherits it
    body = media_body(int(BITRATE / 8 * interval), count, frames=FRAMES)
    fragments = fragments_of(body)
    chunks, numbers = getmedia_chunks(fragments), [str(f.meta.number) for f in fragments]
    timeout = count * interval + 60
    flags = ["--no-rate-limits", "--getmedia-idle-timeout-s", "300"]
    flags += ["--getmedia-max-connections", str(max(counts) + 10)]
    flags += ["--getmedia-calls-per-second", "1000000"]
    ours: dict[int, Run] = {}
    with openkvs_server(settings.work / name, *flags) as server:
        for n in counts:
            stream = f"live-{n}"
            body_json = {"StreamName": stream, "DataRetentionInHours": 1}
            asyncio.run(request_json(server.url, "createStream", body_json))
            produce = openkvs_producer(server.url, stream, body, count, interval)
            request = getmedia_request(stream, "NOW")
            profile = profile_path(settings, name) if n == max(counts) else None
            with Profiler(server.pid, profile):
                ours[n] = asyncio.run(measure(server, request, n, count, produce, timeout))
    rows = []
    with baseline_server("relay") as relay:
        for n in counts:
            produce = relay_producer(relay.port, chunks, numbers, interval)
            base = asyncio.run(measure(relay, b"READ\n", n, count, produce, timeout))
            rows += rows_for(n, ours[n], base)
    return rows


def run(settings: Settings) -> list[Row]:
    """Figure 3: N = 10, 100, 1000 (up to ``--max-readers``; 10 when smoking)."""
    most = settings.options.get("max_readers", OPTIONS["max_readers"])
    counts = (10,) if settings.smoke else tuple(n for n in READERS if n <= most)
    return measure_counts(settings, counts, "fanout")


def run_latency(settings: Settings) -> list[Row]:
    """Figure 4: one reader."""
    return measure_counts(settings, (1,), "latency")


def run_both(settings: Settings) -> list[Row]:
    return run_latency(settings) + run(settings)


if __name__ == "__main__":
    standalone(run_both, __doc__, OPTIONS)
