"""The embedded store: each stream a directory of append-only segment files.

Layout: ``<data_dir>/streams/<StreamInfo.key>/stream.json`` (the StreamInfo,
replaced atomically), ``<first-seq:020d>.seg`` segments (see ``log.py`` for the
record format) and beside each its index snapshot ``.idx`` (``snapshot.py``).
A fragment is acknowledged only after its record is fdatasynced; recovery is the
open path, loads the snapshots, scans only what they do not cover, and cuts away
whatever a crash left unacknowledged. All disk work runs in worker threads; the
index (``index.py``, columns in memory) lives on the event loop and is only
changed there.

Segments roll at ``segment_bytes`` (64 MiB by default, ``--segment-bytes``):
retention frees disk a whole segment at a time, so smaller segments free it
sooner; tests use tiny ones to make retention delete many files.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from openkvs.server.model import Fragment, FragmentMeta, FragmentNumber, StreamInfo
from openkvs.server.store import snapshot
from openkvs.server.store.base import (
    Corrupt,
    Fenced,
    Missing,
    OutOfOrderError,
    ReadOutcome,
    StoreError,
    StreamExists,
    StreamNotFound,
    VersionConflict,
    WriterClaim,
)
from openkvs.server.store.index import SegmentIndex, StreamIndex
from openkvs.server.store.log import (
    INDEX_SUFFIX,
    SUFFIX,
    CorruptSegmentError,
    Location,
    Scan,
    SegmentWriter,
    atomic_write,
    fsync_dir,
    index_name,
    parse_segment_name,
    read_fragment,
    record_seq_at,
    scan,
    segment_name,
)
from openkvs.server.store.watch import Watchers

log = logging.getLogger("openkvs.store")

DEFAULT_SEGMENT_BYTES = 64 << 20
INFO_FILE = "stream.json"
SNAPSHOT_EVERY = 1024
"""Rows of the active segment gathered before they are written to its snapshot: a
crash costs a scan of at most this many records (and of what the last segment holds
beyond)."""
_TMP = ".tmp"
_T = TypeVar("_T")


@dataclass(eq=False)
class _Stream:
    """One stream's state; ``lock`` serializes its appends and guards ``writer``.

    ``cleanup`` is retention's latest deletion job, ``cleaning`` the newest
    segment it deletes; ``token`` the newest writer claim; ``reported`` the
    damaged records already logged.
    """

    info: StreamInfo
    directory: str
    writer: SegmentWriter
    index: StreamIndex = field(default_factory=StreamIndex)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    cleanup: asyncio.Future[None] | None = None
    cleaning: int = -1
    deleted: bool = False
    token: int = 0
    reported: set[tuple[int, int]] = field(default_factory=set)


async def _settle(job: asyncio.Future[_T]) -> tuple[_T, bool]:
    """Await a disk job to its end, and say whether our task was cancelled meanwhile.

    A stream's lock must outlive its write, and the index must learn of a record
    that reached the disk, so a cancellation is deferred until the job is done.
    """
    cancelled = False
    while True:
        try:
            return await asyncio.shield(job), cancelled
        except asyncio.CancelledError:
            if job.cancelled():
                raise
            cancelled = True


class EmbeddedStore:
    """A durable, crash-safe ``Store`` in a local directory."""

    shared = False

    def __init__(self, data_dir: str, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.root = os.path.join(data_dir, "streams")
        self.segment_bytes = segment_bytes
        self._streams: dict[str, _Stream] = {}
        self._watchers = Watchers()

    async def open(self) -> list[StreamInfo]:
        """Recover every stream from disk (cutting torn tails) and return their infos."""
        try:
            streams = await asyncio.to_thread(self._recover_all)
        except OSError as exc:
            raise StoreError(f"cannot open {self.root}: {exc}") from exc
        self._streams = {s.info.key: s for s in streams}
        return [s.info for s in streams]

    async def check(self) -> None:
        """A small file written, fsynced and removed in the data dir: a full or read-only
        disk fails it, as it would fail the next append."""
        try:
            await asyncio.to_thread(_probe, self.root)
        except OSError as exc:
            raise StoreError(f"the data dir cannot be written: {exc}") from None

    async def close(self) -> None:
        """Close the writers once their appends are done (their snapshots written), and wait
        for retention's deletions."""
        for stream in list(self._streams.values()):
            async with stream.lock:
                blocks = self._snapshot_blocks(stream, everything=True)
                self._unwritten(
                    stream, await asyncio.to_thread(_close_writer, stream.writer, blocks)
                )
            if stream.cleanup is not None:
                await asyncio.wait([stream.cleanup])

    async def save_stream(self, info: StreamInfo, expected_version: str | None) -> None:
        directory = self._directory(info.key)
        stream = self._streams.get(info.key)
        if expected_version is None and stream is not None:
            raise StreamExists(f"stream {info.key} exists")
        if expected_version is not None:
            if stream is None:
                raise StreamNotFound(f"no stream {info.key}")
            if stream.info.version != expected_version:
                raise VersionConflict(f"stream {info.key} is at version {stream.info.version}")
        saved = dataclasses.replace(info, tags=dict(info.tags))
        try:
            await asyncio.to_thread(self._write_info, directory, saved)
        except OSError as exc:
            raise StoreError(f"cannot save stream {info.key}: {exc}") from exc
        stream = self._streams.get(info.key)
        if stream is None:
            writer = SegmentWriter(directory, self.segment_bytes)
            self._streams[info.key] = _Stream(saved, directory, writer)
        else:
            stream.info = saved

    async def delete_stream(self, key: str) -> None:
        """The stream is gone once stream.json is; the rest is cleanup that recovery redoes."""
        directory = self._directory(key)
        fd = None
        stream = self._streams.get(key)
        if stream is not None:
            async with stream.lock:
                stream.deleted = True
                del self._streams[key]
                stream.index.clear()
                fd = stream.writer.detach()
            self._watchers.wake(key)
        try:
            await asyncio.to_thread(self._remove_stream, directory, fd)
        except OSError as exc:
            raise StoreError(f"cannot delete stream {key}: {exc}") from exc

    async def claim_writer(self, key: str) -> WriterClaim:
        stream = self._stream(key)
        stream.token += 1
        return WriterClaim(key, stream.token, stream.index.next_seq or 0)

    async def append(self, claim: WriterClaim, fragments: Sequence[Fragment]) -> None:
        """Write and fdatasync in a worker thread, several fragments per fdatasync.

        The index learns of them only then. Even if our task is cancelled, the lock
        is held until the write is over, so the next append never races a write
        still under way.
        """
        stream = self._stream(claim.key)
        async with stream.lock:
            if stream.deleted:
                raise StreamNotFound(f"stream {claim.key} was deleted")
            if claim.token != stream.token:
                raise Fenced(f"a newer writer claimed stream {claim.key}")
            expected = stream.index.next_seq
            seq = fragments[0].meta.seq
            if expected is not None and seq < expected:
                raise OutOfOrderError(f"seq {seq} after {expected - 1}")
            if any(
                a.meta.seq >= b.meta.seq for a, b in zip(fragments, fragments[1:], strict=False)
            ):
                raise OutOfOrderError(f"a batch out of order from {seq}")
            cleanup = stream.cleanup
            if cleanup is not None and not cleanup.done() and seq <= stream.cleaning:
                await asyncio.wait([cleanup])  # it deletes a file named like one we may create
            cancelled = False
            while fragments and not cancelled:
                blocks = self._snapshot_blocks(stream, everything=False)
                job = asyncio.ensure_future(
                    asyncio.to_thread(_append_job, stream.writer, fragments, blocks)
                )
                (locations, failed), cancelled = await _settle(job)
                self._unwritten(stream, failed)
                for fragment, loc in zip(fragments, locations, strict=False):
                    stream.index.segment_for_append(loc.segment).add(fragment.meta, loc)
                fragments = fragments[len(locations) :]
        self._watchers.wake(claim.key)
        if cancelled:
            raise asyncio.CancelledError

    async def fragments_after(self, key: str, seq: int, limit: int) -> list[FragmentMeta]:
        return self._index(key).after(seq, limit)

    async def fragments_between(
        self,
        key: str,
        start_ms: int,
        end_ms: int,
        *,
        producer: bool,
        limit: int,
        newest_first: bool = False,
    ) -> list[FragmentMeta]:
        return self._index(key).between(start_ms, end_ms, producer, limit, newest_first)

    async def last_fragment(self, key: str) -> FragmentMeta | None:
        return self._index(key).last()

    async def fragment(self, key: str, number: FragmentNumber) -> FragmentMeta | None:
        found = self._index(key).locate(number)
        return found[0] if found is not None else None

    async def expired(self, key: str) -> FragmentMeta | None:
        return self._index(key).expired

    async def read(self, key: str, metas: Sequence[FragmentMeta]) -> list[ReadOutcome]:
        """Read with pread in one worker-thread trip, checking each record's CRC and identity.

        Each fragment answers for itself: a segment deleted (or replaced) under us
        means it is Missing, a record that fails its CRC Corrupt (logged once).
        """
        stream = self._streams.get(key)
        jobs: list[tuple[str, Location, FragmentMeta] | FragmentMeta] = []
        for meta in metas:
            found = stream.index.locate(meta.number) if stream is not None else None
            if stream is None or found is None:
                jobs.append(meta)
                continue
            stored, loc = found
            jobs.append((os.path.join(stream.directory, segment_name(loc.segment)), loc, stored))
        outcomes = await asyncio.to_thread(_read_all, jobs)
        for outcome in outcomes:
            if isinstance(outcome, Corrupt) and stream is not None:
                self._report(stream, outcome)
        return outcomes

    async def truncate_before(self, key: str, server_ms: int) -> int:
        """Drop old fragments from the index at once, then delete unused segments off the lock.

        Appends go on meanwhile: the deletion runs in a worker thread and holds
        no lock, and new segments are named above every segment it deletes.
        """
        stream = self._streams.get(key)
        if stream is None:
            return 0
        async with stream.lock:
            if stream.deleted:
                return 0
            count, unused = stream.index.cut_before(server_ms)
            if not unused:
                return count
            writer, fd, torn = stream.writer, None, None
            if writer.segment in unused:
                torn = writer.end if writer.dirty else None
                fd = writer.detach()
            job = asyncio.ensure_future(
                asyncio.to_thread(_delete_segments, stream.directory, unused, fd, torn)
            )
            stream.cleanup, stream.cleaning = job, unused[-1]
        try:
            await asyncio.shield(job)
        except OSError as exc:
            raise StoreError(f"retention of {key} failed: {exc}") from exc
        return count

    async def wait_for_fragment(self, key: str, after_seq: int, timeout: float) -> bool:
        def ready() -> bool:
            last = self._index(key).last()
            return last is not None and last.seq > after_seq

        return await self._watchers.wait(key, timeout, ready)

    def _stream(self, key: str) -> _Stream:
        stream = self._streams.get(key)
        if stream is None:
            raise StreamNotFound(f"no stream {key}")
        return stream

    def _index(self, key: str) -> StreamIndex:
        stream = self._streams.get(key)
        return stream.index if stream is not None else StreamIndex()

    def _report(self, stream: _Stream, corrupt: Corrupt) -> None:
        """Log a damaged record the first time a read finds it, not at every read."""
        found = stream.index.locate(corrupt.meta.number)
        spot = (found[1].segment, found[1].offset) if found else (-1, -1)
        if spot in stream.reported:
            return
        stream.reported.add(spot)
        log.error(
            "a stored fragment is damaged; readers get 4000 for it",
            extra={
                "stream": stream.info.name,
                "fragment": str(corrupt.meta.number),
                "segment": segment_name(spot[0]),
                "offset": spot[1],
                "problem": corrupt.where,
            },
        )

    def _unwritten(self, stream: _Stream, paths: list[str]) -> None:
        for index in stream.index.segments:
            if os.path.join(stream.directory, index_name(index.segment)) in paths:
                snapshot.unwritten(index)

    def _snapshot_blocks(self, stream: _Stream, everything: bool) -> list[tuple[str, bytes]]:
        """Snapshot blocks due: every sealed segment's new rows, and the active one's once
        SNAPSHOT_EVERY of them gathered (or ``everything``, at close)."""
        blocks = []
        active = stream.writer.segment
        for index in stream.index.segments:
            pending = len(index.seqs) - index.indexed
            due = pending >= SNAPSHOT_EVERY or index.segment != active or everything
            if pending and due and (block := snapshot.pending_block(index)) is not None:
                blocks.append((os.path.join(stream.directory, index_name(index.segment)), block))
        return blocks

    def _directory(self, key: str) -> str:
        if not key or key in (".", "..") or "/" in key or "\0" in key or key.endswith(_TMP):
            raise StoreError(f"not a usable stream key: {key!r}")
        return os.path.join(self.root, key)

    def _write_info(self, directory: str, info: StreamInfo) -> None:
        if not os.path.isdir(directory):
            os.makedirs(directory, exist_ok=True)
            fsync_dir(self.root)
        data = json.dumps(dataclasses.asdict(info), sort_keys=True).encode()
        atomic_write(os.path.join(directory, INFO_FILE), data)

    def _remove_stream(self, directory: str, fd: int | None) -> None:
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(os.path.join(directory, INFO_FILE))
        except FileNotFoundError:
            pass
        else:
            fsync_dir(directory)
        shutil.rmtree(directory, ignore_errors=True)
        fsync_dir(self.root)

    def _recover_all(self) -> list[_Stream]:
        if not os.path.isdir(self.root):
            os.makedirs(self.root)
            fsync_dir(os.path.dirname(self.root))
        streams = []
        for name in sorted(os.listdir(self.root)):
            path = os.path.join(self.root, name)
            if not os.path.isdir(path):
                if name.endswith(_TMP):
                    os.unlink(path)
                continue
            if not os.path.exists(os.path.join(path, INFO_FILE)):
                log.warning("removing a half-deleted stream", extra={"path": path})
                shutil.rmtree(path)
                fsync_dir(self.root)
                continue
            streams.append(self._recover_stream(path))
        return streams

    def _recover_stream(self, directory: str) -> _Stream:
        """Rebuild one stream's index: snapshots first, then a scan of what they miss.

        Sealed segments are trusted (their heads are read, not their CRCs) and get a
        whole snapshot if they lacked one; the last segment's unindexed records are
        verified and a torn tail is cut.
        """
        info = _load_info(os.path.join(directory, INFO_FILE))
        if info.key != os.path.basename(directory):
            raise StoreError(f"{directory} holds stream {info.key}")
        stream = _Stream(info, directory, SegmentWriter(directory, self.segment_bytes))
        segments = sorted(_segments(directory))
        for i, segment in enumerate(segments):
            path = os.path.join(directory, segment_name(segment))
            index_path = os.path.join(directory, index_name(segment))
            last = i == len(segments) - 1
            index = _snapshot_of(path, index_path, segment)
            found = scan(path, segment, verify=last, start=_resume_point(index))
            for meta, loc in found.records:
                index.add(meta, loc)
            if last:
                _cut_tail(stream, path, segment, found, bool(len(index.seqs)))
            elif not len(index.seqs):
                _unlink(path, index_path)
                continue
            elif found.records:
                snapshot.write_whole(index_path, index)
            if len(index.seqs):
                stream.index.segments.append(index)
        return stream


