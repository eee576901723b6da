"""One stream's runtime state, owned by the event loop (one owner, no locks).

The stored index answers for persisted fragments; ``live`` holds the newest
completed fragments in memory, so NOW readers are served without touching the
disk and streams with no retention still have a live edge.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from openkvs.model import Fragment, FragmentMeta, FragmentNumber, StreamInfo
from openkvs.store.base import Store

_KEEP_PERSISTED = 8
TICK_S = 0.25
_KEEP_PERSISTED_BYTES = 64 << 20


@dataclass(eq=False)
class GrowingFragment:
    """The fragment a PutMedia is receiving now, for readers at the live edge.

    ``parts`` grows as elements arrive (the fragmenter's own list); ``complete``
    means it is final and the fragment is in ``live``; ``failed`` means it will
    never be stored (the producer went away or was refused).
    """

    seq: int
    number: str
    server_ms: int
    producer_ms: int
    header: bytes
    parts: list[bytes]
    complete: bool = False
    failed: bool = False
    wire: list[bytes] = field(default_factory=list)
    tail: tuple[int, bytes] | None = None
    due: tuple[tuple[int, int, int], bytes] | None = None
    """Bytes every reader sends alike, built once by the first that needs them: its head
    and parts as sent (``wire``), its tail (per millisecond), and the last run of them
    joined for readers at the same place (``due``)."""


class Follower(Protocol):
    """A reader at the live edge that the stream writes to directly (see ``notify``)."""

    def follow(self, state: StreamState) -> bool:
        """Send what is new; False to stop following (the reader's own task takes over)."""
        ...


def _seq(meta: FragmentMeta) -> int:
    return meta.seq


class StreamState:
    def __init__(self, info: StreamInfo, store: Store) -> None:
        self.info = info
        self.store = store
        stored = store.index(info.key)
        # With nothing stored (no retention, or all expired) numbering must still rise
        # above whatever this stream handed out before a restart: start from the clock.
        self.next_seq = stored[-1].seq + 1 if stored else time.time_ns() // 1000
        self.last_completed_seq = self.next_seq - 1
        self.last_frame_ms = stored[-1].producer_ms if stored else -1
        self.live: list[Fragment] = []
        self.live_bytes = 0
        self.publisher: object | None = None
        self.growing: GrowingFragment | None = None
        self.readers = 0
        self.get_calls: deque[float] = deque()
        self.put_calls: deque[float] = deque()
        self.closed = False
        self.followers: list[Follower] = []
        self._ticker: asyncio.TimerHandle | None = None

    @property
    def persistent(self) -> bool:
        return self.info.data_retention_hours > 0

    def allocate(self, server_ms: int) -> FragmentNumber:
        number = FragmentNumber.make(self.next_seq, server_ms)
        self.next_seq += 1
        return number

    def add_live(
        self, fragment: Fragment, now_ms: int, buffer_ms: float, buffer_bytes: int
    ) -> None:
        """Make a completed fragment visible to readers and wake them."""
        self.live.append(fragment)
        self.live_bytes += fragment.meta.size
        self.last_completed_seq = max(self.last_completed_seq, fragment.meta.seq)
        self.trim(now_ms, buffer_ms, buffer_bytes)
        self.notify()

    def drop_live(self, seq: int) -> None:
        for i, fragment in enumerate(self.live):
            if fragment.meta.seq == seq:
                self.live_bytes -= fragment.meta.size
                del self.live[i]
                return

    def trim(self, now_ms: int, buffer_ms: float, buffer_bytes: int) -> None:
        """Bound memory: the live buffer (no retention), or a few persisted fragments."""
        if self.persistent:
            stored = self.store.index(self.info.key)
            last_stored = stored[-1].seq if stored else 0
            while (
                len(self.live) > 1
                and self.live[0].meta.seq <= last_stored
                and (len(self.live) > _KEEP_PERSISTED or self.live_bytes > _KEEP_PERSISTED_BYTES)
            ):
                self._pop()
        else:
            while len(self.live) > 1 and (
                self.live_bytes > buffer_bytes or now_ms - self.live[0].meta.server_ms > buffer_ms
            ):
                self._pop()

    def _pop(self) -> None:
        self.live_bytes -= self.live[0].meta.size
        del self.live[0]

    def notify(self) -> None:
        """Something changed (a fragment began, grew, completed or failed; the stream
        closed): write what is new to every follower, in one loop.

        Waking a task per reader per frame would cost more than the write itself.
        """
        if self.followers:
            self.followers = [f for f in self.followers if f.follow(self)]

    def add_follower(self, follower: Follower) -> None:
        """Follow from now on; one timer per stream lets followers check their deadlines
        (idle timeout, hang-up) every TICK_S, instead of a timer per reader."""
        self.followers.append(follower)
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().call_later(TICK_S, self._tick)

    def _tick(self) -> None:
        self._ticker = None
        self.notify()
        if self.followers:
            self._ticker = asyncio.get_running_loop().call_later(TICK_S, self._tick)

    def close(self) -> None:
        self.closed = True
        self.notify()

    def _sources(self) -> tuple[list[FragmentMeta], list[FragmentMeta]]:
        return self.store.index(self.info.key), [f.meta for f in self.live]

    def first_from(self, seq: int) -> FragmentMeta | None:
        """The oldest fragment whose seq is ``seq`` or later."""
        found = [
            s[i] for s in self._sources() if (i := bisect.bisect_left(s, seq, key=_seq)) < len(s)
        ]
        return min(found, key=_seq) if found else None

    def earliest(self) -> FragmentMeta | None:
        return self.first_from(0)

    def find(self, number: FragmentNumber) -> FragmentMeta | None:
        meta = self.first_from(number.seq)
        return meta if meta is not None and meta.number == number else None

    def containing(self, time_ms: int, producer: bool) -> FragmentMeta | None:
        """The fragment containing ``time_ms``: the last that started at or before it.

        A time before the first fragment gives the first; a time past the end of the
        newest gives None (the reader waits for the live edge).
        """

        def start(meta: FragmentMeta) -> int:
            return meta.producer_ms if producer else meta.server_ms

        before = [
            s[i - 1]
            for s in self._sources()
            if (i := bisect.bisect_right(s, time_ms, key=start)) > 0
        ]
        if not before:
            return self.earliest()
        meta = max(before, key=_seq)
        if self.first_from(meta.seq + 1) is None and time_ms >= start(meta) + max(
            meta.duration_ms, 1
        ):
            return None
        return meta

    def with_producer_ms(self, producer_ms: int) -> FragmentMeta | None:
        meta = self.containing(producer_ms, producer=True)
        return meta if meta is not None and meta.producer_ms == producer_ms else None

    async def fetch(self, meta: FragmentMeta) -> Fragment:
        return (await self.fetch_batch([meta]))[0]

    async def fetch_batch(self, metas: list[FragmentMeta]) -> list[Fragment]:
        """The fragments from memory where they still are, the rest in one store read."""
        found: dict[int, Fragment] = {}
        for meta in metas:
            i = bisect.bisect_left(self.live, meta.seq, key=lambda f: f.meta.seq)
            if i < len(self.live) and self.live[i].meta.seq == meta.seq:
                found[meta.seq] = self.live[i]
        missing = [meta for meta in metas if meta.seq not in found]
        if missing:
            for fragment in await self.store.read_batch(self.info.key, missing):
                found[fragment.meta.seq] = fragment
        return [found[meta.seq] for meta in metas]
