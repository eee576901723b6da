"""What a streaming session shows: its fragments, numbered in the order it showed them (pure).

HLS media sequence numbers and DASH segment positions must go up by one per
segment and never renumber, while KVS fragment numbers have gaps; so a session
numbers what it shows itself. A fragment older than the newest one shown is
never added later (AWS: "gaps stay"). Each entry also says whether a
discontinuity comes before it and which set of tracks (codec private data) it
carries, so a change of resolution gets a new init segment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from openkvs.server.model import FragmentMeta, TrackSet

GAP_MS = 50
"""ON_DISCONTINUITY: a gap or overlap above this between fragments is a discontinuity."""


@dataclass(frozen=True, slots=True)
class Entry:
    meta: FragmentMeta
    index: int
    """Its media sequence number: the count of entries shown before it."""
    discontinuity: bool
    discontinuities: int
    """How many entries before it start with a discontinuity: the EXT-X-DISCONTINUITY-SEQUENCE
    of a playlist that begins with it."""
    generation: int
    """Which of the session's track sets it carries (the init segment's SequenceNumber)."""


def entry_at(entries: Sequence[Entry], index: int) -> Entry | None:
    """The entry numbered ``index`` among consecutively numbered ``entries`` (a window)."""
    first = entries[0].index if entries else 0
    return entries[index - first] if first <= index < first + len(entries) else None


@dataclass
class Timeline:
    """The entries a session has shown, oldest first; ``mode`` is a DiscontinuityMode."""

    mode: str = "ALWAYS"
    keep: int = 5000
    entries: list[Entry] = field(default_factory=list)
    generations: list[TrackSet] = field(default_factory=list)
    shown: int = 0
    shown_ms: int = 0
    """The duration of every entry ever shown (trimming old entries does not lower it)."""
    broken: bool = False
    """The next entry starts with a discontinuity whatever the mode (``mark_break``)."""

    @property
    def last(self) -> Entry | None:
        return self.entries[-1] if self.entries else None

    def extend(self, metas: Iterable[FragmentMeta]) -> int:
        """Show ``metas`` (in seq order) that are newer than the newest shown; how many."""
        added = 0
        for meta in metas:
            last = self.last
            if last is not None and meta.seq <= last.meta.seq:
                continue
            self.entries.append(self._entry(meta, last))
            added += 1
        if len(self.entries) > self.keep:
            del self.entries[: len(self.entries) - self.keep]
        return added

    def window(self, count: int) -> Sequence[Entry]:
        return self.entries[-count:] if count < len(self.entries) else self.entries

    def mark_break(self) -> None:
        """What was announced of the next entry will not be it (LL-HLS parts of a fragment
        that failed): the next entry starts with a discontinuity."""
        self.broken = True

    def placement(self, producer_ms: int, tracks: TrackSet) -> tuple[bool, int]:
        """Whether the next entry, starting at ``producer_ms`` with ``tracks``, will start with
        a discontinuity, and its generation (a new set of tracks is registered now, so that
        LL-HLS can name its init segment before the entry is whole)."""
        if not self.generations or self.generations[-1] != tracks:
            self.generations.append(tracks)
        generation = len(self.generations) - 1
        last = self.last
        if self.mode == "ALWAYS" or self.broken:
            return True, generation
        if self.mode == "NEVER" or last is None:
            return False, generation
        expected = last.meta.producer_ms + last.meta.duration_ms
        gap = abs(producer_ms - expected) > GAP_MS
        return gap or generation != last.generation, generation

    def _entry(self, meta: FragmentMeta, last: Entry | None) -> Entry:
        cut, generation = self.placement(meta.producer_ms, meta.tracks)
        before = last.discontinuities + int(last.discontinuity) if last is not None else 0
        entry = Entry(meta, self.shown, cut, before, generation)
        self.shown += 1
        self.shown_ms += meta.duration_ms
        self.broken = False
        return entry
