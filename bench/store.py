"""The embedded store against the disk it runs on (no server): append and reopen.

    .venv/bin/python bench/store.py [--smoke] [--count 200] [--small 100000]

Append: 1 MB fragments, one fdatasync each, beside a plain file written and synced the
same way in the same directory (best of ``--rounds``, alternating who goes first).
Reopen: ``open()`` (recovery) of one stream of ``--small`` 1 KB fragments in 64 MiB
segments, beside reading the same segment files from start to end.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from unittest import mock

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import MB, Row, Settings, standalone, stream_info, write_synced
from openkvs.server.model import Fragment, FragmentMeta, FragmentNumber, StreamInfo
from openkvs.server.store.embedded import EmbeddedStore

OPTIONS = {"count": 200, "rounds": 5, "small": 100_000}
HEADER = b"\x1aE\xdf\xa3" + bytes(range(256)) * 12  # about 3 KB, like a producer's header


def fragment(seq: int, body: bytes, header: bytes, base_ms: int) -> Fragment:
    server_ms = base_ms + seq
    meta = FragmentMeta(FragmentNumber.make(seq, server_ms), server_ms, server_ms, 1, len(body))
    return Fragment(meta, header, body)


async def new_stream(directory: Path, name: str) -> tuple[EmbeddedStore, StreamInfo]:
    store = EmbeddedStore(str(directory))
    await store.open()
    info = stream_info(name)
    await store.save_stream(info, None)
    return store, info


async def append_rate(directory: Path, name: str, bodies: list[bytes]) -> float:
    """MB/s of ``store.append`` (each one fdatasynced) into a new stream."""
    store, info = await new_stream(directory, name)
    base_ms = int(time.time() * 1000)
    fragments = [fragment(seq, body, HEADER, base_ms) for seq, body in enumerate(bodies, 1)]
    try:
        claim = await store.claim_writer(info.key)
        started = time.perf_counter()
        for f in fragments:
            await store.append(claim, [f])
        return sum(map(len, bodies)) / 1e6 / (time.perf_counter() - started)
    finally:
        await store.close()


async def fill_small(directory: Path, name: str, count: int) -> StreamInfo:
    """A stream of ``count`` 1 KB fragments (a new header every 100), written fast.

    Real records (and index snapshots) through the real store, 64 per group commit as
    a busy PutMedia would, with fdatasync skipped; the newest fragment is the present,
    one millisecond apart, so retention keeps them all.
    """
    store, info = await new_stream(directory, name)
    body, base_ms = os.urandom(1000), int(time.time() * 1000) - count
    claim = await store.claim_writer(info.key)
    with mock.patch.object(os, "fdatasync", lambda fd: None):
        for first in range(1, count + 1, 64):
            batch = range(first, min(count, first + 63) + 1)
            await store.append(
                claim, [fragment(s, body, HEADER + b"%d" % (s // 100), base_ms) for s in batch]
            )
        await store.close()
    os.sync()
    return info


def read_files(directory: Path) -> float:
    """Seconds to read every file under ``directory`` in 1 MB blocks."""
    started = time.perf_counter()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            with open(path, "rb", buffering=0) as f:
                while f.read(MB):
                    pass
    return time.perf_counter() - started


async def reopen_time(directory: Path) -> tuple[float, int]:
    """Seconds for ``open()`` of a data dir, and the fragments it found."""
    store = EmbeddedStore(str(directory))
    started = time.perf_counter()
    infos = await store.open()
    elapsed = time.perf_counter() - started
    count = 0
    for info in infos:
        count += len(await store.fragments_after(info.key, -1, 1 << 40))
    await store.close()
    return elapsed, count


def run(settings: Settings) -> list[Row]:
    options = {**OPTIONS, **settings.options}
    if settings.smoke:
        options.update(count=8, rounds=1, small=2000)
    count, rounds, small = options["count"], options["rounds"], options["small"]
    directory = settings.work / "store"
    directory.mkdir(parents=True, exist_ok=True)
    bodies = [os.urandom(MB) for _ in range(count)]
    ours, base = [], []
    for r in range(rounds):  # the plain files stay: unlinking on a discard mount slows the next
        plain = directory / f"plain{r}"
        if r % 2:
            base.append(count * MB / 1e6 / write_synced(plain, bodies))
        ours.append(asyncio.run(append_rate(directory, f"big{r}", bodies)))
        if not r % 2:
            base.append(count * MB / 1e6 / write_synced(plain, bodies))
    reopen_dir = settings.work / "reopen"
    asyncio.run(fill_small(reopen_dir, "small", small))
    plain_read = read_files(reopen_dir)
    elapsed, found = asyncio.run(reopen_time(reopen_dir))
    if found != small:
        raise RuntimeError(f"reopen found {found} of {small} fragments")
    return [
        Row(
            "Store append, 1 MB fragments + fdatasync",
            max(ours),
            max(base),
            "MB/s",
            baseline_name="write+fdatasync",
        ),
        Row(
            f"Store reopen, {small:,} x 1 KB fragments",
            elapsed,
            plain_read,
            "s",
            baseline_name="read the segment files",
        ),
    ]


if __name__ == "__main__":
    standalone(run, __doc__, OPTIONS)
