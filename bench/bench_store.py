"""Benchmark the embedded store against the disk it runs on.

    .venv/bin/python bench/bench_store.py [--dir DIR] [--count 200] [--small 100000]

Prints append throughput (1 MB fragments, one fdatasync each) beside a plain
file written and synced the same way in the same directory, read throughput,
and reopen (recovery) time for a stream of many small fragments.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from unittest import mock

from openkvs.model import Fragment, FragmentMeta, FragmentNumber, StreamInfo
from openkvs.store.embedded import EmbeddedStore
from openkvs.store.log import SegmentWriter

MB = 1 << 20
HEADER = b"\x1aE\xdf\xa3" + bytes(range(256)) * 12  # about 3 KB, like a producer's header


def fragment(seq: int, body: bytes, header: bytes = HEADER) -> Fragment:
    server_ms = 1_700_000_000_000 + seq * 2000
    meta = FragmentMeta(FragmentNumber.make(seq, server_ms), server_ms, seq * 2000, 2000, len(body))
    return Fragment(meta, header, body)


def info(name: str) -> StreamInfo:
    return StreamInfo(name=name, arn=f"arn:{name}", creation_ms=1, version="1")


def plain_file(directory: str, name: str, bodies: list[bytes]) -> float:
    """Seconds to write and fdatasync each body to one plain file: the disk's own pace.

    Files are kept until the end: unlinking on a ``discard`` mount would slow the next round.
    """
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    start = time.perf_counter()
    for body in bodies:
        os.write(fd, body)
        os.fdatasync(fd)
    elapsed = time.perf_counter() - start
    os.close(fd)
    return elapsed


async def store_appends(
    directory: str, name: str, bodies: list[bytes]
) -> tuple[float, EmbeddedStore]:
    store = EmbeddedStore(directory)
    await store.open()
    stream = info(name)
    await store.save_stream(stream)
    fragments = [fragment(seq, body) for seq, body in enumerate(bodies, start=1)]
    start = time.perf_counter()
    for f in fragments:
        await store.append(stream.key, f)
    return time.perf_counter() - start, store


async def reads(store: EmbeddedStore, key: str) -> tuple[float, int]:
    start = time.perf_counter()
    total = 0
    for meta in store.index(key):
        total += len((await store.read(key, meta)).body)
    return time.perf_counter() - start, total


async def reopen_time(directory: str, small: int, segment_bytes: int) -> tuple[float, int]:
    """Seconds for open() over ``small`` 1 KB fragments (one header per 100) in one stream."""
    store = EmbeddedStore(directory, segment_bytes=segment_bytes)
    await store.open()
    stream = info(f"small-{segment_bytes}")
    await store.save_stream(stream)
    await store.close()
    writer = SegmentWriter(os.path.join(store.root, stream.key), segment_bytes)
    body = os.urandom(1000)
    with mock.patch.object(os, "fdatasync", lambda fd: None):  # real records, built fast
        for seq in range(1, small + 1):
            writer.append(fragment(seq, body, HEADER + b"%d" % (seq // 100)))
    writer.close()
    os.sync()
    again = EmbeddedStore(directory, segment_bytes=segment_bytes)
    start = time.perf_counter()
    await again.open()
    elapsed = time.perf_counter() - start
    count = len(again.index(stream.key))
    await again.close()
    return elapsed, count


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", help="where to write (default: a temp dir under /tmp)")
    parser.add_argument("--count", type=int, default=200, help="1 MB fragments to append")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small", type=int, default=100_000, help="small fragments to reopen")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-store-") as directory:
        bodies = [os.urandom(MB) for _ in range(args.count)]
        mb = args.count * MB / 1e6
        base, ours = [], []
        for r in range(args.rounds):
            if r % 2:  # alternate who goes first: the disk's pace drifts
                base.append(mb / plain_file(directory, f"plain{r}", bodies))
            elapsed, store = await store_appends(directory, f"big{r}", bodies)
            ours.append(mb / elapsed)
            if not r % 2:
                base.append(mb / plain_file(directory, f"plain{r}", bodies))
            if r < args.rounds - 1:
                await store.close()
        b, o = statistics.median(base), statistics.median(ours)
        print(
            f"append 1 MB + fdatasync: store {o:7.1f} MB/s   plain file {b:7.1f} MB/s   ratio {o / b:.2f}"
        )
        print(f"  per round: store {[round(x) for x in ours]}  plain {[round(x) for x in base]}")
        elapsed, total = await reads(store, info(f"big{args.rounds - 1}").key)
        print(
            f"read 1 MB fragments (page cache warm): {total / 1e6 / elapsed:7.1f} MB/s, {args.count / elapsed:.0f} fragments/s"
        )
        await store.close()
        for segment_bytes, label in (
            (64 * MB, "64 MiB segments, last verified"),
            (1 << 40, "one segment, all verified"),
        ):
            elapsed, count = await reopen_time(
                tempfile.mkdtemp(dir=directory), args.small, segment_bytes
            )
            print(
                f"reopen {count} x 1 KB fragments ({label}): {elapsed:.3f} s, {count / elapsed / 1000:.0f}k fragments/s"
            )


if __name__ == "__main__":
    asyncio.run(main())
