"""The embedded store: round trips, ordering, recovery from torn tails, retention, disk full, SIGKILL."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import google_crc32c
import pytest

from openkvs.server.model import Fragment, FragmentMeta, FragmentNumber, StreamInfo
from openkvs.server.store.base import Corrupt, Missing, OutOfOrderError, StoreError, StreamNotFound
from openkvs.server.store.embedded import EmbeddedStore
from openkvs.server.store.log import (
    FLAG_SAME_HEADER,
    FRAG,
    HEAD,
    MAGIC,
    PREFIX,
    CorruptSegmentError,
    index_name,
    segment_name,
)
from tests.store_child import CRASH_STREAM, crash_fragment

CAM = StreamInfo(
    name="cam", arn="arn:aws:kinesisvideo:us-east-1:0:stream/cam/1", creation_ms=1, version="v1"
)
CHILD = Path(__file__).with_name("store_child.py")


def frag(
    seq: int, header: bytes = b"header-A", size: int = 64, server_ms: int | None = None
) -> Fragment:
    server_ms = 10_000 + seq * 1000 if server_ms is None else server_ms
    meta = FragmentMeta(
        FragmentNumber.make(seq, server_ms, salt=seq), server_ms, seq * 1000, 1000, size
    )
    return Fragment(meta, header, bytes([seq % 256]) * size)


class Gone(Exception):
    """A read answered Missing."""


class Damaged(Exception):
    """A read answered Corrupt."""


async def append(store: Any, key: str, *fragments: Fragment) -> None:
    """Append as the stream's (new) only writer."""
    await store.append(await store.claim_writer(key), list(fragments))


async def index(store: Any, key: str) -> list[FragmentMeta]:
    return await store.fragments_after(key, -1, 1 << 40)


async def read(store: Any, key: str, meta: FragmentMeta) -> Fragment:
    (outcome,) = await store.read(key, [meta])
    if isinstance(outcome, Missing):
        raise Gone(meta)
    if isinstance(outcome, Corrupt):
        raise Damaged(outcome.where)
    return outcome


async def opened(path: Path, segment_bytes: int = 1 << 20) -> EmbeddedStore:
    store = EmbeddedStore(str(path), segment_bytes=segment_bytes)
    await store.open()
    return store


async def reopened(store: EmbeddedStore) -> EmbeddedStore:
    await store.close()
    again = EmbeddedStore(os.path.dirname(store.root), segment_bytes=store.segment_bytes)
    await again.open()
    return again


async def fill(store: EmbeddedStore, fragments: list[Fragment], info: StreamInfo = CAM) -> None:
    await store.save_stream(info, None)
    for fragment in fragments:
        await append(store, info.key, fragment)


async def assert_holds(store: EmbeddedStore, fragments: list[Fragment], key: str = CAM.key) -> None:
    assert await index(store, key) == [f.meta for f in fragments]
    await assert_reads(store, fragments, key)


async def assert_reads(store: EmbeddedStore, fragments: list[Fragment], key: str = CAM.key) -> None:
    for fragment in fragments:
        got = await read(store, key, fragment.meta)
        assert (got.meta, got.header, got.body) == (fragment.meta, fragment.header, fragment.body)


def stream_dir(store: EmbeddedStore, key: str = CAM.key) -> Path:
    return Path(store.root) / key


def segments(store: EmbeddedStore, key: str = CAM.key) -> list[str]:
    return sorted(p.name for p in stream_dir(store, key).glob("*.seg"))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    opened_store = await opened(tmp_path)
    yield opened_store
    await opened_store.close()


async def test_round_trip_stores_a_repeated_header_once(store: EmbeddedStore) -> None:
    fragments = [frag(seq, header=b"H" * 4000, size=100) for seq in range(1, 21)]
    await fill(store, fragments)
    await assert_holds(store, fragments)
    size = os.path.getsize(stream_dir(store) / segment_name(1))
    assert size == 4000 + 20 * (PREFIX + 100)


async def test_header_change_mid_segment(store: EmbeddedStore) -> None:
    headers = [b"A" * 10, b"A" * 10, b"B" * 30, b"B" * 30, b"A" * 10, b"", b"", b"C"]
    fragments = [frag(seq, header=h) for seq, h in enumerate(headers, start=1)]
    await fill(store, fragments)
    await assert_holds(store, fragments)
    await assert_holds(await reopened(store), fragments)


