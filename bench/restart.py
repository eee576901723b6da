"""Figure 6: time until a restarted server answers, with many stored fragments.

    .venv/bin/python bench/restart.py [--smoke] [--fragments 1000000]

The data dir is filled through the store's own SegmentWriter (real records, fdatasync
skipped: see ``bench/store.py``), as a server would have left it; the figure is the time
from launching the server on it to its first ListStreams answer, page cache warm.
The server's RSS growth over an empty one, per fragment, is what its index costs. Baseline: the same for a server with an empty data dir (interpreter start,
imports, listening).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Row, Settings, openkvs_server, request_json, rss_bytes, standalone
from bench.store import fill_small
from openkvs.server.store.log import PREFIX

OPTIONS = {"fragments": 1_000_000}


def restart(data_dir: Path) -> tuple[float, int]:
    """Seconds from launching a server on ``data_dir`` to its first ListStreams answer,
    and its RSS then."""
    server = openkvs_server(data_dir)
    try:
        started = time.perf_counter()
        server.start(timeout=600)
        asyncio.run(request_json(server.url, "listStreams", {}))
        return time.perf_counter() - started, rss_bytes(server.pid)
    finally:
        server.stop()


def run(settings: Settings) -> list[Row]:
    count = 2000 if settings.smoke else settings.options.get("fragments", OPTIONS["fragments"])
    full = settings.work / "restart-full"
    started = time.perf_counter()
    asyncio.run(fill_small(full, "restart", count))
    print(f"  filled {count:,} fragments in {time.perf_counter() - started:.1f} s", flush=True)
    ours, rss = restart(full)
    base, rss_empty = restart(settings.work / "restart-empty")
    return [
        Row(
            f"Restart until answering, {count:,} stored fragments",
            ours,
            base,
            "s",
            baseline_name="empty data dir",
        ),
        Row(
            "Index memory per stored fragment, after restart",
            (rss - rss_empty) / count,
            PREFIX,
            "B",
            baseline_name="its record's head on disk",
        ),
    ]


if __name__ == "__main__":
    standalone(run, __doc__, OPTIONS)
