"""PutMedia acknowledgements (spec §4): the ACK the server writes, and a parser of the stream.

The server sends one compact JSON object per HTTP chunk, newline-terminated;
an HTTP client may merge or split chunks, so the parser scans objects out of
the byte stream itself, skipping anything before a ``{`` as the C producer SDK does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MAX_ACK_BYTES = 65536
_decoder = json.JSONDecoder()


BUFFERING, RECEIVED, PERSISTED, ERROR, IDLE = "BUFFERING", "RECEIVED", "PERSISTED", "ERROR", "IDLE"


@dataclass(frozen=True, slots=True)
class Ack:
    """One PutMedia ACK event: BUFFERING, RECEIVED, PERSISTED, ERROR or IDLE.

    Fields that are unknown are left out on the wire: the C SDK parses
    FragmentTimecode as unsigned, so an ERROR for no particular fragment has none.
    """

    event_type: str
    timecode: int | None = None
    fragment_number: str | None = None
    error_id: int | None = None

    def __bytes__(self) -> bytes:
        message: dict[str, object] = {"EventType": self.event_type}
        if self.timecode is not None:
            message["FragmentTimecode"] = self.timecode
        if self.fragment_number is not None:
            message["FragmentNumber"] = self.fragment_number
        if self.error_id is not None:
            message["ErrorId"] = self.error_id
        return json.dumps(message, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_json(cls, value: dict[str, object]) -> Ack:
        timecode, error_id = value.get("FragmentTimecode"), value.get("ErrorId")
        number = value.get("FragmentNumber")
        return cls(
            event_type=str(value.get("EventType", "")),
            timecode=int(timecode) if isinstance(timecode, int | float) else None,
            fragment_number=str(number) if number is not None else None,
            error_id=int(error_id) if isinstance(error_id, int | float) else None,
        )


class AckError(Exception):
    """The ACK stream is not what a KVS server sends."""


class AckParser:
    """Feed response bytes as they arrive; get the ACKs completed so far."""

    def __init__(self) -> None:
        self._text = ""
        self._undecoded = b""

    def feed(self, data: bytes) -> list[Ack]:
        raw = self._undecoded + data
        try:
            self._text += raw.decode()
            self._undecoded = b""
        except UnicodeDecodeError as exc:
            if exc.start < len(raw) - 3:
                raise AckError(f"ACK stream is not UTF-8 at byte {exc.start}") from exc
            self._text += raw[: exc.start].decode()
            self._undecoded = raw[exc.start :]
        acks: list[Ack] = []
        while (start := self._text.find("{")) >= 0:
            try:
                value, end = _decoder.raw_decode(self._text, start)
            except json.JSONDecodeError as exc:
                incomplete = exc.pos >= len(self._text) or exc.msg.startswith("Unterminated")
                if not incomplete:
                    raise AckError(f"an ACK that is not JSON: {exc}") from None
                if len(self._text) - start > MAX_ACK_BYTES:
                    raise AckError("an ACK larger than 64 KiB") from None
                self._text = self._text[start:]
                return acks
            if not isinstance(value, dict):
                raise AckError(f"an ACK that is not a JSON object: {value!r}")
            acks.append(Ack.from_json(value))
            self._text = self._text[end:]
        self._text = ""
        return acks
