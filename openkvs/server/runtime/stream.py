"""One stream's runtime: the one owner of its live state.

Who publishes, the fragment being received, the fragments held in memory,
which are durable, the numbering, the readers and the followers at the live
edge change only through the methods here, on the event loop, so no two
sessions can interleave half-done changes. A publisher's calls carry its
``Publisher`` handle; a replaced one's calls raise ``Replaced`` and change nothing.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from openkvs.clock import now_ms
from openkvs.server.errors import ConnectionLimitExceededException
from openkvs.server.model import Fragment, FragmentMeta, FragmentNumber, StreamInfo
from openkvs.server.runtime.buffers import LiveBuffers
from openkvs.server.store.base import ReadOutcome, Store, StoreError, WriterClaim
from openkvs.wire import error_ids
from openkvs.wire.fragmenter import FragmentBegun, FragmentDone

TICK_S = 0.25
WATCH_S = 1.0
KEEP_STORED = 8
KEEP_STORED_BYTES = 64 << 20
"""Stored fragments a stream with retention keeps in memory too, for NOW readers."""


@dataclass(frozen=True, slots=True)
class BufferLimits:
    """How much a stream without retention keeps in memory (AWS: 5 minutes, 200 MB)."""

    seconds: float = 300.0
    bytes: int = 200_000_000


class Replaced(Exception):
    """A call from a publisher that a newer one replaced, or that the stream closed."""


class Refused(Exception):
    """A fragment the stream will not take; ``error_id`` is the ACK's ErrorId."""

    def __init__(self, message: str, error_id: int) -> None:
        super().__init__(message)
        self.error_id = error_id


@dataclass(eq=False)
class Publisher:
    """One PutMedia session's hold on the stream.

    ``kick(error_id)`` tells the session to stop reading (None: replaced by a
    newer one, nothing to say); the session sets ``drained`` once what it
    received is stored or given up.
    """

    generation: int
    kick: Callable[[int | None], None]
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    claim: WriterClaim | None = None


@dataclass(slots=True)
class Begin:
    """What a fragment's first bytes turned out to be: new, or a replay of ``original``.

    ``durable`` resolves True once the original is stored (at once if it is), False
    if storing it failed.
    """

    number: FragmentNumber
    original: FragmentMeta | None = None
    durable: asyncio.Future[bool] | None = None