def _snapshot_of(path: str, index_path: str, segment: int) -> SegmentIndex:
    """The segment's snapshot, if its first and last rows are the records it names."""
    index = snapshot.load(index_path, segment)
    if not len(index.seqs):
        return SegmentIndex(segment)
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        ends = (0, len(index.seqs) - 1)
        ok = index.end <= size and all(
            record_seq_at(fd, index.offsets[i]) == index.seqs[i] for i in ends
        )
    finally:
        os.close(fd)
    if not ok:
        log.warning("ignoring a snapshot that does not match its segment", extra={"path": path})
        os.unlink(index_path)
        return SegmentIndex(segment)
    return index


def _resume_point(index: SegmentIndex) -> Scan:
    """Where a scan of the records after the snapshot's starts."""
    if not len(index.seqs):
        return Scan([], 0)
    ref = index.header_refs[-1]
    return Scan([], 0, index.last_seq + 1, index.end, ref.at, ref.length, ref.tracks)


def _unlink(*paths: str) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _append_job(
    writer: SegmentWriter, fragments: Sequence[Fragment], blocks: list[tuple[str, bytes]]
) -> tuple[list[Location], list[str]]:
    """In a worker thread: the snapshot blocks due (of rows already durable), then the batch;
    the batch's locations, and the snapshots that could not be written."""
    failed = _write_snapshots(blocks)
    return writer.append_batch(fragments), failed


