"""One stream's in-memory index: fragment metadata, where each fragment lives, its segments.

Seqs in a stream increase (appends must be above the last, recovery checks it),
with gaps where a fragment was numbered but never stored; lookups bisect on seq.
"""

from __future__ import annotations

import bisect

from openkvs.model import FragmentMeta
from openkvs.store.log import Location


def _seq(meta: FragmentMeta) -> int:
    return meta.seq


def _server_ms(meta: FragmentMeta) -> int:
    return meta.server_ms


class StreamIndex:
    """``metas`` is what ``Store.index`` hands out; ``locations`` runs parallel to it.

    ``expired`` is the newest fragment retention cut away (since open): a reader
    whose next seq is at or below it fell behind retention.
    """

    __slots__ = ("metas", "locations", "segments", "expired")

    def __init__(self) -> None:
        self.metas: list[FragmentMeta] = []
        self.locations: list[Location] = []
        self.segments: list[int] = []
        self.expired: FragmentMeta | None = None

    @property
    def next_seq(self) -> int | None:
        """The lowest seq the next append may have; None while the index is empty (any seq)."""
        return self.metas[-1].seq + 1 if self.metas else None

    def add(self, meta: FragmentMeta, loc: Location) -> None:
        if not self.segments or self.segments[-1] != loc.segment:
            self.segments.append(loc.segment)
        self.metas.append(meta)
        self.locations.append(loc)

    def locate(self, meta: FragmentMeta) -> tuple[FragmentMeta, Location] | None:
        """The stored twin of ``meta`` and where it is, or None if it is not stored (any more)."""
        if not self.metas:
            return None
        i = bisect.bisect_left(self.metas, meta.seq, key=_seq)
        if i < len(self.metas) and self.metas[i].number == meta.number:
            return self.metas[i], self.locations[i]
        return None

    def clear(self) -> list[int]:
        """Forget everything (in place: ``metas`` is a live view); return the segments."""
        unused = self.segments[:]
        self.metas.clear()
        self.locations.clear()
        self.segments.clear()
        return unused

    def cut_before(self, server_ms: int) -> tuple[int, list[int]]:
        """Drop fragments older than ``server_ms``; return how many, and the segments now unused.

        A segment is unused when none of its fragments remains; the newest one
        only when the index is left empty.
        """
        cut = bisect.bisect_left(self.metas, server_ms, key=_server_ms)
        if cut == 0:
            return 0, []
        self.expired = self.metas[cut - 1]
        del self.metas[:cut]
        del self.locations[:cut]
        if self.locations:
            first_kept = bisect.bisect_left(self.segments, self.locations[0].segment)
        else:
            first_kept = len(self.segments)
        unused = self.segments[:first_kept]
        del self.segments[:first_kept]
        return cut, unused
