"""Segment files: record framing, appends, reads and recovery scans.

Pure file work on file descriptors, no asyncio: the embedded store runs these
functions in worker threads. A segment is a run of records; a record is a
12-byte head and a payload::

    head     <HBBII  magic, type, flags, payload length, CRC(head[:8] + payload)
    payload  <Q20sqqqqI  seq, fragment number (157 bits, big-endian), server_ms,
                         producer_ms, duration_ms, size, header length
             header bytes (absent when FLAG_SAME_HEADER: the previous record's
                          header in the same segment applies)
             body bytes

The CRC covers the head's own fields, so a torn or garbled length is caught too.
The type names the CRC: TYPE_FRAGMENT_CRC32C (2, written now) is CRC-32C, which
google-crc32c computes in hardware, two to three times as fast as zlib's CRC-32;
TYPE_FRAGMENT_CRC32 (1, written by earlier versions) is zlib's CRC-32, still read,
scanned and recovered, so old data dirs keep working. A resumed old segment holds
both: new records go after the old ones. Without its C extension google-crc32c
falls back to pure Python: correct, but far slower.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import google_crc32c

from openkvs.server.model import Fragment, FragmentMeta, FragmentNumber, TrackSet
from openkvs.server.store.base import StoreError
from openkvs.wire.mkv.elements import header_tracks

MAGIC = 0x4B53
TYPE_FRAGMENT_CRC32 = 1
TYPE_FRAGMENT_CRC32C = 2
FLAG_SAME_HEADER = 0x01
FLAG_KEYFRAME = 0x02  # the fragment's first frame is a keyframe (records before: unset)
HEAD = struct.Struct("<HBBII")
FRAG = struct.Struct("<Q20sqqqqI")
PREFIX = HEAD.size + FRAG.size
_RECORD = struct.Struct(HEAD.format + FRAG.format[1:])
MAX_PAYLOAD = (1 << 32) - 1
SUFFIX = ".seg"
INDEX_SUFFIX = ".idx"  # the segment's index snapshot (snapshot.py)
_NUMBER_BYTES = 20
_WINDOW = 256 << 10
_IOV_MAX = 1024  # Linux's UIO_MAXIOV
_BufferLike = bytes | bytearray | memoryview


class CorruptSegmentError(StoreError):
    """A record that cannot be a crash's torn tail is damaged (a sealed segment, a read)."""


def segment_name(first_seq: int) -> str:
    """Named by the first seq, zero-padded: lexical order is log order."""
    return f"{first_seq:020d}{SUFFIX}"


def index_name(first_seq: int) -> str:
    """The segment's index snapshot."""
    return f"{first_seq:020d}{INDEX_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    stem = name.removesuffix(SUFFIX)
    if stem == name or len(stem) != 20 or not stem.isdigit():
        return None
    return int(stem)


@dataclass(slots=True)
class Location:
    """Where one fragment lives: its record, and the record that carries its header."""

    segment: int
    offset: int
    length: int
    header_at: int
    header_len: int

    @property
    def owns_header(self) -> bool:
        return self.header_at == self.offset + PREFIX

    @property
    def body_at(self) -> int:
        return self.offset + PREFIX + (self.header_len if self.owns_header else 0)


def encode(fragment: Fragment, same_header: bool) -> tuple[list[_BufferLike], int]:
    """The buffers of one record, for a single pwritev, and its total length.

    The body's parts are passed through as they are: neither copied nor joined.
    """
    meta = fragment.meta
    header = b"" if same_header else fragment.header
    body = fragment.body_parts()
    try:
        fixed = FRAG.pack(
            meta.seq,
            meta.number.value.to_bytes(_NUMBER_BYTES, "big"),
            meta.server_ms,
            meta.producer_ms,
            meta.duration_ms,
            meta.size,
            len(header),
        )
    except (struct.error, OverflowError) as exc:
        raise StoreError(f"fragment {meta.seq} cannot be encoded: {exc}") from None
    length = FRAG.size + len(header) + sum(map(len, body))
    if length > MAX_PAYLOAD:
        raise StoreError(f"fragment {meta.seq} is too large to store ({length} bytes)")
    flags = (FLAG_SAME_HEADER if same_header else 0) | (FLAG_KEYFRAME if meta.keyframe else 0)
    head = HEAD.pack(MAGIC, TYPE_FRAGMENT_CRC32C, flags, length, 0)
    crc = _crc(head, fixed, header, *body)
    buffers: list[_BufferLike] = [head[:8] + crc.to_bytes(4, "little") + fixed]
    if header:
        buffers.append(header)
    buffers += body
    return buffers, HEAD.size + length


