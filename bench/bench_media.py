"""PutMedia ingest and GetMedia read throughput of one stream, each beside a baseline.

Run: .venv/bin/python bench/bench_media.py [--mb 200] [--fragment-kb 1024]
Baselines, measured in the same run: writing + fsyncing the same bytes to a file in
the data dir (for PutMedia), and reading them back from that file (for GetMedia).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import ServerProcess  # noqa: E402
from tests.media import cluster, simple_block, synthetic_mkv  # noqa: E402
from tests.producer import put_media  # noqa: E402


def body(total_mb: int, fragment_kb: int) -> bytes:
    count = total_mb * 1024 // fragment_kb
    payload = os.urandom(fragment_kb * 1024 // 2)
    return synthetic_mkv(
        [
            cluster(i * 1000, [simple_block(1, 0, payload), simple_block(1, 500, payload)])
            for i in range(count)
        ]
    )


def baseline_write(path: Path, data: bytes, fragment: int) -> float:
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for i in range(0, len(data), fragment):
        os.write(fd, data[i : i + fragment])
        os.fdatasync(fd)
    os.close(fd)
    return time.perf_counter() - started


async def read_all(url: str) -> tuple[int, float]:
    started = time.perf_counter()
    total = 0
    async with aiohttp.ClientSession() as session:
        async with session.post(
            url + "/getMedia",
            json={"StreamName": "bench", "StartSelector": {"StartSelectorType": "EARLIEST"}},
        ) as r:
            async for piece in r.content.iter_any():
                total += len(piece)
    return total, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--fragment-kb", type=int, default=1024)
    args = parser.parse_args()
    data = body(args.mb, args.fragment_kb)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/work")) as tmp:
        base = baseline_write(Path(tmp) / "baseline", data, args.fragment_kb * 1024)
        server = ServerProcess(
            Path(tmp) / "data", extra=["--no-rate-limits", "--getmedia-idle-timeout-s", "0.2"]
        )
        server.start()
        try:
            server.client().create_stream(StreamName="bench", DataRetentionInHours=1)
            started = time.perf_counter()
            result = asyncio.run(put_media(server.url, "bench", data, piece=256 * 1024))
            ingest = time.perf_counter() - started
            persisted = len(result.events("PERSISTED"))
            size, read = asyncio.run(read_all(server.url))
            read -= 0.2  # the idle period that ends the response
            started = time.perf_counter()
            with open(Path(tmp) / "baseline", "rb") as f:
                while f.read(1 << 20):
                    pass
            base_read = time.perf_counter() - started
        finally:
            server.stop()
    mb = len(data) / 1e6
    print(f"fragments persisted: {persisted}, body {mb:.0f} MB")
    print(
        f"PutMedia ingest   {mb / ingest:8.0f} MB/s | write+fdatasync baseline "
        f"{mb / base:8.0f} MB/s | ratio {base / ingest:.2f}"
    )
    print(
        f"GetMedia read     {size / 1e6 / read:8.0f} MB/s | file read baseline "
        f"{mb / base_read:8.0f} MB/s | ratio {base_read / read * size / 1e6 / mb:.2f}"
    )


if __name__ == "__main__":
    main()
