"""The PutMedia fragmenter: MKV bytes in, fragments out (sans-I/O).

One Cluster is one fragment (spec §4). A fragment completes at the earliest
signal: an ``AWS_KINESISVIDEO_END_OF_FRAGMENT`` tag, the next Cluster, a
Segment-level element other than Tags after the Cluster, the end of the body,
or ``settle_ms`` of silence after a Cluster whose end is known. Producer Tags
that follow a Cluster belong to its fragment (as in AWS's own output).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NoReturn

from openkvs.getmedia.chunk import SERVICE_TAGS
from openkvs.mkv import ebml
from openkvs.mkv.elements import (
    iter_simple_tags,
    parse_block_header,
    parse_timecode_scale,
    parse_tracks,
)
from openkvs.mkv.reader import (
    ClusterEnd,
    ClusterStart,
    EbmlHeader,
    Element,
    EndOfStream,
    MkvError,
    MkvReader,
    SegmentEnd,
    SegmentStart,
)

END_OF_FRAGMENT = "AWS_KINESISVIDEO_END_OF_FRAGMENT"

ERROR_TOO_LARGE = 4001
ERROR_TOO_LONG = 4002
ERROR_INVALID_MKV = 4006
ERROR_PRODUCER_TIMESTAMP = 4007
ERROR_TRACK_MISMATCH = 4010
ERROR_TOO_MANY_TRACKS = 4012
# Timestamps are stored as signed 64-bit ms; leave room for a fragment's duration past the start.
MAX_PRODUCER_MS = (1 << 62) - 1


class FragmentError(Exception):
    """Input the fragmenter rejects; carries the PutMedia ErrorId and the fragment's timecode."""

    def __init__(self, message: str, error_id: int, timecode: int | None = None) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.timecode = timecode


@dataclass(slots=True)
class FragmentBegun:
    """A Cluster's Timecode arrived: time to assign a number and ACK BUFFERING."""

    timecode: int
    producer_ms: int
    server_ms: int


@dataclass(slots=True)
class FragmentDone:
    """A complete fragment, ready to store: ``header`` + ``body`` is a playable MKV.

    ``parts`` are the body's elements as they arrived, not joined (``body`` joins them).
    """

    timecode: int
    producer_ms: int
    server_ms: int
    duration_ms: int
    last_frame_ms: int
    frames: int
    header: bytes
    parts: tuple[bytes, ...]
    size: int

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)


FragmenterEvent = FragmentBegun | FragmentDone


@dataclass(slots=True)
class _Open:
    """The fragment being assembled."""

    server_ms: int
    parts: list[bytes]
    size: int
    timecode: int | None = None
    producer_ms: int = 0
    frames: int = 0
    last_frame: dict[int, tuple[int, int]] = field(default_factory=dict)
    cluster_ended_ms: int | None = None