@dataclass(eq=False)
class GrowingFragment:
    """The fragment a PutMedia is receiving now, for readers at the live edge.

    ``parts`` grows as elements arrive (the fragmenter's own list for this
    fragment); ``complete`` means it is final and held in memory; ``failed``
    means it will never be stored (the producer went away or was refused).
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

    def follow(self, stream: StreamRuntime) -> bool:
        """Send what is new; False to stop following (the reader's own task takes over)."""
        ...


def _seq(item: Fragment) -> int:
    return item.meta.seq


class StreamRuntime:
    """The live state of one stream; ``Runtimes`` makes one per stream and closes it."""

    def __init__(
        self, info: StreamInfo, store: Store, buffers: LiveBuffers, limits: BufferLimits
    ) -> None:
        self.info = info
        self.store = store
        self.buffers = buffers
        self.limits = limits
        # Numbering must rise above whatever this stream handed out before a restart,
        # even with nothing stored (no retention, or all expired): start from the clock.
        self._next_seq = time.time_ns() // 1000
        self.last_completed_seq = -1
        self._last_start_ms = -1  # of the newest fragment received (and not failed)
        self._last_stored_start_ms = -1
        self._generation = 0
        self._publisher: Publisher | None = None
        self._draining: list[Publisher] = []
        self.growing: GrowingFragment | None = None
        self._live: deque[Fragment] = deque()  # completed fragments in memory, in seq order
        self._live_bytes = 0
        self._durable: dict[int, asyncio.Future[bool]] = {}  # seq -> stored?, while pending
        self._stored_seq = -1
        self.readers = 0
        self.get_calls: deque[float] = deque()
        self.put_calls: deque[float] = deque()
        self.closed = False
        self.followers: list[Follower] = []
        self._ticker: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def load(self) -> None:
        """Learn the newest stored fragment: numbering and the 4004 rule go on from it."""
        last = await self.store.last_fragment(self.info.key)
        if last is not None:
            self._next_seq = last.seq + 1
            self._learn(last)

    async def catch_up(self) -> None:
        """With a store other nodes write, learn what they stored while no publisher is here:
        the live edge, numbering and the 4004 rule move up to the newest stored fragment."""
        if self.store.shared and self._publisher is None:
            last = await self.store.last_fragment(self.info.key)
            if last is not None and last.seq > self.last_completed_seq:
                self._learn(last)
                self.notify()

    def _learn(self, last: FragmentMeta) -> None:
        self._next_seq = max(self._next_seq, last.seq + 1)
        self.last_completed_seq = max(self.last_completed_seq, last.seq)
        self._last_start_ms = max(self._last_start_ms, last.producer_ms)
        self._last_stored_start_ms = max(self._last_stored_start_ms, last.producer_ms)
        self._stored_seq = max(self._stored_seq, last.seq)

    @property
    def persistent(self) -> bool:
        return self.info.data_retention_hours > 0

    # ---- the publisher ---------------------------------------------------------------------

    def claim_publisher(self, kick: Callable[[int | None], None]) -> Publisher:
        """Newest wins, in one step: the current publisher is replaced and told to stop."""
        if self.closed:
            raise Replaced("the stream is closed")
        self._generation += 1
        publisher = Publisher(self._generation, kick)
        old, self._publisher = self._publisher, publisher
        if old is not None:
            self._draining.append(old)
            self._fail_growing()  # nothing the old one reads from now on counts
            old.kick(None)
        return publisher

    async def take_turn(self, publisher: Publisher, timeout: float) -> WriterClaim:
        """Wait (up to ``timeout``) for the replaced publishers to store what they received,
        then claim the store's writer; Replaced if a newer one came meanwhile."""
        waiting = [p.drained.wait() for p in self._draining if not p.drained.is_set()]
        if waiting:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.gather(*waiting)
        self._check(publisher)
        claim = await self.store.claim_writer(self.info.key)
        last = await self.store.last_fragment(self.info.key)  # another node's, perhaps
        self._check(publisher)
        self._next_seq = max(self._next_seq, claim.next_seq)
        if last is not None:
            self._learn(last)
        publisher.claim = claim
        return claim

    def release_publisher(self, publisher: Publisher) -> None:
        """The session is over: its fragments are stored or given up."""
        self.fail_fragment(publisher)
        if self._publisher is publisher:
            self._publisher = None
        publisher.drained.set()
        self._draining = [p for p in self._draining if not p.drained.is_set()]

    def is_current(self, publisher: Publisher) -> bool:
        return self._publisher is publisher and not self.closed

    def _check(self, publisher: Publisher) -> None:
        if not self.is_current(publisher):
            raise Replaced("a newer PutMedia took over" if not self.closed else "stream closed")

    # ---- fragments -------------------------------------------------------------------------

    async def begin_fragment(self, publisher: Publisher, event: FragmentBegun) -> Begin:
        """Number a new fragment (and show it to live readers), or recognise a replay.

        AWS's rule (FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS): a fragment may not start
        before the previous one started; its frames may overlap the previous one's
        tail on another track. One that starts exactly where a stored (or pending)
        fragment started is that fragment sent again after a reconnect.
        """
        self._check(publisher)
        if event.producer_ms > self._last_start_ms:
            return Begin(self._start_growing(event))
        original = self._pending_with_start(event.producer_ms)
        if original is None:
            found = await self.store.fragments_between(
                self.info.key, event.producer_ms, event.producer_ms, producer=True, limit=1
            )
            self._check(publisher)
            original = found[0] if found else None
        if original is None:
            raise Refused(
                "the fragment starts before the previous fragment",
                error_ids.TIMECODE_LESSER_THAN_PREVIOUS,
            )
        durable = self._durable.get(original.seq)
        if durable is None:
            durable = asyncio.get_running_loop().create_future()
            durable.set_result(True)
        return Begin(original.number, original, durable)

    def _pending_with_start(self, producer_ms: int) -> FragmentMeta | None:
        for fragment in reversed(self._live):
            if fragment.meta.producer_ms == producer_ms:
                return fragment.meta
            if fragment.meta.producer_ms < producer_ms:
                break
        return None

    def _start_growing(self, event: FragmentBegun) -> FragmentNumber:
        number = FragmentNumber.make(self._next_seq, event.server_ms)
        self._next_seq += 1
        self.growing = GrowingFragment(
            number.seq, str(number), event.server_ms, event.producer_ms, event.header, event.parts
        )
        self.notify()
        return number

    def grow_fragment(self, publisher: Publisher) -> None:
        """More of the growing fragment arrived: live readers get it now."""
        if self.growing is not None and self.is_current(publisher):
            self.notify()

    def complete_fragment(
        self, publisher: Publisher, number: FragmentNumber, event: FragmentDone, notify: bool = True
    ) -> Fragment:
        """The fragment is whole: held in memory for readers, pending storage if kept.

        ``notify=False`` leaves telling the followers to the caller (``notify()``), so
        that the producer's RECEIVED need not wait behind a thousand readers' writes.
        """
        self._check(publisher)
        meta = FragmentMeta(
            number,
            event.server_ms,
            event.producer_ms,
            event.duration_ms,
            event.size,
            event.keyframe,
            event.tracks,
        )
        fragment = Fragment(meta, event.header, event.parts)
        growing, self.growing = self.growing, None
        if growing is not None:
            growing.complete = True
        self._live.append(fragment)
        self._live_bytes += meta.size
        self.last_completed_seq = max(self.last_completed_seq, meta.seq)
        self._last_start_ms = meta.producer_ms
        if self.persistent:
            self._durable[meta.seq] = asyncio.get_running_loop().create_future()
        else:
            self.buffers.count(self, fragment)
        self.trim(now_ms())
        if notify:
            self.notify()
        return fragment

    def fail_fragment(self, publisher: Publisher) -> None:
        """The fragment being received will never be complete (refused, or the body ended)."""
        if self._publisher is publisher and self.growing is not None:
            self._fail_growing()

    def _fail_growing(self) -> None:
        growing, self.growing = self.growing, None
        if growing is not None:
            growing.failed = True
            self.notify()

    def stored(self, fragments: Sequence[Fragment]) -> None:
        """The store made these durable: PERSISTED may go out, replays of them too."""
        for fragment in fragments:
            meta = fragment.meta
            self._resolve(meta.seq, True)
            self._stored_seq = max(self._stored_seq, meta.seq)
            self._last_stored_start_ms = max(self._last_stored_start_ms, meta.producer_ms)
            if self._holds(fragment):
                self.buffers.count(self, fragment)
        self.trim(now_ms())

    def store_failed(self, fragments: Sequence[Fragment]) -> None:
        """Storing these failed (they and every later one of the session are given up).

        They leave memory, replays waiting on them learn it, and the producer may
        send them again: their timecodes must read as new, not as a 4004.
        """
        for fragment in fragments:
            self._resolve(fragment.meta.seq, False)
            self._drop(fragment)
        self._last_start_ms = max(
            [self._last_stored_start_ms, *(f.meta.producer_ms for f in self._live)]
        )

    def _resolve(self, seq: int, stored: bool) -> None:
        future = self._durable.pop(seq, None)
        if future is not None and not future.done():
            future.set_result(stored)

    # ---- memory ----------------------------------------------------------------------------

    def trim(self, now_ms: int) -> None:
        """Bound memory: a few stored fragments, or the live buffer of a stream without
        retention (by age and bytes; also called by a timer, not only on arrival)."""
        live = self._live
        if self.persistent:
            while (
                len(live) > 1
                and live[0].meta.seq <= self._stored_seq
                and (len(live) > KEEP_STORED or self._live_bytes > KEEP_STORED_BYTES)
            ):
                self._drop(live[0])
        else:
            max_age_ms = self.limits.seconds * 1000
            while live and (
                self._live_bytes > self.limits.bytes or now_ms - live[0].meta.server_ms > max_age_ms
            ):
                self._drop(live[0])

    def evict(self, fragment: Fragment) -> bool:
        """The process-wide cap takes ``fragment`` (``LiveBuffers``)."""
        if not self._holds(fragment):
            return False
        self._remove(fragment)
        return True

    def drop_older(self, server_ms: int) -> None:
        """Retention deleted the stored fragments before ``server_ms``: their copies go too
        (for a stream without retention memory is the only copy: it ages by ``trim``)."""
        live = self._live
        while live and live[0].meta.server_ms < server_ms and live[0].meta.seq <= self._stored_seq:
            self._drop(live[0])

    def _in_memory(self, seq: int) -> Fragment | None:
        """The completed fragment ``seq`` if memory still holds it."""
        i = bisect.bisect_left(self._live, seq, key=_seq)
        return self._live[i] if i < len(self._live) and self._live[i].meta.seq == seq else None

    def _holds(self, fragment: Fragment) -> bool:
        return self._in_memory(fragment.meta.seq) is fragment

    def _drop(self, fragment: Fragment) -> None:
        if self._holds(fragment):
            self._remove(fragment)
            self.buffers.released(fragment)

    def _remove(self, fragment: Fragment) -> None:
        self._live.remove(fragment)
        self._live_bytes -= fragment.meta.size

    # ---- readers ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def reader(self, max_readers: int) -> Iterator[None]:
        """One GetMedia session's slot (AWS: 3 per stream)."""
        if self.readers >= max_readers:
            raise ConnectionLimitExceededException(
                f"At most {max_readers} GetMedia sessions per stream."
            )
        self.readers += 1
        try:
            yield
        finally:
            self.readers -= 1

    async def completed_from(self, seq: int, limit: int) -> list[FragmentMeta]:
        """Up to ``limit`` completed fragments from ``seq`` on, from memory and the store.

        Memory holds a contiguous run of the newest completed fragments, so when it
        starts at or before ``seq`` it answers alone.
        """
        live = self._live
        i = bisect.bisect_left(live, seq, key=_seq)
        from_memory = [live[k].meta for k in range(i, min(len(live), i + limit))]
        if live and live[0].meta.seq <= seq:
            return from_memory
        stored = await self.store.fragments_after(self.info.key, seq - 1, limit)
        merged = {meta.seq: meta for meta in stored}
        for meta in from_memory:
            merged.setdefault(meta.seq, meta)
        return [merged[s] for s in sorted(merged)[:limit]]

    async def fetch(self, metas: Sequence[FragmentMeta]) -> list[ReadOutcome]:
        """The fragments from memory where they still are, the rest in one store read."""
        found: dict[int, ReadOutcome] = {}
        for meta in metas:
            held = self._in_memory(meta.seq)
            if held is not None and held.meta.number == meta.number:
                found[meta.seq] = held
        missing = [meta for meta in metas if meta.seq not in found]
        if missing:
            for meta, outcome in zip(
                missing, await self.store.read(self.info.key, missing), strict=True
            ):
                found[meta.seq] = outcome
        return [found[meta.seq] for meta in metas]

    async def find(self, number: FragmentNumber) -> FragmentMeta | None:
        """The completed fragment with this number, in memory or stored."""
        held = self._in_memory(number.seq)
        if held is not None and held.meta.number == number:
            return held.meta
        return await self.store.fragment(self.info.key, number)

    async def completed_between(
        self, start_ms: int, end_ms: int, producer: bool, limit: int, newest_first: bool = False
    ) -> list[FragmentMeta]:
        """Up to ``limit`` completed fragments starting in ``[start_ms, end_ms]`` (producer or
        server time), stored or only received yet, in seq order (from the newest if asked).

        Playback shows a fragment as soon as it is RECEIVED, not once it is PERSISTED.
        """
        stored = await self.store.fragments_between(
            self.info.key, start_ms, end_ms, producer=producer, limit=limit,
            newest_first=newest_first,
        )
        merged = {meta.seq: meta for meta in stored}
        for fragment in self._live:
            meta = fragment.meta
            if start_ms <= meta.start_ms(producer) <= end_ms:
                merged.setdefault(meta.seq, meta)
        seqs = sorted(merged, reverse=newest_first)[:limit]
        return [merged[s] for s in sorted(seqs)]

    async def containing(self, time_ms: int, producer: bool) -> FragmentMeta | None:
        """The fragment containing ``time_ms``: the last that started at or before it.

        A time before the first fragment gives the first; a time past the end of the
        newest gives None (the reader waits for the live edge).
        """
        before = [f.meta for f in self._live if f.meta.start_ms(producer) <= time_ms][-1:]
        if not before:
            before = await self.store.fragments_between(
                self.info.key, -(1 << 62), time_ms, producer=producer, limit=1, newest_first=True
            )
        if not before:
            first = await self.completed_from(0, 1)
            return first[0] if first else None
        meta = before[0]
        newest = meta.seq >= self.last_completed_seq
        if newest and time_ms >= meta.start_ms(producer) + max(meta.duration_ms, 1):
            return None
        return meta

    def live_fragments(self) -> list[Fragment]:
        return list(self._live)

    # ---- followers -------------------------------------------------------------------------

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
        if self.store.shared and self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_store())

    async def _watch_store(self) -> None:
        """While followers wait here and another node ingests, hear of what it stores."""
        try:
            while self.followers and not self.closed:
                if self._publisher is not None:
                    await asyncio.sleep(TICK_S)
                    continue
                try:
                    if await self.store.wait_for_fragment(
                        self.info.key, self.last_completed_seq, WATCH_S
                    ):
                        await self.catch_up()
                except StoreError:
                    await asyncio.sleep(WATCH_S)
        finally:
            self._watcher = None

    def _tick(self) -> None:
        self._ticker = None
        self.notify()
        if self.followers:
            self._ticker = asyncio.get_running_loop().call_later(TICK_S, self._tick)

    # ---- closing ---------------------------------------------------------------------------

    def close(self, error_id: int | None) -> list[asyncio.Event]:
        """Stop everything (the stream is deleted, or the server stops): the publisher is
        kicked with ``error_id``, readers end. Returns what to wait for: the publishers'
        drains."""
        self.closed = True
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            self._draining.append(publisher)
            publisher.kick(error_id)
        self._fail_growing()
        self.notify()
        return [p.drained for p in self._draining if not p.drained.is_set()]
