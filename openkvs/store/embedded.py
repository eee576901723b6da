"""The embedded store: each stream a directory of append-only segment files.

Layout: ``<data_dir>/streams/<StreamInfo.key>/stream.json`` (the StreamInfo,
replaced atomically) and ``<first-seq:020d>.seg`` segments (see ``log.py`` for
the record format). A fragment is acknowledged only after its record is
fdatasynced; recovery is the open path and cuts away whatever a crash left
unacknowledged. All disk work runs in worker threads; the index lives on the
event loop and is only changed there.

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

from openkvs.model import Fragment, FragmentMeta, StreamInfo
from openkvs.store.base import FragmentGone, OutOfOrderError, StoreError
from openkvs.store.index import StreamIndex
from openkvs.store.log import (
    Location,
    Scan,
    SegmentWriter,
    atomic_write,
    fsync_dir,
    parse_segment_name,
    read_fragment,
    scan,
    segment_name,
)

log = logging.getLogger("openkvs.store")

DEFAULT_SEGMENT_BYTES = 64 << 20
INFO_FILE = "stream.json"
_TMP = ".tmp"
_T = TypeVar("_T")


class UnknownStreamError(StoreError):
    """An append to a stream that was never saved, or has been deleted."""


@dataclass(eq=False)
class _Stream:
    """One stream's state; ``lock`` serializes its appends and guards ``writer``.

    ``cleanup`` is retention's latest deletion job, ``cleaning`` the newest
    segment it deletes.
    """

    info: StreamInfo
    directory: str
    writer: SegmentWriter
    index: StreamIndex = field(default_factory=StreamIndex)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    cleanup: asyncio.Future[None] | None = None
    cleaning: int = -1
    deleted: bool = False


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

    def __init__(self, data_dir: str, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.root = os.path.join(data_dir, "streams")
        self.segment_bytes = segment_bytes
        self._streams: dict[str, _Stream] = {}

    async def open(self) -> list[StreamInfo]:
        """Recover every stream from disk (cutting torn tails) and return their infos."""
        try:
            streams = await asyncio.to_thread(self._recover_all)
        except OSError as exc:
            raise StoreError(f"cannot open {self.root}: {exc}") from exc
        self._streams = {s.info.key: s for s in streams}
        return [s.info for s in streams]

    async def close(self) -> None:
        """Close the writers once their appends are done, and wait for retention's deletions."""
        for stream in list(self._streams.values()):
            async with stream.lock:
                await asyncio.to_thread(stream.writer.close)
            if stream.cleanup is not None:
                await asyncio.wait([stream.cleanup])

    async def save_stream(self, info: StreamInfo) -> None:
        directory = self._directory(info.key)
        try:
            await asyncio.to_thread(self._write_info, directory, info)
        except OSError as exc:
            raise StoreError(f"cannot save stream {info.key}: {exc}") from exc
        stream = self._streams.get(info.key)
        if stream is None:
            writer = SegmentWriter(directory, self.segment_bytes)
            self._streams[info.key] = _Stream(info, directory, writer)
        else:
            stream.info = info

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
        try:
            await asyncio.to_thread(self._remove_stream, directory, fd)
        except OSError as exc:
            raise StoreError(f"cannot delete stream {key}: {exc}") from exc

    async def append(self, key: str, fragment: Fragment) -> None:
        await self.append_batch(key, [fragment])

    async def append_batch(self, key: str, fragments: Sequence[Fragment]) -> None:
        """Write and fdatasync in a worker thread, several fragments per fdatasync.

        The index learns of them only then. Even if our task is cancelled, the lock
        is held until the write is over, so the next append never races a write
        still under way.
        """
        stream = self._streams.get(key)
        if stream is None:
            raise UnknownStreamError(f"no stream {key}")
        async with stream.lock:
            if stream.deleted:
                raise UnknownStreamError(f"stream {key} was deleted")
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
                job = asyncio.ensure_future(
                    asyncio.to_thread(stream.writer.append_batch, fragments)
                )
                locations, cancelled = await _settle(job)
                for fragment, loc in zip(fragments, locations, strict=False):
                    stream.index.add(fragment.meta, loc)
                fragments = fragments[len(locations) :]
        if cancelled:
            raise asyncio.CancelledError

    def index(self, key: str) -> list[FragmentMeta]:
        stream = self._streams.get(key)
        return stream.index.metas if stream is not None else []

    def expired(self, key: str) -> FragmentMeta | None:
        stream = self._streams.get(key)
        return stream.index.expired if stream is not None else None

    async def read(self, key: str, meta: FragmentMeta) -> Fragment:
        return (await self.read_batch(key, [meta]))[0]

    async def read_batch(self, key: str, metas: Sequence[FragmentMeta]) -> list[Fragment]:
        """Read with pread in one worker-thread trip, checking each record's CRC and identity.

        A segment deleted (or replaced) under us means the fragment is gone.
        """
        stream = self._streams.get(key)
        jobs: list[tuple[str, Location, FragmentMeta]] = []
        for meta in metas:
            found = stream.index.locate(meta) if stream is not None else None
            if stream is None or found is None:
                raise FragmentGone(f"fragment {meta.number} is gone")
            stored, loc = found
            jobs.append((os.path.join(stream.directory, segment_name(loc.segment)), loc, stored))
        try:
            parts = await asyncio.to_thread(_read_all, jobs)
        except (FileNotFoundError, LookupError):
            raise FragmentGone(f"a fragment from {metas[0].number} on is gone") from None
        except OSError as exc:
            raise StoreError(f"cannot read fragment {metas[0].number}: {exc}") from exc
        return [
            Fragment(stored, header, body)
            for (_, _, stored), (header, body) in zip(jobs, parts, strict=True)
        ]

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
        """Rebuild one stream's index: trust sealed segments, verify the last one."""
        info = _load_info(os.path.join(directory, INFO_FILE))
        if info.key != os.path.basename(directory):
            raise StoreError(f"{directory} holds stream {info.key}")
        stream = _Stream(info, directory, SegmentWriter(directory, self.segment_bytes))
        segments = sorted(_segments(directory))
        for i, segment in enumerate(segments):
            path = os.path.join(directory, segment_name(segment))
            last = i == len(segments) - 1
            found = scan(path, segment, verify=last)
            for meta, loc in found.records:
                stream.index.add(meta, loc)
            if last:
                _cut_tail(stream, path, segment, found)
            elif not found.records:
                os.unlink(path)
        return stream