class Fragmenter:
    """Cuts one PutMedia body into fragments.

    ``producer_start_ms`` is ``x-amzn-producer-start-timestamp`` in ms, needed for
    RELATIVE timecodes. Errors raise FragmentError; the body is then unusable.
    """

    def __init__(
        self,
        relative: bool = False,
        producer_start_ms: int | None = None,
        max_fragment_bytes: int = 50_000_000,
        max_duration_ms: int = 20_000,
        max_tracks: int = 3,
        settle_ms: int = 100,
    ) -> None:
        self._reader = MkvReader(max_element_size=max_fragment_bytes)
        self._relative = relative
        self._start_ms = producer_start_ms
        self._max_bytes = max_fragment_bytes
        self._max_duration = max_duration_ms
        self._max_tracks = max_tracks
        self._settle_ms = settle_ms
        self._ebml_header: bytes | None = None
        self._segment_seen = False
        self._pre_cluster: list[Element] = []
        self._headers: tuple[bytes, bytes] | None = None  # (first fragment's, later ones')
        self._scale = 1_000_000
        self._tracks: set[int] | None = None
        self._open: _Open | None = None
        self._completed = 0
        self.error: FragmentError | None = None

    def open_fragment(self) -> tuple[bytes, list[bytes]] | None:
        """The header and the growing list of raw parts of the fragment in progress.

        The list is the fragmenter's own: it grows as elements arrive and is final
        once the fragment is done, so a live reader can forward it as it grows.
        """
        current = self._open
        if current is None or self._headers is None:
            return None
        return (self._headers[0] if self._completed == 0 else self._headers[1]), current.parts

    @property
    def timecode(self) -> int | None:
        """Timecode of the fragment in progress (for an ERROR ack), if known."""
        return self._open.timecode if self._open else None

    def feed(self, data: bytes | bytearray | memoryview, now_ms: int) -> list[FragmenterEvent]:
        """The events ``data`` completes. A rejection is kept in ``error`` after the events
        that came before it, so fragments ahead of a bad one are still acknowledged."""
        self.raise_error()
        self._reader.feed(data)
        return self._drain(now_ms)

    def feed_eof(self, now_ms: int) -> list[FragmenterEvent]:
        self.raise_error()
        self._reader.feed_eof()
        return self._drain(now_ms)

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def tick(self, now_ms: int) -> list[FragmenterEvent]:
        """Complete a fragment whose Cluster ended ``settle_ms`` ago with nothing after it."""
        deadline = self.deadline_ms()
        if deadline is not None and now_ms >= deadline and self.error is None:
            return [self._complete()]
        return []

    def deadline_ms(self) -> int | None:
        if self._open is None or self._open.cluster_ended_ms is None:
            return None
        return self._open.cluster_ended_ms + self._settle_ms

    def _drain(self, now_ms: int) -> list[FragmenterEvent]:
        out: list[FragmenterEvent] = []
        try:
            while (event := self._reader.next_event()) is not None:
                self._on_event(event, now_ms, out)
        except MkvError as exc:
            self.error = FragmentError(str(exc), exc.error_id, self.timecode)
        except ebml.EbmlError as exc:
            self.error = FragmentError(str(exc), ERROR_INVALID_MKV, self.timecode)
        except FragmentError as exc:
            self.error = exc
        if self.error is not None:
            return out
        if self._settle_ms <= 0:
            out += self.tick(now_ms)
        return out

    def _on_event(self, event: object, now_ms: int, out: list[FragmenterEvent]) -> None:
        if isinstance(event, Element):
            if event.level == 2:
                self._cluster_child(event, out)
            elif event.level == 1:
                self._segment_child(event, out)
        elif isinstance(event, ClusterStart):
            if self._open is not None:
                out.append(self._complete())
            self._begin(event, now_ms)
        elif isinstance(event, ClusterEnd):
            self._cluster_end(now_ms)
        elif isinstance(event, EbmlHeader):
            if self._ebml_header is not None:
                self._fail("a second EBML header: one Segment per PutMedia", ERROR_INVALID_MKV)
            self._ebml_header = event.raw
        elif isinstance(event, SegmentStart):
            if self._ebml_header is None or self._segment_seen:
                self._fail("a Segment must follow one EBML header", ERROR_INVALID_MKV)
            self._segment_seen = True
        elif isinstance(event, (SegmentEnd, EndOfStream)) and self._open is not None:
            out.append(self._complete())

    def _segment_child(self, element: Element, out: list[FragmenterEvent]) -> None:
        if self._headers is None:
            self._header_element(element)
            return
        current = self._open
        if current is None:
            return  # between a completed fragment and the next Cluster: nothing to attach to
        if element.id != ebml.TAGS:
            out.append(self._complete())
            return
        end_marker = other = False
        for name in self._tag_names(element):
            end_marker |= name == END_OF_FRAGMENT
            other |= name != END_OF_FRAGMENT
        if other or not end_marker:
            self._append(element.raw)
        if end_marker:
            out.append(self._complete())

    def _tag_names(self, tags: Element) -> Iterator[str]:
        """The SimpleTag names of a producer Tags element, scanned in constant memory.

        Names GetMedia writes itself are refused: stored and served, a forged
        ``AWS_KINESISVIDEO_ERROR_ID`` or ``…_SERVER_TIMESTAMP`` would mislead every reader.
        """
        for name, _ in iter_simple_tags(tags.payload):
            if name in SERVICE_TAGS:
                self._fail(f"producer tag {name} is reserved for the service", ERROR_INVALID_MKV)
            yield name

    def _header_element(self, element: Element) -> None:
        if element.id == ebml.TAGS:
            for _ in self._tag_names(element):
                pass
        if element.id == ebml.INFO:
            self._scale = parse_timecode_scale(element.payload)
        elif element.id == ebml.TRACKS:
            tracks = parse_tracks(element.payload)
            if len(tracks) > self._max_tracks:
                self._fail(
                    f"{len(tracks)} tracks: at most {self._max_tracks}", ERROR_TOO_MANY_TRACKS
                )
            if not tracks:
                self._fail("Tracks declares no track", ERROR_INVALID_MKV)
            self._tracks = {t.number for t in tracks}
        self._pre_cluster.append(element)

    def _begin(self, event: ClusterStart, now_ms: int) -> None:
        if self._headers is None:
            if self._tracks is None:
                self._fail("a Cluster before the Tracks element", ERROR_INVALID_MKV)
            self._headers = self._build_headers()
        self._open = _Open(server_ms=now_ms, parts=[event.raw], size=len(event.raw))

    def _build_headers(self) -> tuple[bytes, bytes]:
        """The bytes that make each chunk self-contained (spec §6.1, items 1-3).

        Producer Tags before the first Cluster go with the first fragment only, as
        in AWS's output; the rest of the pre-cluster elements go with every fragment.
        """
        start = (self._ebml_header or b"") + ebml.encode_id(ebml.SEGMENT) + ebml.UNKNOWN_SIZE_8
        first = start + b"".join(e.raw for e in self._pre_cluster)
        later = start + b"".join(e.raw for e in self._pre_cluster if e.id != ebml.TAGS)
        self._pre_cluster.clear()
        return first, later

    def _cluster_child(self, element: Element, out: list[FragmenterEvent]) -> None:
        current = self._open
        assert current is not None
        if element.id == ebml.CLUSTER_TIMECODE:
            if current.timecode is not None:
                self._fail("a Cluster with two Timecodes", ERROR_INVALID_MKV)
            current.timecode = ebml.read_uint(element.payload)
            current.producer_ms = self._producer_ms(current.timecode)
            self._append(element.raw)
            out.append(FragmentBegun(current.timecode, current.producer_ms, current.server_ms))
            return
        if element.id in (ebml.SIMPLE_BLOCK, ebml.BLOCK_GROUP):
            self._frame(current, element)
        self._append(element.raw)

    def _frame(self, current: _Open, element: Element) -> None:
        if current.timecode is None:
            self._fail("a block before the Cluster Timecode", ERROR_INVALID_MKV)
        payload = element.payload
        if element.id == ebml.BLOCK_GROUP:
            blocks = [data for cid, data in ebml.iter_children(payload) if cid == ebml.BLOCK]
            if not blocks:
                self._fail("a BlockGroup without a Block", ERROR_INVALID_MKV)
            payload = blocks[0]
        track, relative, _ = parse_block_header(payload)
        assert self._tracks is not None
        if track not in self._tracks:
            self._fail(f"a frame on undeclared track {track}", ERROR_TRACK_MISMATCH)
        frame_ms = current.producer_ms + relative * self._scale // 1_000_000
        if frame_ms - current.producer_ms > self._max_duration:
            self._fail(f"fragment longer than {self._max_duration} ms", ERROR_TOO_LONG)
        previous = current.last_frame.get(track)
        current.last_frame[track] = (frame_ms, frame_ms - previous[0] if previous else 0)
        current.frames += 1

    def _producer_ms(self, timecode: int) -> int:
        offset = timecode * self._scale // 1_000_000
        if self._relative:
            if self._start_ms is None:
                self._fail(
                    "RELATIVE timecodes need x-amzn-producer-start-timestamp",
                    ERROR_PRODUCER_TIMESTAMP,
                )
            offset += self._start_ms
        if offset > MAX_PRODUCER_MS:
            self._fail(f"producer timestamp {offset} ms is out of range", ERROR_PRODUCER_TIMESTAMP)
        return offset

    def _append(self, raw: bytes) -> None:
        current = self._open
        if current is None:
            return
        if current.cluster_ended_ms is not None and self._settle_ms > 0:
            current.cluster_ended_ms = None  # more arrived after the Cluster: wait for the rest
        current.parts.append(raw)
        current.size += len(raw)
        if current.size > self._max_bytes:
            self._fail(f"fragment larger than {self._max_bytes} bytes", ERROR_TOO_LARGE)

    def _cluster_end(self, now_ms: int) -> None:
        current = self._open
        if current is None or current.timecode is None:
            self._fail("a Cluster without a Timecode", ERROR_INVALID_MKV)
        current.cluster_ended_ms = now_ms

    def _complete(self) -> FragmentDone:
        current = self._open
        assert current is not None and current.timecode is not None and self._headers is not None
        if current.frames == 0:
            self._fail("a Cluster without frames", ERROR_INVALID_MKV)
        self._open = None
        ends = [ms + gap for ms, gap in current.last_frame.values()]
        last_frame = max(ms for ms, _ in current.last_frame.values())
        header = self._headers[0] if self._completed == 0 else self._headers[1]
        self._completed += 1
        return FragmentDone(
            timecode=current.timecode,
            producer_ms=current.producer_ms,
            server_ms=current.server_ms,
            duration_ms=max(ends) - current.producer_ms,
            last_frame_ms=last_frame,
            frames=current.frames,
            header=header,
            parts=tuple(current.parts),
            size=current.size,
        )

    def _fail(self, message: str, error_id: int) -> NoReturn:
        raise FragmentError(message, error_id, self.timecode)