def write_all(fd: int, buffers: Sequence[_BufferLike], offset: int) -> None:
    """pwritev until every byte is written: a regular file may take a write in parts,
    and one call takes at most IOV_MAX buffers (a fragment may have more frames)."""
    views = [memoryview(b).cast("B") for b in buffers if len(b)]
    first = 0
    while first < len(views):
        n = os.pwritev(fd, views[first : first + _IOV_MAX], offset)
        if n <= 0:
            raise OSError(errno.EIO, "pwritev wrote nothing")
        offset += n
        while first < len(views) and n >= views[first].nbytes:
            n -= views[first].nbytes
            first += 1
        if n:
            views[first] = views[first][n:]


def fsync_dir(path: str) -> None:
    """Make a create, rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` all or nothing: tmp, fsync, rename, fsync dir."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, [data], 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))


_EXTEND: dict[int, Callable[[int, bytes], int]] = {
    TYPE_FRAGMENT_CRC32: lambda crc, data: zlib.crc32(data, crc),
    TYPE_FRAGMENT_CRC32C: google_crc32c.extend,
}


def _crc(head: bytes, *payload: bytes) -> int:
    """The CRC named by the head's type, of its fields before the CRC, then the payload parts.

    Parts must be ``bytes``: google-crc32c refuses memoryviews and bytearrays, and
    releases the GIL only for ``bytes`` of 1 MiB or more.
    """
    extend = _EXTEND[head[2]]
    crc = extend(0, head[:8])
    for part in payload:
        crc = extend(crc, part)
    return crc


def read_fragment(path: str, loc: Location, meta: FragmentMeta) -> tuple[bytes, bytes]:
    """The (header, body) of the fragment at ``loc``, its CRC checked.

    Two preads, no copy of the body. FileNotFoundError propagates (the segment
    was deleted); LookupError if the record there is not ``meta``'s any more;
    CorruptSegmentError if it is damaged.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        prefix = os.pread(fd, loc.body_at - loc.offset, loc.offset)
        body = os.pread(fd, loc.offset + loc.length - loc.body_at, loc.body_at)
        if len(prefix) + len(body) != loc.length:
            raise LookupError("the segment is shorter than the record")
        magic, rtype, _flags, length, crc = HEAD.unpack_from(prefix)
        seq, number = FRAG.unpack_from(prefix, HEAD.size)[:2]
        expected = (MAGIC, loc.length - HEAD.size, meta.seq)
        if (magic, length, seq) != expected or rtype not in _EXTEND:
            raise CorruptSegmentError(f"{path}: a damaged record head at {loc.offset}")
        if int.from_bytes(number, "big") != meta.number.value:
            raise LookupError("another fragment is at this offset")
        if _crc(prefix, prefix[HEAD.size :], body) != crc:
            raise CorruptSegmentError(f"{path}: CRC mismatch in the record at {loc.offset}")
        if loc.owns_header:
            return prefix[PREFIX:], body
        header = os.pread(fd, loc.header_len, loc.header_at)
        if len(header) != loc.header_len:
            raise LookupError("the segment is shorter than the header")
        return header, body
    finally:
        os.close(fd)


def record_seq_at(fd: int, offset: int) -> int | None:
    """The seq of the record whose head is at ``offset``, if one is there."""
    prefix = os.pread(fd, PREFIX, offset)
    if len(prefix) < PREFIX:
        return None
    magic, rtype = HEAD.unpack_from(prefix)[:2]
    if magic != MAGIC or rtype not in _EXTEND:
        return None
    return int(FRAG.unpack_from(prefix, HEAD.size)[0])


