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

from openkvs.wire import error_ids
from openkvs.wire.chunk import SERVICE_TAGS
from openkvs.wire.mkv import ebml
from openkvs.wire.mkv.elements import (
    BlockHeader,
    TrackEntry,
    iter_simple_tags,
    parse_timecode_scale,
    parse_tracks,
)
from openkvs.wire.mkv.reader import (
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

DEFAULT_MAX_HEADER_BYTES = 1 << 20
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
    """A Cluster's Timecode arrived: time to assign a number and ACK BUFFERING.

    ``parts`` is this fragment's own list of raw elements; it grows as they arrive
    and is final once the fragment is done, so a live reader can forward it as it
    grows (another fragment begun in the same feed has a list of its own).
    """

    timecode: int
    producer_ms: int
    server_ms: int
    header: bytes
    parts: list[bytes]


@dataclass(slots=True)
class FragmentDone:
    """A complete fragment, ready to store: ``header`` + ``body`` is a playable MKV.

    ``parts`` are the body's elements as they arrived, not joined (``body`` joins them).
    """

    timecode: int
    producer_ms: int
    server_ms: int
    duration_ms: int
    frames: int
    keyframe: bool
    """Whether the fragment's first frame is a keyframe."""
    tracks: tuple[TrackEntry, ...]
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
    header: bytes
    timecode: int | None = None
    producer_ms: int = 0
    frames: int = 0
    keyframe: bool = False
    ends: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Per track: the latest frame time and the shortest step between frames (its duration)."""
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
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    ) -> None:
        self._reader = MkvReader(max_element_size=max_fragment_bytes)
        self._relative = relative
        self._start_ms = producer_start_ms
        self._max_bytes = max_fragment_bytes
        self._max_duration = max_duration_ms
        self._max_tracks = max_tracks
        self._settle_ms = settle_ms
        self._max_header = max_header_bytes
        self._ebml_header: bytes | None = None
        self._segment_seen = False
        self._pre_cluster: list[Element] = []
        self._pre_cluster_bytes = 0
        self._headers: tuple[bytes, bytes] | None = None  # (first fragment's, later ones')
        self._scale = 1_000_000
        self._tracks: tuple[TrackEntry, ...] = ()
        self._track_numbers: set[int] | None = None
        self._open: _Open | None = None
        self._completed = 0
        self.error: FragmentError | None = None

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
            self.error = FragmentError(str(exc), error_ids.INVALID_MKV, self.timecode)
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
                self._fail("a second EBML header: one Segment per PutMedia", error_ids.INVALID_MKV)
            self._ebml_header = event.raw
        elif isinstance(event, SegmentStart):
            if self._ebml_header is None or self._segment_seen:
                self._fail("a Segment must follow one EBML header", error_ids.INVALID_MKV)
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
                self._fail(
                    f"producer tag {name} is reserved for the service", error_ids.INVALID_MKV
                )
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
                    f"{len(tracks)} tracks: at most {self._max_tracks}", error_ids.TOO_MANY_TRACKS
                )
            if not tracks:
                self._fail("Tracks declares no track", error_ids.INVALID_MKV)
            self._tracks = tuple(tracks)
            self._track_numbers = {t.number for t in tracks}
        self._pre_cluster_bytes += len(element.raw)
        if self._pre_cluster_bytes > self._max_header:
            self._fail(
                f"more than {self._max_header} bytes of Segment elements before the first Cluster",
                error_ids.FRAGMENT_TOO_LARGE,
            )
        self._pre_cluster.append(element)

    def _begin(self, event: ClusterStart, now_ms: int) -> None:
        if self._headers is None:
            if self._track_numbers is None:
                self._fail("a Cluster before the Tracks element", error_ids.INVALID_MKV)
            self._headers = self._build_headers()
        header = self._headers[0] if self._completed == 0 else self._headers[1]
        self._open = _Open(server_ms=now_ms, parts=[event.raw], size=len(event.raw), header=header)

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
                self._fail("a Cluster with two Timecodes", error_ids.INVALID_MKV)
            current.timecode = ebml.read_uint(element.payload)
            current.producer_ms = self._producer_ms(current.timecode)
            self._append(element.raw)
            out.append(
                FragmentBegun(
                    current.timecode,
                    current.producer_ms,
                    current.server_ms,
                    current.header,
                    current.parts,
                )
            )
            return
        if element.id in (ebml.SIMPLE_BLOCK, ebml.BLOCK_GROUP):
            self._frame(current, element)
        self._append(element.raw)

    def _frame(self, current: _Open, element: Element) -> None:
        if current.timecode is None:
            self._fail("a block before the Cluster Timecode", error_ids.INVALID_MKV)
        block, _ = BlockHeader.parse(element.id, element.payload)
        assert self._track_numbers is not None
        if block.track not in self._track_numbers:
            self._fail(
                f"a frame on undeclared track {block.track}", error_ids.TRACK_NUMBER_MISMATCH
            )
        frame_ms = current.producer_ms + block.timecode * self._scale // 1_000_000
        if frame_ms - current.producer_ms > self._max_duration:
            self._fail(f"fragment longer than {self._max_duration} ms", error_ids.FRAGMENT_TOO_LONG)
        if not current.frames:
            current.keyframe = block.keyframe
        latest, step = current.ends.get(block.track, (None, 0))
        if latest is not None and frame_ms != latest:  # frames may come out of order (B-frames)
            gap = abs(frame_ms - latest)
            step = min(step, gap) if step else gap
        current.ends[block.track] = (frame_ms if latest is None else max(latest, frame_ms), step)
        current.frames += 1

    def _producer_ms(self, timecode: int) -> int:
        offset = timecode * self._scale // 1_000_000
        if self._relative:
            if self._start_ms is None:
                self._fail(
                    "RELATIVE timecodes need x-amzn-producer-start-timestamp",
                    error_ids.INVALID_PRODUCER_TIMESTAMP,
                )
            offset += self._start_ms
        if offset > MAX_PRODUCER_MS:
            self._fail(
                f"producer timestamp {offset} ms is out of range",
                error_ids.INVALID_PRODUCER_TIMESTAMP,
            )
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
            self._fail(
                f"fragment larger than {self._max_bytes} bytes", error_ids.FRAGMENT_TOO_LARGE
            )

    def _cluster_end(self, now_ms: int) -> None:
        current = self._open
        if current is None or current.timecode is None:
            self._fail("a Cluster without a Timecode", error_ids.INVALID_MKV)
        current.cluster_ended_ms = now_ms

    def _complete(self) -> FragmentDone:
        current = self._open
        assert current is not None and current.timecode is not None and self._headers is not None
        if current.frames == 0:
            self._fail("a Cluster without frames", error_ids.INVALID_MKV)
        self._open = None
        end = max(latest + step for latest, step in current.ends.values())
        self._completed += 1
        return FragmentDone(
            timecode=current.timecode,
            producer_ms=current.producer_ms,
            server_ms=current.server_ms,
            duration_ms=end - current.producer_ms,
            frames=current.frames,
            keyframe=current.keyframe,
            tracks=self._tracks,
            header=current.header,
            parts=tuple(current.parts),
            size=current.size,
        )

    def _fail(self, message: str, error_id: int) -> NoReturn:
        raise FragmentError(message, error_id, self.timecode)
