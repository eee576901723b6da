"""Figure 5: many idle streams, and control-plane requests per second.

    .venv/bin/python bench/streams_scale.py [--smoke] [--streams 10000] [--seconds 5]

Memory per idle stream: server RSS (from /proc) before and after CreateStream of
``--streams`` streams, divided by their number. Baseline: the Python heap the bare
StreamInfo records take (tracemalloc, in this process): what any Python server must hold.

DescribeStream per second: one request signed by botocore (SigV4 headers, JSON body, as
boto3 sends it) replayed on ``CONNECTIONS`` keep-alive raw-socket connections for
``--seconds``. Baseline: a trivial aiohttp app answering the same request with the same
fixed JSON body.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import tracemalloc
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bench.common import (
    Child,
    Row,
    Settings,
    baseline_server,
    openkvs_server,
    request_json,
    rss_bytes,
    standalone,
    stream_info,
)

OPTIONS = {"streams": 10_000, "seconds": 5}
CONNECTIONS = 32
CREATORS = 16  # concurrent CreateStream calls (the server serializes them anyway)


async def create_streams(url: str, count: int) -> None:
    names = iter(range(count))

    async def creator() -> None:
        for i in names:
            await request_json(
                url, "createStream", {"StreamName": f"idle-{i:06d}", "DataRetentionInHours": 1}
            )

    await asyncio.gather(*(creator() for _ in range(CREATORS)))


def record_bytes(count: int) -> float:
    """Heap bytes per StreamInfo record held in a dict by name, as the control plane does."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        table = {f"idle-{i:06d}": stream_info(f"idle-{i:06d}") for i in range(count)}
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(table) == count
    return (after - before) / count


def signed_describe(url: str, stream: str) -> bytes:
    """A DescribeStream request as boto3 sends it, signed once by botocore, as raw bytes."""
    body = json.dumps({"StreamName": stream}).encode()
    request = AWSRequest(
        "POST",
        f"{url}/describeStream",
        data=body,
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Boto3/1.34.0 md/Botocore#1.34.0",
        },
    )
    SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), "kinesisvideo", "us-west-2").add_auth(request)
    host = url.split("://", 1)[1]
    headers = {"Host": host, **dict(request.headers), "Content-Length": str(len(body))}
    head = "POST /describeStream HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    return head.encode() + b"\r\n" + body


async def answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return int(head.split(b" ", 2)[1]), await reader.readexactly(length)


async def requests_per_second(port: int, request: bytes, seconds: float) -> float:
    """Replay ``request`` on ``CONNECTIONS`` keep-alive connections for ``seconds``."""
    done = 0
    stop = time.perf_counter() + seconds

    async def connection() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop:
                writer.write(request)
                status, _ = await answer(reader)
                if status != 200:
                    raise RuntimeError(f"DescribeStream answered {status}")
                done += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    return done / (time.perf_counter() - started)


async def one_answer(server: Child, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request)
        status, body = await answer(reader)
        if status != 200:
            raise RuntimeError(f"DescribeStream answered {status}: {body!r}")
        return body
    finally:
        writer.close()


def run(settings: Settings) -> list[Row]:
    count = 50 if settings.smoke else settings.options.get("streams", OPTIONS["streams"])
    seconds = 0.5 if settings.smoke else settings.options.get("seconds", OPTIONS["seconds"])
    with openkvs_server(settings.work / "streams") as server:
        before = rss_bytes(server.pid)
        asyncio.run(create_streams(server.url, count))
        per_stream = (rss_bytes(server.pid) - before) / count
        request = signed_describe(server.url, "idle-000000")
        fixed = settings.work / "describe.json"
        fixed.write_bytes(asyncio.run(one_answer(server, request)))
        ours = asyncio.run(requests_per_second(server.port, request, seconds))
    with baseline_server("json", "--file", str(fixed)) as trivial:
        base = asyncio.run(requests_per_second(trivial.port, request, seconds))
    return [
        Row(
            f"Memory per idle stream, {count:,} streams",
            per_stream / 1024,
            record_bytes(count) / 1024,
            "KiB",
            quota="10,000 streams per account (soft)",
            baseline_name="bare StreamInfo record",
        ),
        Row(
            "DescribeStream requests/s (SigV4, keep-alive)",
            ours,
            base,
            "req/s",
            quota="300 TPS per account, 5 per stream",
            baseline_name="trivial aiohttp app",
        ),
    ]


if __name__ == "__main__":
    standalone(run, __doc__, OPTIONS)