class _Window:
    """Reads a file through a sliding buffer, so small records cost no syscall each."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.start = 0
        self.buf = b""

    def at(self, offset: int, n: int) -> tuple[bytes, int]:
        """A buffer with the ``n`` bytes at ``offset`` (fewer at the end), and their position in it."""
        pos = offset - self.start
        if pos < 0 or pos + n > len(self.buf):
            self.buf, self.start, pos = os.pread(self.fd, max(n, _WINDOW), offset), offset, 0
        return self.buf, pos

    def take(self, offset: int, n: int) -> bytes:
        """The ``n`` bytes at ``offset`` as their own ``bytes`` (which a CRC-32C needs).

        Bytes larger than the window are read alone: slicing them out would copy them again.
        """
        if n > _WINDOW:
            return os.pread(self.fd, n, offset)
        buf, pos = self.at(offset, n)
        return buf[pos : pos + n]


@dataclass(slots=True)
class Scan:
    """The records of one segment, and where its valid part ends.

    A scan may start after records a snapshot already indexed: ``end``, ``next_seq``
    and the current header (``header_at``, ``header_len``, ``tracks``) say where.
    """

    records: list[tuple[FragmentMeta, Location]]
    size: int
    next_seq: int | None = None
    end: int = 0
    header_at: int = -1
    header_len: int = 0
    tracks: TrackSet = ()
    problem: str = ""


def scan(path: str, segment: int, verify: bool, start: Scan | None = None) -> Scan:
    """Index a segment's records without reading bodies (only each new header, for its tracks).

    ``verify`` (the last segment) checks every CRC and stops at the first bad
    record: what follows was never acknowledged. Otherwise (sealed segments,
    complete before the next one was created) the heads are trusted and a bad
    one raises CorruptSegmentError. Seqs must increase within the segment.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        result = start or Scan([], 0)
        result.size = os.fstat(fd).st_size
        window = _Window(fd)
        while result.end < result.size:
            problem = _next_record(window, result, segment, verify)
            if problem:
                if not verify:
                    raise CorruptSegmentError(f"{path}: {problem} at offset {result.end}")
                result.problem = problem
                break
        return result
    finally:
        os.close(fd)


def _next_record(window: _Window, result: Scan, segment: int, verify: bool) -> str:
    """Parse the record at ``result.end`` into ``result``; a problem, or ''."""
    offset = result.end
    buf, pos = window.at(offset, PREFIX)
    if len(buf) - pos < PREFIX:
        return "short record"
    (magic, rtype, flags, length, crc, seq, number, server_ms, producer_ms, duration_ms, size,
     header_len) = _RECORD.unpack_from(buf, pos)  # fmt: skip
    if magic != MAGIC or rtype not in _EXTEND:
        return "bad magic or type"
    if length < FRAG.size + header_len or offset + HEAD.size + length > result.size:
        return "record runs past the end of the file"
    if result.next_seq is not None and seq < result.next_seq:
        return f"seq {seq} where {result.next_seq} or later was due"
    same = flags & FLAG_SAME_HEADER
    if same and (result.header_at < 0 or header_len):
        return "no header to reuse"
    if verify:
        head = buf[pos : pos + HEAD.size]
        if _crc(head, window.take(offset + HEAD.size, length)) != crc:
            return "CRC mismatch"
    if not same:
        result.header_at, result.header_len = offset + PREFIX, header_len
        result.tracks = header_tracks(window.take(offset + PREFIX, header_len))
    number = FragmentNumber(int.from_bytes(number, "big"))
    keyframe = bool(flags & FLAG_KEYFRAME)
    meta = FragmentMeta(number, server_ms, producer_ms, duration_ms, size, keyframe, result.tracks)
    loc = Location(segment, offset, HEAD.size + length, result.header_at, result.header_len)
    result.records.append((meta, loc))
    result.end = offset + loc.length
    result.next_seq = seq + 1
    return ""


