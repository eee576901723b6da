"""The process-wide bound on fragments held in memory, across every stream's live buffer.

Each stream bounds its own buffer (time and bytes); this bounds their sum, so
many streams without retention cannot together exhaust memory: past the cap
the oldest evictable fragment of any stream goes first. A fragment still
waiting to be stored is not evictable (readers must find it), so it is counted
only once it is stored, or at once for a stream that stores nothing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

from openkvs.server.model import Fragment


class Holder(Protocol):
    def evict(self, fragment: Fragment) -> bool:
        """Drop ``fragment`` from memory; False if it was gone already."""
        ...


@dataclass(eq=False, slots=True)
class _Held:
    holder: Holder
    fragment: Fragment | None
    size: int


class LiveBuffers:
    def __init__(self, total_bytes: int) -> None:
        self.limit = total_bytes
        self.bytes = 0
        self._order: deque[_Held] = deque()  # oldest first, with entries released since
        self._entries: dict[int, _Held] = {}  # id(fragment) -> its entry, while held
        self._released = 0

    def count(self, holder: Holder, fragment: Fragment) -> None:
        """``fragment`` is evictable from now on; evict the oldest while over the cap."""
        entry = _Held(holder, fragment, fragment.meta.size)
        self._order.append(entry)
        self._entries[id(fragment)] = entry
        self.bytes += entry.size
        while self.bytes > self.limit and self._order:
            oldest = self._order.popleft()
            if oldest.fragment is not None:
                evicted = oldest.fragment
                self._forget(oldest)
                oldest.holder.evict(evicted)
            else:
                self._released -= 1
        self._compact()

    def released(self, fragment: Fragment) -> None:
        """The holder dropped ``fragment`` itself (trimmed, failed, deleted)."""
        entry = self._entries.get(id(fragment))
        if entry is not None:
            self._forget(entry)
            self._released += 1
            self._compact()

    def _forget(self, entry: _Held) -> None:
        assert entry.fragment is not None
        del self._entries[id(entry.fragment)]
        entry.fragment = None  # the bytes are freed now, not when the entry leaves the queue
        self.bytes -= entry.size

    def _compact(self) -> None:
        """Drop released entries once they are most of the queue (a held one at its front
        would otherwise keep every later one queued)."""
        while self._order and self._order[0].fragment is None:
            self._order.popleft()
            self._released -= 1
        if self._released > 1024 and self._released * 2 > len(self._order):
            self._order = deque(e for e in self._order if e.fragment is not None)
            self._released = 0
