"""A progressive MP4 (``ftyp`` + ``moov`` + ``mdat``), written in two passes.

GetClip answers with a "traditional" MP4 whose ``moov`` comes first, yet a clip
may be 100 MB: so ``ClipLayout`` first takes each fragment's frames for their
sizes and times only (the bytes are dropped), then writes the head, and the
caller reads the fragments again and sends ``sample_data`` of each in turn.
In ``mdat`` each fragment is one chunk per track, video first.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from openkvs.wire.mkv.frames import Frame
from openkvs.wire.mp4.boxes import box, full_box, header
from openkvs.wire.mp4.codecs import Codec
from openkvs.wire.mp4.fragmented import mvhd, trak
from openkvs.wire.mp4.samples import track_samples

BRANDS = b"isom" + struct.pack(">I", 0x200) + b"isomiso2avc1mp41"


@dataclass
class _Track:
    codec: Codec
    first_dts: int | None = None
    first_pts: int = 0
    durations: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    sync: list[int] = field(default_factory=list)
    chunks: list[tuple[int, int]] = field(default_factory=list)
    """(samples, bytes) of each fragment's chunk."""

    @property
    def end_dts(self) -> int:
        return (self.first_dts or 0) + sum(self.durations)


class ClipLayout:
    """The sample tables of a clip, built fragment by fragment (``add``), then ``head``."""

    def __init__(self, codecs: Sequence[Codec]) -> None:
        self.tracks = [_Track(c) for c in codecs]
        self.data_size = 0
        self.fragments = 0

    def add(self, base_ms: int, frames: Sequence[Frame]) -> None:
        """One fragment's frames (decode order), placed at ``base_ms`` plus their offsets."""
        self.fragments += 1
        for track in self.tracks:
            codec = track.codec
            run = track_samples(codec.track.number, frames, base_ms, not codec.is_video)
            if not len(run):
                track.chunks.append((0, 0))
                continue
            if track.first_dts is None:
                track.first_dts, track.first_pts = run.first_dts, run.first_pts
            elif track.durations:  # the previous sample lasts until this one starts
                last = track.end_dts - track.durations[-1]
                track.durations[-1] = max(1, run.first_dts - last)
            track.durations += run.durations
            track.offsets += run.offsets
            track.sizes += run.sizes
            first = len(track.sync) + 1
            track.sync += [first + i for i, key in enumerate(run.sync) if key]
            track.chunks.append((len(run), run.bytes))
            self.data_size += run.bytes

    def sample_data(self, frames: Sequence[Frame]) -> list[memoryview]:
        """One fragment's frames in ``mdat`` order (as ``add`` laid them out)."""
        return [f.data for t in self.tracks for f in frames if f.track == t.codec.track.number]

    @property
    def start_ms(self) -> int:
        """When the clip's first frame (of any track) is presented."""
        return min((t.first_pts for t in self.tracks if t.sizes), default=0)

    def head(self) -> bytes:
        """``ftyp`` + ``moov`` + the ``mdat`` box head; ``data_size`` bytes of samples follow."""
        prefix = box(b"ftyp", BRANDS)
        moov = self._moov(0)
        moov = self._moov(len(prefix) + len(moov) + 8)
        return prefix + moov + header(b"mdat", self.data_size)

    def _moov(self, data_start: int) -> bytes:
        offsets = self._chunk_offsets(data_start)
        start = self.start_ms
        length = max((t.end_dts - start for t in self.tracks if t.sizes), default=0)
        length = max(length, 0)
        traks = [
            self._trak(t, offsets[i], start, length) for i, t in enumerate(self.tracks) if t.sizes
        ]
        next_track = max(t.codec.track.number for t in self.tracks) + 1
        return box(b"moov", mvhd(length, next_track), *traks)

    def _chunk_offsets(self, data_start: int) -> list[list[int]]:
        per_track: list[list[int]] = [[] for _ in self.tracks]
        position = data_start
        for fragment in range(self.fragments):
            for i, track in enumerate(self.tracks):
                samples, size = track.chunks[fragment]
                if samples:
                    per_track[i].append(position)
                position += size
        return per_track

    def _trak(self, track: _Track, offsets: list[int], start: int, length: int) -> bytes:
        duration = sum(track.durations)
        late = track.first_pts - start
        reorder = track.first_pts - (track.first_dts or 0)
        edits = b""
        if late > 0 or reorder > 0:
            entries = [struct.pack(">Iii", late, -1, 0x10000)] if late > 0 else []
            entries.append(struct.pack(">Iii", duration, reorder, 0x10000))
            edits = box(
                b"edts",
                full_box(b"elst", 0, 0, struct.pack(">I", len(entries)), *entries),
            )
        tables = [_stts(track.durations)]
        if any(track.offsets):
            tables.append(_ctts(track.offsets))
        if track.codec.is_video and len(track.sync) < len(track.sizes):
            tables.append(full_box(b"stss", 0, 0, _counted(">I", track.sync)))
        tables.append(full_box(b"stsz", 0, 0, struct.pack(">II", 0, len(track.sizes)),
                               struct.pack(f">{len(track.sizes)}I", *track.sizes)))
        tables.append(_stsc([n for n, _ in track.chunks if n]))
        tables.append(full_box(b"co64", 0, 0, _counted(">Q", offsets)))
        return trak(track.codec, duration, b"".join(tables), edits, max(late, 0) + duration)


def _counted(fmt: str, values: Sequence[int]) -> bytes:
    return struct.pack(">I", len(values)) + struct.pack(f">{len(values)}{fmt[1:]}", *values)


def _runs(values: Sequence[int]) -> list[tuple[int, int]]:
    """(count, value) runs."""
    out: list[tuple[int, int]] = []
    for value in values:
        if out and out[-1][1] == value:
            out[-1] = (out[-1][0] + 1, value)
        else:
            out.append((1, value))
    return out


def _stts(durations: Sequence[int]) -> bytes:
    runs = _runs(durations)
    return full_box(b"stts", 0, 0, struct.pack(">I", len(runs)),
                    b"".join(struct.pack(">II", n, d) for n, d in runs))


def _ctts(offsets: Sequence[int]) -> bytes:
    runs = _runs(offsets)
    return full_box(b"ctts", 0, 0, struct.pack(">I", len(runs)),
                    b"".join(struct.pack(">Ii", n, o) for n, o in runs))


def _stsc(counts: Sequence[int]) -> bytes:
    entries = [(i + 1, n) for i, n in enumerate(counts) if i == 0 or counts[i - 1] != n]
    return full_box(b"stsc", 0, 0, struct.pack(">I", len(entries)),
                    b"".join(struct.pack(">III", c, n, 1) for c, n in entries))

