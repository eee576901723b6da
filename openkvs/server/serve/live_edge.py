"""GetMedia at the live edge: the growing fragment forwarded to readers as it arrives.

A reader at the live edge gets the chunk's head as soon as the fragment begins,
each frame as the server has it, and the tail right after the fragment
completes. If the fragment is never stored, the half-sent chunk must not
stand: the connection is aborted and the reader resumes from its last complete
fragment (continuation token).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from openkvs.clock import now_ms
from openkvs.server.runtime.limits import Pacer
from openkvs.server.runtime.stream import GrowingFragment, StreamRuntime
from openkvs.server.serve.chunked import ChunkedBody, frame
from openkvs.server.serve.reader import Live, live_step
from openkvs.wire.chunk import chunk_head, chunk_tail

Delivered = Callable[[int], None]
"""Told, as each fragment's chunk goes out whole, how many ms behind now its tail says."""


def wire_pieces(growing: GrowingFragment) -> list[bytes]:
    """The chunk's head, then each part so far, framed: built once for every reader."""
    wire = growing.wire
    if not wire:
        head = chunk_head(growing.header, growing.number, growing.server_ms, growing.producer_ms)
        wire.append(frame(head))
    parts = growing.parts
    while len(wire) <= len(parts):
        wire.append(frame(parts[len(wire) - 1]))
    return wire


def wire_tail(growing: GrowingFragment) -> bytes:
    """The framed tail of a complete fragment; its millis-behind-now is per millisecond."""
    now = now_ms()
    if growing.tail is None or growing.tail[0] != now:
        growing.tail = (now, frame(chunk_tail(growing.number, growing.server_ms, now)))
    return growing.tail[1]


def millis_behind(growing: GrowingFragment) -> int:
    """What the tail last built for ``growing`` says (MILLIS_BEHIND_NOW)."""
    assert growing.tail is not None
    return growing.tail[0] - growing.server_ms


def wire_due(growing: GrowingFragment, sent: int) -> bytes:
    """What a reader that has sent ``sent`` pieces is due now, tail included, in one buffer.

    One write per reader instead of one per piece; the followers are mostly at the
    same place, so the run joined for one serves the next.
    """
    wire = wire_pieces(growing)
    tail_ms = -1
    pieces = wire[sent:]
    if growing.complete:
        pieces.append(wire_tail(growing))
        assert growing.tail is not None
        tail_ms = growing.tail[0]
    if len(pieces) <= 1:
        return pieces[0] if pieces else b""
    key = (sent, len(wire), tail_ms)
    if growing.due is None or growing.due[0] != key:
        growing.due = (key, b"".join(pieces))
    return growing.due[1]


class NotStored(ConnectionError):
    """The fragment being forwarded will never be stored: the reader's connection is cut."""


async def send_growing(
    body: ChunkedBody, growing: GrowingFragment, sent: int, pacer: Pacer, delivered: Delivered
) -> int | None:
    """Send ``growing``'s pieces from ``sent`` on, as far as they exist now; how many are sent.

    None once the fragment is complete and its tail went too. Raises NotStored
    (aborting the connection) if the fragment failed.
    """
    if body.closed:  # the reader hung up: nothing more to forward, and no reason to wait
        raise ConnectionResetError("the reader went away")
    while True:
        if growing.failed:
            body.transport.abort()
            raise NotStored("the fragment being forwarded was not stored")
        wire = wire_pieces(growing)
        if sent < len(wire):
            await body.send_framed(wire[sent])
            await pacer.spend(len(wire[sent]))
            sent += 1
        elif growing.complete:
            await body.send_framed(wire_tail(growing))
            delivered(millis_behind(growing))
            return None
        else:
            return sent


class LiveFollower:
    """A caught-up reader that the stream writes to directly, as each piece arrives.

    Resuming a task per reader per frame costs more than the write itself: with a
    thousand readers the server spent most of its CPU waking them. A reader at the
    live edge registers instead, and ``StreamRuntime.notify`` writes each new piece
    to every follower in one loop. The reader's task sleeps until the follower
    lets go: its socket is full, its pacer says wait, it went idle or away, or
    something other than its next fragment came. ``seq``, ``growing`` and
    ``sent`` then say where the task carries on.
    """

    def __init__(
        self, body: ChunkedBody, pacer: Pacer, idle_s: float, delivered: Delivered
    ) -> None:
        self.body = body
        self.pacer = pacer
        self.delivered = delivered
        self.idle_s = idle_s
        self.idle_until = time.monotonic() + idle_s
        self.seq = 0
        self.growing: GrowingFragment | None = None
        self.sent = 0
        self._released: asyncio.Future[None] | None = None

    def reset_idle(self) -> None:
        """A fragment went out: the idle timeout starts again."""
        self.idle_until = time.monotonic() + self.idle_s

    async def follow_from(
        self, stream: StreamRuntime, seq: int, growing: GrowingFragment | None, sent: int
    ) -> None:
        """Let the stream write to this reader from here until it lets go."""
        self.seq, self.growing, self.sent = seq, growing, sent
        if not self._forward(stream):
            return
        self._released = asyncio.get_running_loop().create_future()
        stream.add_follower(self)
        try:
            await self._released
        finally:
            self._released = None  # a cancelled task is dropped at the next notify

    def follow(self, stream: StreamRuntime) -> bool:
        if self._released is None:
            return False
        if self._forward(stream):
            return True
        if not self._released.done():
            self._released.set_result(None)
        return False

    def _forward(self, stream: StreamRuntime) -> bool:
        if self.body.closed or stream.closed:
            return False
        while True:
            growing = self.growing
            if growing is None:
                growing = stream.growing
                idle = time.monotonic() >= self.idle_until
                step = live_step(
                    self.seq, stream.last_completed_seq, growing.seq if growing else None, idle
                )
                if step is not Live.FORWARD or growing is None:
                    return step is Live.WAIT
                self.growing, self.sent, self.seq = growing, 0, growing.seq  # past any gap
            if growing.failed:
                return False
            due = wire_due(growing, self.sent)
            if due and not self._write(due):
                return False
            self.sent = len(growing.wire)
            if not growing.complete:
                return True
            self.delivered(millis_behind(growing))
            self.growing, self.seq = None, growing.seq + 1
            self.reset_idle()

    def _write(self, piece: bytes) -> bool:
        if not self.body.has_room() or not self.pacer.take(len(piece)):
            return False
        self.body.send_framed_now(piece)
        return True
