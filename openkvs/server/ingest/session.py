"""The PutMedia session as a state table (sans-I/O): what happened in, which ACKs out.

The asyncio shell (``putmedia.py``) reads the body, asks the stream's runtime
about each fragment and stores them; every step it takes goes through this
table, which says which ACK it owes the producer. Rule 1, as in h11: whatever
affects which ACKs a producer sees lives here. An illegal move (a bug in the
shell) raises ``SessionError``; after an ERROR nothing more is said.
"""

from __future__ import annotations

from enum import Enum

from openkvs.wire.acks import BUFFERING, ERROR, IDLE, PERSISTED, RECEIVED, Ack


class Phase(Enum):
    WAITING = "waiting for the replaced publisher to store what it received"
    BETWEEN = "between fragments"
    FRAGMENT = "receiving a new fragment"
    REPLAY = "receiving a fragment that is stored, or being stored, already"
    DRAINING = "no more body: storing what was received"
    ENDED = "nothing more to say"


class Input(Enum):
    TURN = "the stream is ours"
    BEGIN = "a new fragment began"
    BEGIN_REPLAY = "a replayed fragment began"
    DONE = "the fragment is complete"
    BODY_END = "the body ended, or a newer PutMedia replaced this one"
    REFUSED = "ERROR: refused, stream gone, or storing failed"
    FINISHED = "everything received is stored"


_LIVE = (Phase.WAITING, Phase.BETWEEN, Phase.FRAGMENT, Phase.REPLAY, Phase.DRAINING)
TRANSITIONS: dict[tuple[Phase, Input], Phase] = {
    (Phase.WAITING, Input.TURN): Phase.BETWEEN,
    (Phase.BETWEEN, Input.BEGIN): Phase.FRAGMENT,
    (Phase.BETWEEN, Input.BEGIN_REPLAY): Phase.REPLAY,
    (Phase.FRAGMENT, Input.DONE): Phase.BETWEEN,
    (Phase.REPLAY, Input.DONE): Phase.BETWEEN,
    (Phase.DRAINING, Input.FINISHED): Phase.ENDED,
    **{(phase, Input.BODY_END): Phase.DRAINING for phase in _LIVE},
    **{(phase, Input.REFUSED): Phase.ENDED for phase in _LIVE},
}


class SessionError(Exception):
    """The shell moved the session in a way the table does not allow."""


class IngestSession:
    """One PutMedia's ACK state. ``persistent``: the stream stores fragments (PERSISTED)."""

    def __init__(self, persistent: bool) -> None:
        self.phase = Phase.WAITING
        self.persistent = persistent
        self.unpersisted = 0

    def _move(self, event: Input) -> None:
        try:
            self.phase = TRANSITIONS[(self.phase, event)]
        except KeyError:
            raise SessionError(f"{event.value} while {self.phase.value}") from None

    @property
    def ended(self) -> bool:
        return self.phase is Phase.ENDED

    @property
    def reading(self) -> bool:
        return self.phase in (Phase.BETWEEN, Phase.FRAGMENT, Phase.REPLAY)

    def turn(self) -> None:
        self._move(Input.TURN)

    def begun(self, timecode: int, number: str, replay: bool) -> Ack:
        self._move(Input.BEGIN_REPLAY if replay else Input.BEGIN)
        return Ack(BUFFERING, timecode, number)

    def received(self, timecode: int, number: str) -> Ack:
        self._move(Input.DONE)
        if self.persistent:
            self.unpersisted += 1
        return Ack(RECEIVED, timecode, number)

    def persisted(self, timecode: int, number: str) -> Ack | None:
        """A received fragment (or the original of a replay) is durable."""
        if self.ended:
            return None
        self.unpersisted -= 1
        return Ack(PERSISTED, timecode, number)

    def body_ended(self) -> None:
        if not self.ended:
            self._move(Input.BODY_END)

    def finished(self) -> bool:
        """Whether the response may end now: nothing received is waiting to be stored."""
        if self.phase is Phase.DRAINING and self.unpersisted == 0:
            self._move(Input.FINISHED)
        return self.ended

    def refused(self, error_id: int, timecode: int | None, number: str | None) -> Ack | None:
        """ERROR, once: the conversation ends with it."""
        if self.ended:
            return None
        self._move(Input.REFUSED)
        return Ack(ERROR, timecode, number, error_id)

    def idle(self) -> Ack | None:
        return Ack(IDLE) if self.reading or self.phase is Phase.WAITING else None