async def test_segments_roll_and_are_named_by_first_seq(tmp_path: Path) -> None:
    store = await opened(tmp_path, segment_bytes=1000)
    fragments = [frag(seq, size=300) for seq in range(1, 11)]
    await fill(store, fragments)
    assert segments(store) == [segment_name(s) for s in (1, 4, 7, 10)]
    await assert_holds(store, fragments)
    store = await reopened(store)
    await assert_holds(store, fragments)
    more = [frag(seq, header=b"header-B", size=300) for seq in range(11, 15)]
    for fragment in more:
        await append(store, CAM.key, fragment)
    assert segments(store) == [segment_name(s) for s in (1, 4, 7, 10, 13)]
    await assert_holds(await reopened(store), fragments + more)


async def test_appends_must_follow_the_last_seq(store: EmbeddedStore) -> None:
    await fill(store, [frag(100)])
    for seq in (100, 99):
        with pytest.raises(OutOfOrderError):
            await append(store, CAM.key, frag(seq))
    await append(store, CAM.key, frag(101))
    await append(store, CAM.key, frag(105))  # numbers burned by rejected fragments leave gaps
    assert [m.seq for m in await index(store, CAM.key)] == [100, 101, 105]
    again = await reopened(store)
    assert [m.seq for m in await index(again, CAM.key)] == [100, 101, 105]
    await again.close()
    with pytest.raises(StreamNotFound):
        await append(store, "nobody.1", frag(1))
    assert await index(store, "nobody.1") == []


async def test_reopen_recovers_streams_and_fragments(tmp_path: Path) -> None:
    store = await opened(tmp_path, segment_bytes=2000)
    other = StreamInfo(
        name="door", arn="arn:door", creation_ms=7, version="v2", device_name="d",
        media_type="video/h264", kms_key_id="k", data_retention_hours=24,
        tags={"site": "north"}, storage_tier="HOT",
    )  # fmt: skip
    cam = [frag(seq, size=seq * 37) for seq in range(1, 40)]
    door = [frag(seq, header=b"door") for seq in range(5, 9)]
    await fill(store, cam)
    await fill(store, door, other)
    empty = StreamInfo(name="idle", arn="arn:idle", creation_ms=3, version="v1")
    await store.save_stream(empty, None)
    store = EmbeddedStore(str(tmp_path), segment_bytes=2000)
    infos = await store.open()
    assert sorted(infos, key=lambda i: i.name) == [CAM, other, empty]
    await assert_holds(store, cam)
    await assert_holds(store, door, other.key)
    assert await index(store, empty.key) == []
    await store.close()


async def torn_store(
    tmp_path: Path, count: int, segment_bytes: int = 1 << 20
) -> tuple[list[Fragment], Path, int]:
    """A stream of ``count`` fragments; the last segment's path and the end of the record before."""
    store = await opened(tmp_path, segment_bytes)
    fragments = [
        frag(seq, header=b"hh" if seq % 3 else b"other", size=20) for seq in range(1, count + 1)
    ]
    await fill(store, fragments[:-1])
    last = stream_dir(store) / segments(store)[-1] if segments(store) else None
    before = os.path.getsize(last) if last else 0
    await append(store, CAM.key, fragments[-1])
    last = stream_dir(store) / segments(store)[-1]
    if last.name == segment_name(count):
        before = 0
    await store.close()
    last.with_suffix(".idx").unlink()  # as after a crash: the last rows' snapshot never written
    return fragments, last, before


async def test_a_record_cut_at_any_offset_is_dropped(tmp_path: Path) -> None:
    fragments, last, before = await torn_store(tmp_path, 6)
    whole = last.read_bytes()
    assert len(whole) - before > PREFIX
    for cut in range(before, len(whole)):
        last.write_bytes(whole[:cut])
        store = await opened(tmp_path)
        assert await index(store, CAM.key) == [f.meta for f in fragments[:-1]], cut
        assert last.stat().st_size == before
        await store.close()
    store = await opened(tmp_path)
    await append(store, CAM.key, fragments[-1])
    await assert_holds(await reopened(store), fragments)


