"""ListFragments over a stream of 1,000,000 stored fragments (``listfragments``).

    .venv/bin/python bench/listfragments.py [--smoke] [--fragments 1000000] [--calls 100]

The data dir is filled as for figure 6 (``bench.store.fill_small``: 1 KB fragments,
one millisecond apart, through the store's own writer, fdatasync skipped), then a
server is started on it. The real boto3 client times ``list_fragments`` (MaxResults
1000, SERVER_TIMESTAMP) for a range at the start, in the middle and at the end of the
stream, ``--calls`` times each (ms per call, p50 and p99, the response parsed by
botocore), and the paginator walking ``--walk`` fragments (fragments/s). Baseline:
DescribeStream, the cheapest signed call, on the same server and client; for the walk,
1,000 fragments per DescribeStream round trip.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.archive import aws_client
from bench.common import (
    Row,
    Settings,
    openkvs_server,
    percentile,
    percentile_rows,
    standalone,
)
from bench.store import fill_small

OPTIONS = {"fragments": 1_000_000, "calls": 100, "walk": 10_000}
PAGE = 1000
WARMUP = 3


def timed(call: Callable[[], object], count: int) -> list[float]:
    """Milliseconds of each of ``count`` calls, after a few untimed ones."""
    for _ in range(WARMUP):
        call()
    out = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


class Raw:
    """Unsigned JSON POSTs on one keep-alive connection; the answer is read, not parsed."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port)

    def call(self, op: str, body: dict[str, Any]) -> Callable[[], object]:
        data = json.dumps(body)
        headers = {"Content-Type": "application/json"}

        def post() -> None:
            self.conn.request("POST", f"/{op}", data, headers)
            response = self.conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{op}: HTTP {response.status}")

        return post


def selector(start_ms: int, end_ms: int) -> dict[str, Any]:
    return {
        "FragmentSelectorType": "SERVER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": start_ms / 1000, "EndTimestamp": end_ms / 1000},
    }


def run(settings: Settings) -> list[Row]:
    options = {**OPTIONS, **settings.options}
    count = 2000 if settings.smoke else options["fragments"]
    calls = 5 if settings.smoke else options["calls"]
    walk = min(count, options["walk"])
    data_dir = settings.work / "listfragments"
    # The newest fragment is "now", the others one millisecond apart before it.
    before_ms = int(time.time() * 1000)
    started = time.perf_counter()
    asyncio.run(fill_small(data_dir, "many", count))
    print(f"  filled {count:,} fragments in {time.perf_counter() - started:.1f} s", flush=True)
    minute = 60_000
    ranges = {
        "at the start": (before_ms - count - 1000, before_ms - count + minute),
        "in the middle": (before_ms - count // 2, before_ms - count // 2 + minute),
        "at the end": (before_ms - 1500, before_ms + minute),
    }
    server = openkvs_server(data_dir, "--no-rate-limits")
    started = time.perf_counter()
    server.start(timeout=600)
    try:
        archived, control = aws_client(server.url), aws_client(server.url, "kinesisvideo")
        raw = Raw(server.port)
        control.describe_stream(StreamName="many")
        print(f"  server answering after {time.perf_counter() - started:.1f} s", flush=True)
        listed: dict[str, list[float]] = {}
        for where, (first, last) in ranges.items():
            call = partial(
                archived.list_fragments,
                StreamName="many",
                MaxResults=PAGE,
                FragmentSelector=selector(first, last),
            )
            if len(call()["Fragments"]) != PAGE:
                raise RuntimeError(f"fewer than {PAGE} fragments listed {where}")
            listed[where] = timed(call, calls)
        raw_listed = [
            ms
            for first, last in ranges.values()
            for ms in timed(
                raw.call(
                    "listFragments",
                    {
                        "StreamName": "many",
                        "MaxResults": PAGE,
                        "FragmentSelector": selector(first, last),
                    },
                ),
                calls,
            )
        ]
        describe = timed(lambda: control.describe_stream(StreamName="many"), 2 * calls)
        raw_describe = timed(raw.call("describeStream", {"StreamName": "many"}), 2 * calls)
        first = before_ms - count // 2 - walk // 2
        paginator = archived.get_paginator("list_fragments")
        started = time.perf_counter()
        walked = 0
        for page in paginator.paginate(
            StreamName="many",
            FragmentSelector=selector(first, first + 10 * minute),
            PaginationConfig={"PageSize": PAGE, "MaxItems": walk},
        ):
            walked += len(page["Fragments"])
        walk_s = time.perf_counter() - started
    finally:
        server.stop()
    if walked != walk:
        raise RuntimeError(f"the paginator walked {walked} of {walk} fragments")
    base_p50, base_p99 = percentile(describe, 50), percentile(describe, 99)
    rows = []
    for where, ms in listed.items():
        for p, base in ((50, base_p50), (99, base_p99)):
            rows.append(
                Row(
                    f"ListFragments of {count:,} stored, {PAGE:,} per call, range {where}, p{p}",
                    percentile(ms, p),
                    base,
                    "ms",
                    quota="≤ 1,000 fragments per call",
                    baseline_name="DescribeStream round trip",
                )
            )
    rows += percentile_rows(
        f"ListFragments of {count:,} stored, {PAGE:,} per call, raw HTTP (the server's share)",
        raw_listed,
        raw_describe,
        "ms",
        "raw DescribeStream",
    )
    rows.append(
        Row(
            f"ListFragments paginator, {walk:,} of {count:,} stored fragments",
            walked / walk_s,
            PAGE / (base_p50 / 1000),
            "fragments/s",
            baseline_name="1,000 per DescribeStream round trip",
        )
    )
    return rows


if __name__ == "__main__":
    standalone(run, __doc__, OPTIONS)