def _close_writer(writer: SegmentWriter, blocks: list[tuple[str, bytes]]) -> list[str]:
    failed = _write_snapshots(blocks)
    writer.close()
    return failed


def _write_snapshots(blocks: list[tuple[str, bytes]]) -> list[str]:
    """Write each block; the paths that failed (a cache: the next open scans instead)."""
    failed = [path for path, block in blocks if not snapshot.write_blocks(path, [block])]
    for path in failed:
        log.warning("cannot write an index snapshot", extra={"path": path})
    return failed


def _read_all(jobs: list[tuple[str, Location, FragmentMeta] | FragmentMeta]) -> list[ReadOutcome]:
    return [_read_one(job) for job in jobs]


def _read_one(job: tuple[str, Location, FragmentMeta] | FragmentMeta) -> ReadOutcome:
    if isinstance(job, FragmentMeta):
        return Missing(job)
    path, loc, meta = job
    try:
        header, body = read_fragment(path, loc, meta)
    except (FileNotFoundError, LookupError):
        return Missing(meta)
    except CorruptSegmentError as exc:
        return Corrupt(meta, str(exc))
    except OSError as exc:
        return Corrupt(meta, f"{path}: cannot read the record at {loc.offset}: {exc}")
    return Fragment(meta, header, body)


