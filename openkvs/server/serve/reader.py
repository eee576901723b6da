"""Where a GetMedia read goes next, as pure decisions (sans-I/O).

A read is a cursor: the lowest seq it has not delivered. At each step it sees
the first completed fragment at or after the cursor, the fragment being
received (if any), the newest fragment retention deleted, and whether the
stream closed or the read went idle, and the table below says what to do.
Seqs skipped between the cursor and the growing fragment are gaps (numbered at
BUFFERING, never completed): nothing will ever fill them, so the read goes on
past them instead of waiting for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from openkvs.server.model import FragmentMeta


class Live(Enum):
    SERVE = "a completed fragment is due: the reader's task serves it"
    FORWARD = "forward the growing fragment as it arrives"
    WAIT = "nothing yet: wait at the live edge"
    END = "idle or closed: end the response"


@dataclass(frozen=True, slots=True)
class Serve:
    """Send ``meta`` (and the completed fragments after it)."""

    meta: FragmentMeta


@dataclass(frozen=True, slots=True)
class SkipExpired:
    """Retention deleted what was due: an in-band 4000 for ``meta``, then go on after it."""

    meta: FragmentMeta


@dataclass(frozen=True, slots=True)
class Forward:
    """Forward the growing fragment ``seq`` (skipping any gap before it)."""

    seq: int


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to send yet: follow the live edge."""


@dataclass(frozen=True, slots=True)
class End:
    """End the response cleanly."""


Step = Serve | SkipExpired | Forward | Wait | End


def next_step(
    cursor: int,
    completed: FragmentMeta | None,
    growing_seq: int | None,
    expired: FragmentMeta | None,
    closed: bool,
    idle: bool,
) -> Step:
    """The next step of a read at ``cursor``; ``completed`` is the first completed fragment
    at or after it, ``growing_seq`` the fragment being received."""
    if closed:
        return End()
    if expired is not None and cursor <= expired.seq:
        return SkipExpired(expired)
    if completed is not None and (growing_seq is None or completed.seq < growing_seq):
        return Serve(completed)
    if growing_seq is not None and growing_seq >= cursor:
        return Forward(growing_seq)
    return End() if idle else Wait()


def live_step(cursor: int, last_completed_seq: int, growing_seq: int | None, idle: bool) -> Live:
    """``next_step`` for a reader the stream writes to directly, from what it knows at once:
    any completed fragment at or after the cursor goes back to the reader's own task."""
    if last_completed_seq >= cursor:
        return Live.SERVE
    if growing_seq is not None and growing_seq >= cursor:
        return Live.FORWARD
    return Live.END if idle else Live.WAIT