async def test_a_torn_first_record_removes_its_segment(tmp_path: Path) -> None:
    fragments, last, before = await torn_store(tmp_path, 4, segment_bytes=200)
    assert before == 0 and last.name == segment_name(4)
    whole = last.read_bytes()
    for cut in (0, 1, HEAD.size, PREFIX, len(whole) - 1):
        last.write_bytes(whole[:cut])
        store = await opened(tmp_path, 200)
        assert await index(store, CAM.key) == [f.meta for f in fragments[:-1]]
        assert not last.exists()
        await store.close()
    store = await opened(tmp_path, 200)
    await append(store, CAM.key, fragments[-1])
    await assert_holds(await reopened(store), fragments)


TAILS = {
    "one_zero": lambda whole, before: b"\0",
    "zeros": lambda whole, before: b"\0" * 5000,
    "garbage": lambda whole, before: random.Random(7).randbytes(3000),
    "huge_length": lambda whole, before: (
        whole[before : before + 4] + b"\xff\xff\xff\x7f" + whole[before + 8 : before + 100]
    ),
    "replayed_record": lambda whole, before: whole[before:],
}


@pytest.mark.parametrize("shape", sorted(TAILS))
async def test_junk_after_the_last_record_is_cut(tmp_path: Path, shape: str) -> None:
    fragments, last, before = await torn_store(tmp_path, 6)
    whole = last.read_bytes()
    last.write_bytes(whole + TAILS[shape](whole, before))
    store = await opened(tmp_path)
    await assert_holds(store, fragments)
    assert last.stat().st_size == len(whole)
    await store.close()


@pytest.mark.parametrize("where", ["head", "fixed", "header", "body", "crc"])
async def test_a_corrupt_last_record_is_dropped(tmp_path: Path, where: str) -> None:
    fragments, last, before = await torn_store(tmp_path, 6)
    offset = {"head": 6, "crc": 9, "fixed": HEAD.size + 2, "header": PREFIX, "body": -1}[where]
    data = bytearray(last.read_bytes())
    data[before + offset if offset >= 0 else offset] ^= 0x40
    last.write_bytes(bytes(data))
    store = await opened(tmp_path)
    await assert_holds(store, fragments[:-1])
    assert last.stat().st_size == before
    await store.close()