class SegmentWriter:
    """Appends records to a stream's newest segment.

    Used by one thread at a time (the store serializes a stream's appends).
    ``end`` is the acknowledged end of the segment: after a failed write the
    file is cut back to it, so a failed fragment never becomes readable.
    """

    def __init__(self, directory: str, segment_bytes: int) -> None:
        self.directory = directory
        self.limit = segment_bytes
        self.segment: int | None = None
        self.fd: int | None = None
        self.end = 0
        self.header: bytes | None = None
        self.header_at = -1
        self.dirty = False

    def path(self, segment: int) -> str:
        return os.path.join(self.directory, segment_name(segment))

    def resume(self, segment: int, found: Scan) -> None:
        """Continue the last segment found by recovery (the file is opened on first append)."""
        self.segment, self.end, self.header_at = segment, found.end, found.header_at
        fd = os.open(self.path(segment), os.O_RDONLY)
        try:
            self.header = os.pread(fd, found.header_len, found.header_at)
        finally:
            os.close(fd)

    def append(self, fragment: Fragment) -> Location:
        """Write and fdatasync one record; StoreError (and no trace on disk) if that fails."""
        return self.append_batch([fragment])[0]

    def append_batch(self, fragments: Sequence[Fragment]) -> list[Location]:
        """Write a prefix of ``fragments`` with one fdatasync (group commit); their Locations.

        The batch stops where the segment must roll, so a failure cuts back one file
        only: StoreError then means none of the batch is stored.
        """
        first = fragments[0].meta.seq
        try:
            self._prepare(first)
        except OSError as exc:
            raise StoreError(f"cannot append fragment {first}: {exc}") from exc
        assert self.fd is not None and self.segment is not None
        locations: list[Location] = []
        end, header, header_at = self.end, self.header, self.header_at
        try:
            for fragment in fragments:
                if locations and end >= self.limit:
                    break
                same = header is not None and header == fragment.header
                buffers, length = encode(fragment, same)
                write_all(self.fd, buffers, end)
                if not same:
                    header, header_at = fragment.header, end + PREFIX
                assert header is not None
                locations.append(Location(self.segment, end, length, header_at, len(header)))
                end += length
            os.fdatasync(self.fd)
        except OSError as exc:
            self.dirty = True
            try:
                self._cut_back()
            except OSError:
                pass  # retried before the next append
            raise StoreError(f"cannot append fragments from {first}: {exc}") from exc
        self.end, self.header, self.header_at = end, header, header_at
        return locations

    def _prepare(self, seq: int) -> None:
        """Open or roll to the segment the next record goes in."""
        if self.dirty:
            self._cut_back()
        if (
            self.segment is None
            or self.end >= self.limit
            or (self.end == 0 and self.segment != seq)
        ):
            self._roll(seq)
        elif self.fd is None:
            self.fd = os.open(self.path(self.segment), os.O_RDWR)

    def _cut_back(self) -> None:
        assert self.fd is not None
        os.ftruncate(self.fd, self.end)
        os.fdatasync(self.fd)
        self.dirty = False

    def _roll(self, seq: int) -> None:
        """Start segment ``seq``: the old one is complete (fsynced) and stays as it is."""
        old, empty = self.segment, self.end == 0
        self.close()
        if old is not None and empty:
            try:
                os.unlink(self.path(old))
            except FileNotFoundError:
                pass
        try:
            os.unlink(os.path.join(self.directory, index_name(seq)))  # a stale snapshot
        except FileNotFoundError:
            pass
        fd = os.open(self.path(seq), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            fsync_dir(self.directory)
        except OSError:
            os.close(fd)
            raise
        self.fd, self.segment = fd, seq

    def detach(self) -> int | None:
        """Forget the current segment (retention deleted it); the caller closes the fd."""
        fd = self.fd
        self.fd, self.segment, self.end, self.header, self.dirty = None, None, 0, None, False
        self.header_at = -1
        return fd

    def close(self) -> None:
        fd = self.detach()
        if fd is not None:
            os.close(fd)
