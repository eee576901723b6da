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
    fragment: Fragment
    held: bool = True


class LiveBuffers:
    def __init__(self, total_bytes: int) -> None:
        self.limit = total_bytes
        self.bytes = 0
        self._order: deque[_Held] = deque()
        self._entries: dict[int, _Held] = {}  # id(fragment) -> its entry

    def count(self, holder: Holder, fragment: Fragment) -> None:
        """``fragment`` is evictable from now on; evict the oldest while over the cap."""
        entry = _Held(holder, fragment)
        self._order.append(entry)
        self._entries[id(fragment)] = entry
        self.bytes += fragment.meta.size
        while self.bytes > self.limit and self._order:
            oldest = self._order.popleft()
            if oldest.held:
                self._forget(oldest)
                oldest.holder.evict(oldest.fragment)
        while self._order and not self._order[0].held:
            self._order.popleft()

    def released(self, fragment: Fragment) -> None:
        """The holder dropped ``fragment`` itself (trimmed, failed, deleted)."""
        entry = self._entries.get(id(fragment))
        if entry is not None:
            self._forget(entry)

    def _forget(self, entry: _Held) -> None:
        entry.held = False
        self.bytes -= entry.fragment.meta.size
        del self._entries[id(entry.fragment)]