def _segments(directory: str) -> Iterable[int]:
    """The stream's segment seqs; leftover temp files and orphaned snapshots are removed."""
    names = set(os.listdir(directory))
    for name in names:
        orphan = (
            name.endswith(INDEX_SUFFIX) and name.removesuffix(INDEX_SUFFIX) + SUFFIX not in names
        )
        if name.endswith(_TMP) or orphan:
            os.unlink(os.path.join(directory, name))
        elif (segment := parse_segment_name(name)) is not None:
            yield segment


def _cut_tail(stream: _Stream, path: str, segment: int, found: Scan, has_records: bool) -> None:
    """Truncate what a crash left after the last good record; it was never acknowledged."""
    if found.end < found.size:
        log.warning(
            "cutting a torn segment tail",
            extra={"path": path, "problem": found.problem, "bytes": found.size - found.end},
        )
    if not has_records:
        _unlink(path, os.path.join(stream.directory, index_name(segment)))
        fsync_dir(stream.directory)
        return
    if found.end < found.size:
        fd = os.open(path, os.O_RDWR)
        try:
            os.ftruncate(fd, found.end)
            os.fsync(fd)
        finally:
            os.close(fd)
    stream.writer.resume(segment, found)


def _delete_segments(directory: str, segments: list[int], fd: int | None, torn: int | None) -> None:
    """Unlink ``segments``; ``fd`` is the writer's, detached, and ``torn`` the end of its
    acknowledged records when a failed append left bytes after it.

    A crash midway leaves newer segments beside the last ones not yet deleted;
    recovery then trusts those as sealed, so a torn tail is cut first.
    """
    if fd is not None:
        try:
            if torn is not None:
                os.ftruncate(fd, torn)
                os.fdatasync(fd)
        except OSError:
            pass  # best effort: the segment is about to be deleted anyway
        finally:
            os.close(fd)
    for segment in segments:  # oldest first, each unlink durable: a crash leaves a suffix
        _unlink(os.path.join(directory, segment_name(segment)))
        fsync_dir(directory)
        _unlink(os.path.join(directory, index_name(segment)))


def _load_info(path: str) -> StreamInfo:
    """StreamInfo from JSON; unknown fields (a newer version's) are ignored."""
    try:
        with open(path, "rb") as f:
            raw = json.load(f)
        known = {f.name for f in dataclasses.fields(StreamInfo)}
        return StreamInfo(**{k: v for k, v in raw.items() if k in known})
    except (ValueError, TypeError, AttributeError) as exc:
        raise StoreError(f"{path} is not a stream record: {exc}") from exc


def _probe(root: str) -> None:
    path = os.path.join(root, ".ready")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"ready\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(path)
