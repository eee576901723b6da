"""The embedded store's private cache of what each segment holds, kept as columns.

A million fragments as Python objects cost seconds to build at startup and
hundreds of bytes each; as typed arrays they cost about 80 bytes and load from
a snapshot (``snapshot.py``) with a few ``frombytes`` calls. ``FragmentMeta``
objects are made only for the rows a query returns. The header of each run of
fragments with the same producer header (and its tracks) is one row of a small
per-segment table, not a column.
"""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field

from openkvs.server.model import FragmentMeta, FragmentNumber, TrackSet
from openkvs.server.store.log import Location
from openkvs.server.store.window import limited, span

NUMBER_BYTES = 20
INT_COLUMNS = ("seqs", "server", "producer", "duration", "sizes", "offsets", "lengths")
"""The int64 columns, in snapshot order; then ``headers`` (uint32), ``flags`` (uint8), numbers."""
FLAG_KEYFRAME = 0x01


@dataclass(frozen=True, slots=True)
class HeaderRef:
    """Where one producer header lies in its segment, and the tracks it declares."""

    at: int
    length: int
    tracks: TrackSet


def _q() -> array[int]:
    return array("q")


@dataclass(eq=False)
class SegmentIndex:
    """One segment's rows; ``start`` hides the rows retention cut, ``indexed`` counts the
    rows already in the snapshot file, ``end`` is the byte after the last record."""

    segment: int
    seqs: array[int] = field(default_factory=_q)
    server: array[int] = field(default_factory=_q)
    producer: array[int] = field(default_factory=_q)
    duration: array[int] = field(default_factory=_q)
    sizes: array[int] = field(default_factory=_q)
    offsets: array[int] = field(default_factory=_q)
    lengths: array[int] = field(default_factory=_q)
    headers: array[int] = field(default_factory=lambda: array("I"))
    flags: array[int] = field(default_factory=lambda: array("B"))
    numbers: bytearray = field(default_factory=bytearray)
    header_refs: list[HeaderRef] = field(default_factory=list)
    start: int = 0
    indexed: int = 0
    indexed_headers: int = 0
    end: int = 0

    def __len__(self) -> int:
        return len(self.seqs) - self.start

    @property
    def last_seq(self) -> int:
        return self.seqs[-1]

    def add(self, meta: FragmentMeta, loc: Location) -> None:
        refs = self.header_refs
        if not refs or refs[-1].at != loc.header_at:
            refs.append(HeaderRef(loc.header_at, loc.header_len, meta.tracks))
        self.seqs.append(meta.seq)
        self.server.append(meta.server_ms)
        self.producer.append(meta.producer_ms)
        self.duration.append(meta.duration_ms)
        self.sizes.append(meta.size)
        self.offsets.append(loc.offset)
        self.lengths.append(loc.length)
        self.headers.append(len(refs) - 1)
        self.flags.append(FLAG_KEYFRAME if meta.keyframe else 0)
        self.numbers += meta.number.value.to_bytes(NUMBER_BYTES, "big")
        self.end = loc.offset + loc.length

    def meta(self, i: int) -> FragmentMeta:
        number = int.from_bytes(self.numbers[i * NUMBER_BYTES : (i + 1) * NUMBER_BYTES], "big")
        return FragmentMeta(
            FragmentNumber(number),
            self.server[i],
            self.producer[i],
            self.duration[i],
            self.sizes[i],
            bool(self.flags[i] & FLAG_KEYFRAME),
            self.header_refs[self.headers[i]].tracks,
        )

    def location(self, i: int) -> Location:
        ref = self.header_refs[self.headers[i]]
        return Location(self.segment, self.offsets[i], self.lengths[i], ref.at, ref.length)

    def row(self, seq: int) -> int | None:
        i = bisect.bisect_left(self.seqs, seq, lo=self.start)
        return i if i < len(self.seqs) and self.seqs[i] == seq else None

    def number_at(self, i: int) -> int:
        return int.from_bytes(self.numbers[i * NUMBER_BYTES : (i + 1) * NUMBER_BYTES], "big")


class StreamIndex:
    """A stream's segments, oldest first. ``expired`` is the newest fragment retention
    cut away (since open): a reader whose next seq is at or below it fell behind."""

    __slots__ = ("segments", "expired")

    def __init__(self) -> None:
        self.segments: list[SegmentIndex] = []
        self.expired: FragmentMeta | None = None

    @property
    def next_seq(self) -> int | None:
        """The lowest seq the next append may have; None while nothing is stored (any seq)."""
        last = self.last()
        return last.seq + 1 if last is not None else None

    def segment_for_append(self, segment: int) -> SegmentIndex:
        if not self.segments or self.segments[-1].segment != segment:
            self.segments.append(SegmentIndex(segment))
        return self.segments[-1]

    def last(self) -> FragmentMeta | None:
        for index in reversed(self.segments):
            if len(index):
                return index.meta(len(index.seqs) - 1)
        return None

    def after(self, seq: int, limit: int) -> list[FragmentMeta]:
        out: list[FragmentMeta] = []
        first = bisect.bisect_right(self._last_seqs(), seq)
        for index in self.segments[first:]:
            i = max(index.start, bisect.bisect_right(index.seqs, seq))
            for row in range(i, min(len(index.seqs), i + limit - len(out))):
                out.append(index.meta(row))
            if len(out) >= limit:
                break
        return out

    def between(
        self, start_ms: int, end_ms: int, producer: bool, limit: int, newest_first: bool
    ) -> list[FragmentMeta]:
        out: list[FragmentMeta] = []
        segments = reversed(self.segments) if newest_first else iter(self.segments)
        for index in segments:
            if len(out) >= limit:
                break
            times = index.producer if producer else index.server
            rows = span(times, start_ms, end_ms)
            rows = range(max(rows.start, index.start), max(rows.stop, index.start))
            out += [index.meta(i) for i in limited(rows, limit - len(out), newest_first)]
        return out

    def find(self, seq: int) -> tuple[SegmentIndex, int] | None:
        i = bisect.bisect_left(self._last_seqs(), seq)
        if i == len(self.segments):
            return None
        row = self.segments[i].row(seq)
        return (self.segments[i], row) if row is not None else None

    def locate(self, number: FragmentNumber) -> tuple[FragmentMeta, Location] | None:
        """The stored fragment with this number and where it is; None if it is not stored."""
        found = self.find(number.seq)
        if found is None or found[0].number_at(found[1]) != number.value:
            return None
        index, row = found
        return index.meta(row), index.location(row)

    def clear(self) -> list[int]:
        """Forget everything; return the segments."""
        unused = [index.segment for index in self.segments]
        self.segments.clear()
        return unused

    def cut_before(self, server_ms: int) -> tuple[int, list[int]]:
        """Drop fragments older than ``server_ms``; return how many, and the segments now unused.

        A segment is unused when none of its fragments remains; the newest one
        only when nothing is left at all.
        """
        count, unused = 0, []
        while self.segments:
            index = self.segments[0]
            cut = max(index.start, bisect.bisect_left(index.server, server_ms, lo=index.start))
            if cut == index.start:
                break
            self.expired = index.meta(cut - 1)
            count += cut - index.start
            index.start = cut
            if len(index):
                break
            unused.append(index.segment)
            self.segments.pop(0)
        return count, unused

    def _last_seqs(self) -> list[int]:
        return [index.seqs[-1] if len(index.seqs) else -1 for index in self.segments]
