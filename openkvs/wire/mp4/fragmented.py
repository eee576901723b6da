"""Fragmented MP4 (CMAF-style): the init segment and one media segment per KVS fragment.

Times are milliseconds (timescale 1000, Matroska's own precision), and a
segment's ``tfdt`` is its absolute decode time, so segments made one at a time
line up without the player being told of a discontinuity.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from openkvs.wire.mp4.boxes import MATRIX, box, full_box, header
from openkvs.wire.mp4.codecs import Codec
from openkvs.wire.mp4.samples import NON_SYNC, SYNC, Samples

TIMESCALE = 1000
BRANDS = b"iso6" + struct.pack(">I", 0) + b"iso6cmfcmp41"
TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800


def ftyp() -> bytes:
    return box(b"ftyp", BRANDS)


def mvhd(duration: int, next_track: int) -> bytes:
    return full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, TIMESCALE, duration),
        struct.pack(">IH", 0x10000, 0x100) + bytes(10),
        MATRIX,
        bytes(24),
        struct.pack(">I", next_track),
    )


def trak(
    codec: Codec, duration: int, sample_table: bytes, edits: bytes = b"", shown: int | None = None
) -> bytes:
    """A track box; ``sample_table`` is the stbl's content after its stsd. ``duration`` is the
    media's, ``shown`` the edit list's (the track's in the movie), when they differ."""
    t = codec.track
    video = codec.is_video
    tkhd = full_box(
        b"tkhd",
        0,
        3,  # enabled, in movie
        struct.pack(">IIIII", 0, 0, t.number, 0, duration if shown is None else shown),
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0 if video else 0x100, 0),
        MATRIX,
        struct.pack(">II", (t.width << 16) if video else 0, (t.height << 16) if video else 0),
    )
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, TIMESCALE, duration, 0x55C4, 0))
    name = b"VideoHandler\0" if video else b"SoundHandler\0"
    hdlr = full_box(b"hdlr", 0, 0, bytes(4), codec.handler, bytes(12), name)
    media_header = full_box(b"vmhd", 0, 1, bytes(8)) if video else full_box(b"smhd", 0, 0, bytes(4))
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    stsd = full_box(b"stsd", 0, 0, struct.pack(">I", 1), codec.sample_entry())
    stbl = box(b"stbl", stsd, sample_table)
    minf = box(b"minf", media_header, dinf, stbl)
    return box(b"trak", tkhd, edits, box(b"mdia", mdhd, hdlr, minf))


EMPTY_TABLES = (
    full_box(b"stts", 0, 0, bytes(4))
    + full_box(b"stsc", 0, 0, bytes(4))
    + full_box(b"stsz", 0, 0, bytes(8))
    + full_box(b"stco", 0, 0, bytes(4))
)


def init_segment(codecs: Sequence[Codec]) -> bytes:
    """``ftyp`` + ``moov`` for these tracks, with no samples (they come in ``moof``s)."""
    traks = [trak(c, 0, EMPTY_TABLES) for c in codecs]
    trex = [
        full_box(b"trex", 0, 0, struct.pack(">IIIII", c.track.number, 1, 0, 0, 0)) for c in codecs
    ]
    next_track = max(c.track.number for c in codecs) + 1
    return ftyp() + box(b"moov", mvhd(0, next_track), *traks, box(b"mvex", *trex))


def media_segment(sequence: int, runs: Sequence[Samples]) -> list[bytes | memoryview]:
    """``moof`` + ``mdat`` holding ``runs`` (one per track), as parts to write in order:
    the frames' bytes are not copied here."""
    data_size = sum(run.bytes for run in runs)
    trafs, offset = [], 0
    trun_sizes = [len(_traf(run, 0)) for run in runs]
    moof_size = 8 + 16 + sum(trun_sizes)
    for run in runs:
        trafs.append(_traf(run, moof_size + 8 + offset))
        offset += run.bytes
    moof = box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", sequence)), *trafs)
    parts: list[bytes | memoryview] = [moof, header(b"mdat", data_size)]
    for run in runs:
        parts += run.data
    return parts


def _traf(run: Samples, data_offset: int) -> bytes:
    tfhd = full_box(b"tfhd", 0, 0x020000, struct.pack(">I", run.track))  # default-base-is-moof
    tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", max(0, run.first_dts)))
    entries = b"".join(
        struct.pack(">IIIi", d, s, SYNC if k else NON_SYNC, o)
        for d, s, k, o in zip(run.durations, run.sizes, run.sync, run.offsets, strict=True)
    )
    trun = full_box(b"trun", 0, TRUN_FLAGS, struct.pack(">Ii", len(run), data_offset), entries)
    return box(b"traf", tfhd, tfdt, trun)
