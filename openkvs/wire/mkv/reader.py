"""A sans-I/O push parser for live Matroska streams.

Feed it bytes as they arrive; it returns events as soon as they are complete.
It descends only into Segment and Cluster (the two elements a live stream
leaves open with an unknown size); every other element is returned whole, with
its raw bytes, so callers can pass it on untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

from openkvs.wire.mkv import ebml

NEED_DATA = None
"""``next_event`` returns this when it needs more bytes."""


class MkvError(ValueError):
    """The stream is not Matroska we can accept; ``error_id`` is the KVS ErrorId to report."""

    def __init__(self, message: str, error_id: int = 4006) -> None:
        super().__init__(message)
        self.error_id = error_id


@dataclass(slots=True)
class EbmlHeader:
    raw: bytes


@dataclass(slots=True)
class SegmentStart:
    raw: bytes
    size: int


@dataclass(slots=True)
class SegmentEnd:
    pass


@dataclass(slots=True)
class ClusterStart:
    raw: bytes
    size: int


@dataclass(slots=True)
class ClusterEnd:
    pass


@dataclass(slots=True)
class Element:
    """A complete element: a Segment child (level 1) or a Cluster child (level 2)."""

    id: int
    raw: bytes
    header_len: int
    level: int

    @property
    def payload(self) -> memoryview:
        return memoryview(self.raw)[self.header_len :]


@dataclass(slots=True)
class EndOfStream:
    pass


Event = EbmlHeader | SegmentStart | SegmentEnd | ClusterStart | ClusterEnd | Element | EndOfStream

_COMPACT_AT = 1 << 16
_GATHER_AT = 1 << 18


@dataclass(slots=True)
class _Gather:
    """A large element arriving over many feeds, kept as the feeds' own bytes until whole."""

    id: int
    header_len: int
    level: int
    total: int
    parts: list[bytes]
    have: int


@dataclass(slots=True)
class _Open:
    id: int
    end: int  # absolute offset, or ebml.UNKNOWN


