"""Which fragments the server still owes an acknowledgement for (sans-I/O).

A fragment enters the outbox when it is handed to a connection and leaves it
when the server says it is safe (PERSISTED, or RECEIVED for a stream without
retention) or refuses it with an ERROR. After a broken connection everything
still in the outbox is sent again, in order; the server recognises a fragment
it already stored by its producer timestamp and acknowledges it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from openkvs.wire.acks import ERROR, Ack
from openkvs.wire.error_ids import is_server_fault


@dataclass(slots=True)
class OutgoingFragment:
    timecode: int
    producer_ms: int
    data: bytes
    number: str | None = None


@dataclass
class Summary:
    """What a Producer run achieved."""

    fragments_sent: int = 0
    fragments_acknowledged: int = 0
    bytes_sent: int = 0
    resent: int = 0
    reconnects: int = 0
    errors: list[tuple[int | None, int]] = field(default_factory=list)
    """(FragmentTimecode, ErrorId) of each fragment the server refused."""

    @property
    def fragments_errored(self) -> int:
        return len(self.errors)


class Outbox:
    """Fragments sent and not yet acknowledged, in the order they were sent."""

    def __init__(self, final_event: str = "PERSISTED") -> None:
        self.final_event = final_event
        self.summary = Summary()
        self._pending: dict[int, OutgoingFragment] = {}
        self.last_error: Ack | None = None

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        return sum(len(f.data) for f in self._pending.values())

    def sent(self, fragment: OutgoingFragment) -> None:
        """A new fragment from the input goes out for the first time."""
        self._pending[fragment.timecode] = fragment
        self.summary.fragments_sent += 1
        self.summary.bytes_sent += len(fragment.data)

    def to_resend(self) -> list[OutgoingFragment]:
        """Everything unacknowledged, for the next connection."""
        fragments = list(self._pending.values())
        self.summary.resent += len(fragments)
        self.summary.bytes_sent += sum(len(f.data) for f in fragments)
        return fragments

    def on_ack(self, ack: Ack) -> bool:
        """Apply one ACK; True when it settled a fragment (acknowledged or refused)."""
        if ack.event_type == ERROR:
            self.last_error = ack
            refused = not is_server_fault(ack.error_id or 0) and ack.timecode is not None
            if refused and self._pending.pop(ack.timecode, None) is not None:  # type: ignore[arg-type]
                self.summary.errors.append((ack.timecode, ack.error_id or 0))
                return True
            return False
        fragment = self._pending.get(ack.timecode) if ack.timecode is not None else None
        if fragment is None:
            return False
        if ack.fragment_number:
            fragment.number = ack.fragment_number
        if ack.event_type != self.final_event:
            return False
        del self._pending[ack.timecode]  # type: ignore[arg-type]
        self.summary.fragments_acknowledged += 1
        return True