async def test_records_larger_than_the_scan_window_are_verified(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    fragments = [frag(1, size=300_000), frag(2, size=600_000)]  # the scan reads 256 KiB at a time
    await fill(store, fragments)
    await store.close()
    path = stream_dir(store) / segment_name(1)
    data = bytearray(path.read_bytes())
    store = await opened(tmp_path)
    await assert_holds(store, fragments)
    await store.close()
    data[-1] ^= 0x40
    path.write_bytes(bytes(data))
    path.with_suffix(".idx").unlink()  # a crash: the records were never snapshotted
    store = await opened(tmp_path)
    await assert_holds(store, fragments[:1])
    assert path.stat().st_size == len(data) - PREFIX - 600_000
    await store.close()


async def test_a_damaged_sealed_segment_is_reported_not_cut(tmp_path: Path) -> None:
    store = await opened(tmp_path, segment_bytes=200)
    await fill(store, [frag(seq) for seq in range(1, 7)])
    await store.close()
    first = stream_dir(store) / segment_name(1)
    data = bytearray(first.read_bytes())
    data[-1] ^= 1
    first.write_bytes(bytes(data))
    store = await opened(tmp_path, 200)  # sealed segments are trusted by their heads
    with pytest.raises(Damaged, match="CRC mismatch"):
        await read(store, CAM.key, (await index(store, CAM.key))[1])
    await store.close()
    data[0] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(CorruptSegmentError):
        await opened(tmp_path, 200)


def old_record(fragment: Fragment, same_header: bool) -> bytes:
    """A record as versions before CRC-32C wrote it: type 1, zlib CRC-32 of head[:8] + payload."""
    meta, header = fragment.meta, b"" if same_header else fragment.header
    number = meta.number.value.to_bytes(20, "big")
    fixed = FRAG.pack(
        meta.seq, number, meta.server_ms, meta.producer_ms, meta.duration_ms, meta.size, len(header)
    )
    payload = fixed + header + fragment.body
    head = HEAD.pack(MAGIC, 1, FLAG_SAME_HEADER if same_header else 0, len(payload), 0)[:8]
    return head + zlib.crc32(head + payload).to_bytes(4, "little") + payload


def write_old_segment(directory: Path, fragments: list[Fragment], tail: bytes = b"") -> bytes:
    """``fragments`` in one segment of type-1 records, then ``tail``; the records' bytes."""
    data = b"".join(
        old_record(f, same_header=i > 0 and f.header == fragments[i - 1].header)
        for i, f in enumerate(fragments)
    )
    (directory / segment_name(fragments[0].meta.seq)).write_bytes(data + tail)
    return data


async def saved_stream(tmp_path: Path) -> Path:
    """CAM's directory, with its stream.json and no segment yet."""
    store = await opened(tmp_path)
    await store.save_stream(CAM, None)
    await store.close()
    return stream_dir(store)


def checksums(path: Path) -> list[tuple[int, str]]:
    """Each record's type, and which algorithm its CRC field matches."""
    data, found, offset = path.read_bytes(), [], 0
    while offset < len(data):
        _magic, rtype, _flags, length, crc = HEAD.unpack_from(data, offset)
        covered = data[offset : offset + 8] + data[offset + HEAD.size : offset + HEAD.size + length]
        algorithms = {"crc32": zlib.crc32(covered), "crc32c": google_crc32c.value(covered)}
        found.append((rtype, next((k for k, v in algorithms.items() if v == crc), "none")))
        offset += HEAD.size + length
    return found


async def test_old_crc32_segments_are_read_recovered_and_appended_to(tmp_path: Path) -> None:
    directory = await saved_stream(tmp_path)
    sealed = [frag(1), frag(2)]
    old = [frag(3, header=b"header-B"), frag(4, header=b"header-B")]
    write_old_segment(directory, sealed)
    torn = old_record(frag(5), same_header=False)[:-1]
    data = write_old_segment(directory, old, tail=torn)
    last = directory / segment_name(3)
    store = await opened(tmp_path)
    assert last.stat().st_size == len(data)  # old CRCs verified, the torn tail cut
    await assert_holds(store, sealed + old)
    new = [frag(5, header=b"header-B"), frag(6, header=b"header-C")]  # 5 reuses 4's header
    for fragment in new:
        await append(store, CAM.key, fragment)
    store = await reopened(store)
    await assert_holds(store, sealed + old + new)
    assert segments(store) == [segment_name(1), segment_name(3)]
    assert last.read_bytes()[: len(data)] == data
    assert checksums(last) == [(1, "crc32")] * 2 + [(2, "crc32c")] * 2
    await store.close()


@pytest.mark.parametrize("where", ["head", "fixed", "header", "body", "crc"])
async def test_a_corrupt_old_record_is_detected(tmp_path: Path, where: str) -> None:
    directory = await saved_stream(tmp_path)
    fragments = [frag(1), frag(2, header=b"other")]
    first = len(old_record(fragments[0], same_header=False))
    data = bytearray(write_old_segment(directory, fragments))
    offset = {"head": 6, "crc": 9, "fixed": HEAD.size + 2, "header": PREFIX, "body": -1}[where]
    data[first + offset if offset >= 0 else offset] ^= 0x40
    path = directory / segment_name(1)
    path.write_bytes(bytes(data))
    store = await opened(tmp_path)
    await assert_holds(store, fragments[:1])
    assert path.stat().st_size == first
    await store.close()


async def test_a_damaged_old_record_fails_its_read(tmp_path: Path) -> None:
    directory = await saved_stream(tmp_path)
    fragments = [frag(1), frag(2)]
    data = bytearray(write_old_segment(directory, fragments))
    store = await opened(tmp_path)
    data[-1] ^= 1
    (directory / segment_name(1)).write_bytes(bytes(data))
    with pytest.raises(Damaged):
        await read(store, CAM.key, fragments[1].meta)
    got = await read(store, CAM.key, fragments[0].meta)
    assert (got.header, got.body) == (fragments[0].header, fragments[0].body)
    await store.close()


async def test_delete_and_recreate_with_the_same_name(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    old = [frag(seq) for seq in range(1, 5)]
    await fill(store, old)
    await store.delete_stream(CAM.key)
    assert await index(store, CAM.key) == []
    assert not stream_dir(store).exists()
    with pytest.raises(Gone):
        await read(store, CAM.key, old[0].meta)
    with pytest.raises(StreamNotFound):
        await append(store, CAM.key, frag(5))
    again = StreamInfo(name=CAM.name, arn=CAM.arn, creation_ms=2, version="v9")
    new = [frag(seq, header=b"new") for seq in range(1, 3)]
    await fill(store, new, again)
    store = await reopened(store)
    assert [info.key for info in await store.open()] == [again.key]
    await assert_holds(store, new, again.key)
    await store.close()


async def test_open_finishes_deletions_and_removes_temp_files(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    await fill(store, [frag(1)])
    await store.close()
    half = Path(store.root) / "gone.5"
    half.mkdir()
    (half / segment_name(1)).write_bytes(b"x" * 100)
    (stream_dir(store) / "stream.json.tmp").write_bytes(b"{")
    (Path(store.root) / "stray.tmp").write_bytes(b"")
    store = await opened(tmp_path)
    assert not half.exists()
    names = sorted(p.name for p in stream_dir(store).iterdir())
    assert names == [index_name(1), segment_name(1), "stream.json"]
    assert sorted(os.listdir(store.root)) == [CAM.key]
    await store.close()


async def test_retention_deletes_whole_segments_and_hides_the_rest(tmp_path: Path) -> None:
    store = await opened(tmp_path, segment_bytes=250)
    fragments = [frag(seq, size=100) for seq in range(1, 11)]
    await fill(store, fragments)
    names = segments(store)
    assert names == [segment_name(s) for s in (1, 3, 5, 7, 9)]
    assert await store.truncate_before(CAM.key, fragments[3].meta.server_ms + 1) == 4
    assert segments(store) == names[2:]
    assert await store.truncate_before(CAM.key, fragments[4].meta.server_ms + 1) == 1
    assert segments(store) == names[2:], "a partly expired segment stays on disk"
    for fragment in fragments[:5]:
        with pytest.raises(Gone):
            await read(store, CAM.key, fragment.meta)
    await assert_holds(store, fragments[5:])
    assert await store.truncate_before(CAM.key, 0) == 0
    await append(store, CAM.key, frag(11, size=100))
    assert await store.truncate_before(CAM.key, 10**12) == 6
    assert segments(store) == [] and await index(store, CAM.key) == []
    tail = [frag(seq, size=100) for seq in (12, 13)]
    for fragment in tail:
        await append(store, CAM.key, fragment)
    await assert_holds(await reopened(store), tail)


async def test_a_vanished_segment_reads_as_gone(store: EmbeddedStore) -> None:
    fragments = [frag(1)]
    await fill(store, fragments)
    (stream_dir(store) / segment_name(1)).unlink()
    with pytest.raises(Gone):
        await read(store, CAM.key, fragments[0].meta)


async def test_a_cancelled_append_still_lands_in_the_index(store: EmbeddedStore) -> None:
    await fill(store, [frag(1)])
    task = asyncio.create_task(append(store, CAM.key, frag(2, size=8 << 20)))
    await asyncio.sleep(0)
    if task.cancel():
        with pytest.raises(asyncio.CancelledError):
            await task
    await append(store, CAM.key, frag(3))
    assert [m.seq for m in await index(store, CAM.key)] == [1, 2, 3]
    await assert_holds(await reopened(store), [frag(1), frag(2, size=8 << 20), frag(3)])


async def test_a_full_disk_fails_the_append_and_leaves_no_trace(tiny_disk: Path) -> None:
    ballast = tiny_disk / "ballast"
    ballast.write_bytes(b"\0" * (256 << 10))
    store = await opened(tiny_disk)
    await store.save_stream(CAM, None)
    stored: list[Fragment] = []
    with pytest.raises(StoreError, match="No space"):
        for seq in range(1, 100):
            fragment = frag(seq, size=100_000)
            await append(store, CAM.key, fragment)
            stored.append(fragment)
    failed = frag(len(stored) + 1, size=100_000)
    assert 3 <= len(stored) < 10
    with pytest.raises(Gone):
        await read(store, CAM.key, failed.meta)
    await assert_holds(store, stored)
    assert os.path.getsize(stream_dir(store) / segment_name(1)) == sum(
        PREFIX + len(f.body) for f in stored
    ) + len(b"header-A")
    with pytest.raises(StoreError):
        await append(store, CAM.key, failed)
    ballast.unlink()
    await append(store, CAM.key, failed)
    store = await reopened(store)
    await assert_holds(store, [*stored, failed])
    await store.close()


async def test_sigkill_never_loses_an_acknowledged_fragment(tmp_path: Path) -> None:
    rng = random.Random()
    acked: set[int] = set()
    for cycle in range(6):
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(tmp_path), str(150_000)],
            stdout=subprocess.PIPE,
        )
        assert child.stdout is not None
        printed = [child.stdout.readline() for _ in range(rng.randint(1, 60))]
        await asyncio.sleep(rng.random() * 0.02)
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate()
        assert child.returncode == -signal.SIGKILL
        acked.update(int(line) for line in [*printed, *rest.splitlines()] if line)
        store = await opened(tmp_path, 150_000)
        seqs = [m.seq for m in await index(store, CRASH_STREAM.key)]
        assert seqs == list(range(1, len(seqs) + 1)), f"cycle {cycle}: not contiguous"
        assert acked <= set(seqs), f"cycle {cycle}: lost {sorted(acked - set(seqs))}"
        for seq in seqs:
            expected = crash_fragment(seq)
            got = await read(store, CRASH_STREAM.key, expected.meta)
            assert (got.meta, got.header, got.body) == (
                expected.meta,
                expected.header,
                expected.body,
            )
        await store.close()
    assert len(acked) > 6


async def test_a_batch_lands_whole_across_segment_rolls(tmp_path: Path) -> None:
    store = await opened(tmp_path, segment_bytes=250_000)
    await store.save_stream(CAM, None)
    first = [frag(1, size=1000)]
    await append(store, CAM.key, *first)
    batch = [frag(seq, size=100_000) for seq in range(2, 9)] + [frag(9, b"header-B", 500)]
    await append(store, CAM.key, *batch)
    assert len(segments(store)) >= 3
    await assert_holds(store, first + batch)
    with pytest.raises(OutOfOrderError):
        await append(store, CAM.key, *[frag(11), frag(10)])
    store = await reopened(store)
    await assert_holds(store, first + batch)
    await store.close()


async def test_a_batch_read_returns_each_fragment_or_gone(tmp_path: Path) -> None:
    store = await opened(tmp_path, segment_bytes=250_000)
    await store.save_stream(CAM, None)
    fragments = [frag(seq, size=100_000) for seq in range(1, 7)]
    await append(store, CAM.key, *fragments)
    metas = [f.meta for f in fragments]
    assert await store.read(CAM.key, metas) == fragments
    await store.truncate_before(CAM.key, fragments[3].meta.server_ms)
    assert await store.read(CAM.key, metas) == [Missing(m) for m in metas[:3]] + fragments[3:]
    await store.close()


async def test_a_fragment_of_many_parts_is_written_unjoined_and_reads_back_whole(
    tmp_path: Path,
) -> None:
    """An ingested body is its elements as they arrived; more than IOV_MAX of them still fit."""
    parts = tuple(bytes([i % 251]) * (1 + i % 97) for i in range(3000))
    size = sum(map(len, parts))
    meta = FragmentMeta(FragmentNumber.make(1, 11_000, salt=1), 11_000, 1000, 1000, size)
    store = await opened(tmp_path)
    await fill(store, [Fragment(meta, b"header-A", parts), frag(2)])
    store = await reopened(store)
    got = await read(store, CAM.key, meta)
    assert got.body == b"".join(parts) and got.header == b"header-A"
    assert (await read(store, CAM.key, frag(2).meta)).body == frag(2).body
    await store.close()


async def test_restart_reads_snapshots_instead_of_records(tmp_path: Path) -> None:
    """Sealed segments with a snapshot are not scanned: a damaged head inside one does not
    stop the open, and the damaged fragment reads as damaged; without the snapshot the
    scan finds it."""
    store = await opened(tmp_path, segment_bytes=500)
    fragments = [frag(seq, size=100) for seq in range(1, 13)]
    await fill(store, fragments)
    await store.close()
    first = stream_dir(store) / segment_name(1)
    data = bytearray(first.read_bytes())
    second_record = len(b"header-A") + PREFIX + 100
    data[second_record] ^= 0xFF  # the magic of record 2
    first.write_bytes(bytes(data))
    store = await opened(tmp_path, 500)
    assert await index(store, CAM.key) == [f.meta for f in fragments]
    with pytest.raises(Damaged):
        await read(store, CAM.key, fragments[1].meta)
    await assert_reads(store, [fragments[0], *fragments[2:]])
    await store.close()
    (stream_dir(store) / index_name(1)).unlink()
    with pytest.raises(CorruptSegmentError):
        await opened(tmp_path, 500)


async def test_a_damaged_acknowledged_record_is_kept_and_reads_as_damaged(
    tmp_path: Path,
) -> None:
    """A record the snapshot vouches for was acknowledged: damage later is reported per
    read (4000 to readers), never cut away as if a crash had torn it."""
    store = await opened(tmp_path)
    fragments = [frag(seq) for seq in range(1, 5)]
    await fill(store, fragments)
    await store.close()
    path = stream_dir(store) / segment_name(1)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40
    path.write_bytes(bytes(data))
    store = await opened(tmp_path)
    assert await index(store, CAM.key) == [f.meta for f in fragments]
    with pytest.raises(Damaged, match="CRC mismatch"):
        await read(store, CAM.key, fragments[-1].meta)
    await assert_reads(store, fragments[:-1])
    await store.close()


async def test_a_torn_snapshot_block_costs_a_scan_not_a_fragment(tmp_path: Path) -> None:
    store = await opened(tmp_path, segment_bytes=1 << 20)
    fragments = [frag(seq) for seq in range(1, 30)]
    await fill(store, fragments)
    await store.close()
    snap = stream_dir(store) / index_name(1)
    snap.write_bytes(snap.read_bytes()[:-7])
    store = await opened(tmp_path)
    await assert_holds(store, fragments)
    await append(store, CAM.key, frag(30))
    await assert_holds(await reopened(store), [*fragments, frag(30)])


async def test_tracks_and_keyframes_are_recovered_by_a_scan_too(tmp_path: Path) -> None:
    """Without snapshots (a data dir from before them, or a crash) the records themselves
    say which fragments start with a keyframe, and each new header which tracks."""
    from tests.test_store_contract import H264, H264_AAC, fragment

    store = await opened(tmp_path)
    fragments = [fragment(1, H264), fragment(2, H264, keyframe=False), fragment(3, H264_AAC)]
    await fill(store, fragments)
    await store.close()
    for snap in stream_dir(store).glob("*.idx"):
        snap.unlink()
    store = await opened(tmp_path)
    assert await index(store, CAM.key) == [f.meta for f in fragments]
    await store.close()


@pytest.mark.parametrize("failing", [1, 2])
async def test_a_snapshot_write_that_fails_costs_a_scan_not_fragments(
    tmp_path: Path, failing: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block that could not be written must not leave a hole the next blocks hide."""
    from openkvs.server.store import snapshot
    from tests.test_store_contract import INFO, fragment

    writes = [0]

    def flaky_open(path: str, mode: str = "r", *args: Any) -> Any:
        if mode == "ab":
            writes[0] += 1
            if writes[0] == failing:
                raise OSError(28, "No space left on device")
        return open(path, mode, *args)

    monkeypatch.setattr(snapshot, "open", flaky_open, raising=False)
    store = await opened(tmp_path, segment_bytes=64 << 20)
    await store.save_stream(INFO, None)
    claim = await store.claim_writer(INFO.key)
    for seq in range(1, 2101):
        await store.append(claim, [fragment(seq)])
    await store.close()
    assert writes[0] >= 3
    again = await opened(tmp_path, segment_bytes=64 << 20)
    metas = await again.fragments_after(INFO.key, 0, 10_000)
    assert [m.seq for m in metas] == list(range(1, 2101))
    await again.close()
