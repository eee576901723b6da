"""Figure 2 (and half of 7): PutMedia ingest of one stream, until the last PERSISTED ack.

    .venv/bin/python bench/putmedia_ingest.py [--smoke] [--mb 256] [--profile DIR]

Rate limits off. A raw-socket producer (``tests/producer.py``) sends a body of fragments
of each growth size, each closed by an END_OF_FRAGMENT tag; the clock stops at the last
PERSISTED ack (the last fdatasync). Baseline: writing the same bytes, one fragment at a
time, each followed by fdatasync, to a plain file in the same data dir. Best of
``--rounds``, the two alternating (the disk's pace drifts). The headline size runs once
more with the data dir on tmpfs (``/dev/shm``), where the disk is out of the way.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    GROWTH,
    HEADLINE_KB,
    KB,
    SIZES_KB,
    Child,
    Profiler,
    Row,
    Settings,
    fragment_count,
    media_body,
    openkvs_server,
    profile_path,
    request_json,
    size_label,
    split,
    standalone,
    write_synced,
)
from tests.producer import put_media

OPTIONS = {"mb": 256, "rounds": 2}
TMPFS = "/dev/shm"  # memory-backed on Linux: the figure without a disk


def ingest_rate(server: Child, stream: str, body: bytes, count: int, profile: Path | None) -> float:
    """MB/s of one PutMedia of ``body`` into a new stream, until its last PERSISTED ack."""
    persisted: list[float] = []

    def on_ack(ack: dict) -> None:
        if ack.get("EventType") == "PERSISTED":
            persisted.append(time.perf_counter())

    async def ingest() -> float:
        await request_json(
            server.url, "createStream", {"StreamName": stream, "DataRetentionInHours": 24}
        )
        started = time.perf_counter()
        await put_media(server.url, stream, body, piece=256 * KB, on_ack=on_ack)
        if len(persisted) != count:
            raise RuntimeError(f"{len(persisted)} of {count} fragments persisted")
        return len(body) / 1e6 / (persisted[-1] - started)

    with Profiler(server.pid, profile):
        return asyncio.run(ingest())


def best_rates(
    server: Child, data_dir: Path, settings: Settings, kb: int, profile: bool
) -> tuple[float, float]:
    """Best of ``--rounds`` MB/s for OpenKVS and for the plain writes, alternating."""
    total_mb = settings.options.get("mb", OPTIONS["mb"])
    rounds = 1 if settings.smoke else settings.options.get("rounds", OPTIONS["rounds"])
    count = fragment_count(settings, kb, total_mb)
    body = media_body(kb * KB, count)
    ours, base = [], []
    for r in range(rounds):
        spy = profile_path(settings, "putmedia") if profile and r == 0 else None
        plain = data_dir / f"plain-{kb}-{r}"
        if r % 2:
            base.append(len(body) / 1e6 / write_synced(plain, split(body, count)))
        ours.append(ingest_rate(server, f"ingest-{kb}-{r}", body, count, spy))
        if not r % 2:
            base.append(len(body) / 1e6 / write_synced(plain, split(body, count)))
    return max(ours), max(base)


def run(settings: Settings) -> list[Row]:
    """Every growth size on the data dir's disk; the headline size again on tmpfs.

    The tmpfs run takes the disk out: it shows what the server itself can ingest.
    """
    data_dir = settings.work / "putmedia"
    rows = []
    with openkvs_server(data_dir, "--no-rate-limits") as server:
        for kb in SIZES_KB:
            ours, base = best_rates(server, data_dir, settings, kb, kb == HEADLINE_KB)
            rows.append(
                Row(
                    f"PutMedia ingest, 1 stream, {size_label(kb)} fragments",
                    ours,
                    base,
                    "MB/s",
                    quota="12.5 MB/s per stream",
                    target="≥ 500 MB/s and ≥ 50 % of raw" if kb == HEADLINE_KB else "",
                    baseline_name="write+fdatasync",
                    plot=(GROWTH, "PutMedia", kb),
                )
            )
    if not Path(TMPFS).is_dir():
        return rows
    with tempfile.TemporaryDirectory(dir=TMPFS) as tmp:
        memory_dir = Path(tmp) / "putmedia"
        with openkvs_server(memory_dir, "--no-rate-limits") as server:
            ours, base = best_rates(server, memory_dir, settings, HEADLINE_KB, False)
        rows.append(
            Row(
                f"PutMedia ingest, 1 stream, {size_label(HEADLINE_KB)} fragments, data dir on tmpfs",
                ours,
                base,
                "MB/s",
                quota="12.5 MB/s per stream",
                baseline_name="write+fdatasync on tmpfs",
            )
        )
    return rows


if __name__ == "__main__":
    standalone(run, __doc__, OPTIONS)