class MkvReader:
    """Incremental Matroska reader: ``feed(data)``, then ``next_event()`` until NEED_DATA."""

    def __init__(self, max_element_size: int = 64 << 20) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._base = 0
        self._open: list[_Open] = []
        self._eof = False
        self._done = False
        self._gather: _Gather | None = None
        self.max_element_size = max_element_size

    @property
    def offset(self) -> int:
        """Absolute stream offset of the next unread byte."""
        return self._base + self._pos

    @property
    def buffered(self) -> int:
        gathered = self._gather.have if self._gather is not None else 0
        return len(self._buf) - self._pos + gathered

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof:
            raise RuntimeError("feed after feed_eof")
        if self._gather is not None:
            self._gather.parts.append(data if isinstance(data, bytes) else bytes(data))
            self._gather.have += len(data)
            return
        # Drop what was read, so the buffer holds at most one element plus 64 KiB and a feed.
        # After a full drain the unread tail is one partial element, which the next 64 KiB
        # of progress consumes: no byte is moved twice.
        if self._pos >= _COMPACT_AT:
            del self._buf[: self._pos]
            self._base += self._pos
            self._pos = 0
        self._buf += data

    def feed_eof(self) -> None:
        self._eof = True

    def events(self) -> list[Event]:
        """Every event available now."""
        out: list[Event] = []
        while (event := self.next_event()) is not None:
            out.append(event)
        return out

    def next_event(self) -> Event | None:
        if self._done:
            return NEED_DATA
        if self._gather is not None:
            return self._gathered()
        if self._open and self._open[-1].end == self.offset:
            return self._close()
        parsed = self._peek_header()
        if parsed is None:
            return self._at_end_of_input()
        element_id, header_len, size = parsed
        top = self._open[-1] if self._open else None
        if top is None:
            return self._top_level(element_id, header_len, size)
        if top.id == ebml.CLUSTER:
            if element_id in ebml.CLUSTER_CHILDREN or top.end != ebml.UNKNOWN:
                return self._whole(element_id, header_len, size, level=2)
            return self._close()
        if element_id == ebml.CLUSTER:
            return self._enter(element_id, header_len, size, ClusterStart)
        if element_id == ebml.EBML and top.end == ebml.UNKNOWN:
            return self._close()
        if element_id in (ebml.EBML, ebml.SEGMENT):
            raise MkvError(f"element 0x{element_id:X} inside a Segment")
        if size == ebml.UNKNOWN:
            raise MkvError(f"level-1 element 0x{element_id:X} has an unknown size")
        return self._whole(element_id, header_len, size, level=1)

    def _top_level(self, element_id: int, header_len: int, size: int) -> Event | None:
        if element_id == ebml.SEGMENT:
            return self._enter(element_id, header_len, size, SegmentStart)
        if element_id == ebml.EBML:
            if size == ebml.UNKNOWN:
                raise MkvError("EBML header has an unknown size")
            got = self._take(header_len, size)
            return None if got is None else EbmlHeader(got)
        if element_id == ebml.VOID and size != ebml.UNKNOWN:
            return self._whole(element_id, header_len, size, level=0)
        raise MkvError(f"unexpected element 0x{element_id:X} at the top level")

    def _peek_header(self) -> tuple[int, int, int] | None:
        buf, pos = self._buf, self._pos
        try:
            got_id = ebml.read_id(buf, pos)
            if got_id is None:
                return None
            got_size = ebml.read_size(buf, pos + got_id[1])
        except ebml.EbmlError as exc:
            raise MkvError(str(exc)) from None
        if got_size is None:
            return None
        return got_id[0], got_id[1] + got_size[1], got_size[0]

    def _enter(self, element_id: int, header_len: int, size: int, kind: type) -> Event:
        start = self.offset
        end = ebml.UNKNOWN if size == ebml.UNKNOWN else start + header_len + size
        parent = self._open[-1] if self._open else None
        if parent and parent.end != ebml.UNKNOWN and end > parent.end:
            raise MkvError(f"element 0x{element_id:X} runs past its parent")
        raw = bytes(self._buf[self._pos : self._pos + header_len])
        self._pos += header_len
        self._open.append(_Open(element_id, end))
        return kind(raw, size)  # type: ignore[no-any-return]

    def _whole(self, element_id: int, header_len: int, size: int, level: int) -> Event | None:
        if size == ebml.UNKNOWN:
            raise MkvError(f"element 0x{element_id:X} has an unknown size")
        parent = self._open[-1] if self._open else None
        if parent and parent.end != ebml.UNKNOWN and self.offset + header_len + size > parent.end:
            raise MkvError(f"element 0x{element_id:X} runs past its parent")
        raw = self._take(header_len, size)
        if raw is None:
            if header_len + size >= _GATHER_AT and not self._eof:
                self._start_gathering(element_id, header_len, size, level)
            return self._at_end_of_input()
        return Element(element_id, raw, header_len, level)

    def _start_gathering(self, element_id: int, header_len: int, size: int, level: int) -> None:
        """Collect the rest of a large element as the feeds' own bytes, then join them once.

        Appending each feed to the buffer and slicing the element out would copy a
        large frame two or three times over; this copies it once.
        """
        with memoryview(self._buf) as view:
            first = bytes(view[self._pos :])
        del self._buf[self._pos :]
        total = header_len + size
        self._gather = _Gather(element_id, header_len, level, total, [first], len(first))

    def _gathered(self) -> Event | None:
        gather = self._gather
        assert gather is not None
        if gather.have < gather.total:
            if self._eof:
                raise MkvError(f"stream ends inside an element ({gather.have} bytes left over)")
            return NEED_DATA
        # The element ends inside some feed (not always the last: several may have come
        # since): what follows it there, and every later feed, is the buffer again.
        parts, need, whole = gather.parts, gather.total, 0
        while whole < len(parts) and need > len(parts[whole]):
            need -= len(parts[whole])
            whole += 1
        last = memoryview(parts[whole])
        raw = b"".join([*parts[:whole], last[:need]])
        rest = bytearray(last[need:])
        for later in parts[whole + 1 :]:
            rest += later
        self._gather = None
        self._base += self._pos + gather.total
        self._pos = 0
        self._buf = rest
        return Element(gather.id, raw, gather.header_len, gather.level)

    def _take(self, header_len: int, size: int) -> bytes | None:
        if size > self.max_element_size:
            raise MkvError(f"element of {size} bytes is larger than allowed", error_id=4001)
        total = header_len + size
        if len(self._buf) - self._pos < total:
            return None
        with memoryview(self._buf) as view:  # one copy, not a bytearray slice and then bytes
            raw = bytes(view[self._pos : self._pos + total])
        self._pos += total
        return raw

    def _close(self) -> Event:
        closed = self._open.pop()
        return ClusterEnd() if closed.id == ebml.CLUSTER else SegmentEnd()

    def _at_end_of_input(self) -> Event | None:
        if not self._eof:
            return NEED_DATA
        if self.buffered:
            raise MkvError(f"stream ends inside an element ({self.buffered} bytes left over)")
        if self._open:
            if self._open[-1].end != ebml.UNKNOWN:
                raise MkvError("stream ends before a sized element does")
            return self._close()
        self._done = True
        return EndOfStream()