def _read_all(jobs: list[tuple[str, Location, FragmentMeta]]) -> list[tuple[bytes, bytes]]:
    return [read_fragment(path, loc, meta) for path, loc, meta in jobs]


def _segments(directory: str) -> Iterable[int]:
    """The stream's segment seqs; leftover temp files are removed on the way."""
    for name in os.listdir(directory):
        if name.endswith(_TMP):
            os.unlink(os.path.join(directory, name))
        elif (segment := parse_segment_name(name)) is not None:
            yield segment


def _cut_tail(stream: _Stream, path: str, segment: int, found: Scan) -> None:
    """Truncate what a crash left after the last good record; it was never acknowledged."""
    if found.end < found.size:
        log.warning(
            "cutting a torn segment tail",
            extra={"path": path, "problem": found.problem, "bytes": found.size - found.end},
        )
    if not found.records:
        os.unlink(path)
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
        try:
            os.unlink(os.path.join(directory, segment_name(segment)))
        except FileNotFoundError:
            pass
        fsync_dir(directory)


def _load_info(path: str) -> StreamInfo:
    """StreamInfo from JSON; unknown fields (a newer version's) are ignored."""
    try:
        with open(path, "rb") as f:
            raw = json.load(f)
        known = {f.name for f in dataclasses.fields(StreamInfo)}
        return StreamInfo(**{k: v for k, v in raw.items() if k in known})
    except (ValueError, TypeError, AttributeError) as exc:
        raise StoreError(f"{path} is not a stream record: {exc}") from exc
