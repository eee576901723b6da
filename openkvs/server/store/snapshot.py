"""Index snapshots: each segment's index rows on disk, so a restart need not scan records.

``<first-seq:020d>.idx`` sits beside its segment: an 8-byte magic, then blocks
appended as rows are acknowledged. A block is a 20-byte head (magic, the number
of rows before it, its row count, payload length, CRC-32C of the payload) and a
payload: the header refs the block adds, then the rows' columns (``index.INT_COLUMNS`` as int64, header ids as
uint32, flags as uint8, 20-byte fragment numbers), then the segment offset the
rows end at.

A snapshot is a cache, never the truth: blocks are written (not fsynced) only
for records already fdatasynced, and recovery stops at the first block that
does not verify, or that does not follow on from the rows before it (a block whose
write failed leaves such a hole), and scans the segment from there. So a crash or
a failed write costs a scan of the unindexed tail, nothing more.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from array import array

import google_crc32c

from openkvs.server.store.index import INT_COLUMNS, NUMBER_BYTES, HeaderRef, SegmentIndex
from openkvs.wire.mkv.elements import TrackEntry

MAGIC = b"KVSIDX2\n"
BLOCK = struct.Struct("<4sIIII")
BLOCK_MAGIC = b"IBLK"
_REF = struct.Struct("<qII")
_END = struct.Struct("<q")


def pending_block(index: SegmentIndex) -> bytes | None:
    """The rows (and header refs) not yet in the snapshot, as one block; None if none.

    They count as written from now on: if the write fails, ``unwritten`` says so.
    """
    first, count = index.indexed, len(index.seqs) - index.indexed
    if count <= 0:
        return None
    refs = index.header_refs[index.indexed_headers :]
    parts = [struct.pack("<I", len(refs))]
    for ref in refs:
        tracks = json.dumps([_track(t) for t in ref.tracks]).encode()
        parts += [_REF.pack(ref.at, ref.length, len(tracks)), tracks]
    for name in INT_COLUMNS:
        parts.append(getattr(index, name)[first:].tobytes())
    parts.append(index.headers[first:].tobytes())
    parts.append(index.flags[first:].tobytes())
    parts.append(bytes(index.numbers[first * NUMBER_BYTES :]))
    parts.append(_END.pack(index.end))
    payload = b"".join(parts)
    index.indexed, index.indexed_headers = len(index.seqs), len(index.header_refs)
    crc = google_crc32c.value(payload)
    return BLOCK.pack(BLOCK_MAGIC, first, count, len(payload), crc) + payload


def unwritten(index: SegmentIndex) -> None:
    """A block of ``index`` failed to be written (its file is gone): all rows are due again."""
    index.indexed = index.indexed_headers = 0


def write_blocks(path: str, blocks: list[bytes]) -> bool:
    """Append blocks to a snapshot (creating it); a cache, so no fsync.

    On failure the file is removed (a later block must not follow a missing one)
    and the answer is False.
    """
    try:
        fresh = not os.path.exists(path)
        with open(path, "ab") as f:
            if fresh:
                f.write(MAGIC)
            f.write(b"".join(blocks))
        return True
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        return False


def write_whole(path: str, index: SegmentIndex) -> None:
    """Replace a snapshot with one of every row (after a recovery scan)."""
    index.indexed = index.indexed_headers = 0
    block = pending_block(index)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(MAGIC + (block or b""))
    os.replace(tmp, path)


def load(path: str, segment: int) -> SegmentIndex:
    """The rows of every block that verifies, up to the first that does not.

    Whatever follows that block is cut from the file, so blocks appended later
    are not hidden behind it.
    """
    index = SegmentIndex(segment)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return index
    if not data.startswith(MAGIC):
        os.unlink(path)
        return index
    view, pos = memoryview(data), len(MAGIC)
    while pos + BLOCK.size <= len(data):
        magic, first, count, length, crc = BLOCK.unpack_from(data, pos)
        payload = view[pos + BLOCK.size : pos + BLOCK.size + length]
        if magic != BLOCK_MAGIC or len(payload) != length or first != len(index.seqs):
            break
        if google_crc32c.value(bytes(payload)) != crc:
            break
        try:
            _apply(index, payload, count)
        except (ValueError, struct.error, IndexError):
            break
        pos += BLOCK.size + length
    if pos < len(data):
        os.truncate(path, pos)
    index.indexed, index.indexed_headers = len(index.seqs), len(index.header_refs)
    return index


def _apply(index: SegmentIndex, payload: memoryview, count: int) -> None:
    (refs,) = struct.unpack_from("<I", payload, 0)
    pos, new_refs = 4, []
    for _ in range(refs):
        at, length, size = _REF.unpack_from(payload, pos)
        pos += _REF.size
        tracks = tuple(_entry(t) for t in json.loads(bytes(payload[pos : pos + size])))
        new_refs.append(HeaderRef(at, length, tracks))
        pos += size
    columns: list[tuple[array[int], int]] = [(getattr(index, n), 8) for n in INT_COLUMNS]
    columns += [(index.headers, 4), (index.flags, 1)]
    staged = []
    for column, width in columns:
        staged.append((column, payload[pos : pos + count * width]))
        pos += count * width
    numbers = payload[pos : pos + count * NUMBER_BYTES]
    pos += count * NUMBER_BYTES
    (end,) = _END.unpack_from(payload, pos)
    if pos + _END.size != len(payload) or len(numbers) != count * NUMBER_BYTES:
        raise ValueError("a block of the wrong length")
    headers = array("I", staged[-2][1])
    if count and max(headers) >= len(index.header_refs) + len(new_refs):
        raise ValueError("a row names a header the snapshot does not have")
    index.header_refs += new_refs
    for column, raw in staged:
        column.frombytes(raw)
    index.numbers += numbers
    index.end = end


def _track(entry: TrackEntry) -> list[object]:
    return [
        entry.number,
        entry.codec_id,
        entry.codec_private.hex(),
        entry.track_type,
        entry.width,
        entry.height,
        entry.sample_rate,
        entry.channels,
    ]


def _entry(raw: list[object]) -> TrackEntry:
    """A track as ``_track`` wrote it; snapshots from before picture sizes have four fields."""
    number, codec_id, private, kind, *sizes = raw
    return TrackEntry(
        int(number),  # type: ignore[call-overload]
        str(codec_id),
        bytes.fromhex(str(private)),
        int(kind),  # type: ignore[call-overload]
        *(int(n) for n in sizes),  # type: ignore[call-overload]
    )
