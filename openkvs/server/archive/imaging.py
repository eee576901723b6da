"""GetImages' decoding core: still images of a stored fragment at given times.

GetImages samples every SamplingInterval (200 ms at least) and pages its answer
with NextToken, so consecutive calls sample the same fragment at later times.
Each fragment therefore keeps, in a small LRU, its demuxed video packets and an
open decoder positioned after the last packet it was fed: a later time goes on
from there, an earlier one (or one past a later keyframe) starts again from the
keyframe before it. Matroska stores presentation times only, and the decoder
hands out frames in presentation order through B-frames, so the image for a time
is the packet with the last PTS at or before it, and decoding runs until that
frame comes out.

Blocking and thread-safe: the handler calls ``sample`` through
``asyncio.to_thread``; one lock per fragment, another for the LRU.
"""

from __future__ import annotations

import bisect
import io
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
from av.container import InputContainer
from av.packet import Packet
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from openkvs.wire.mkv import ebml

NO_MEDIA = "NO_MEDIA"
MEDIA_ERROR = "MEDIA_ERROR"
FORMATS = {"JPEG": ("mjpeg", "yuvj420p"), "PNG": ("png", "rgb24")}
"""Format -> (PyAV encoder, its pixel format)."""
DEFAULT_QUALITY = 80
_NONE_SEEN = -(1 << 63)


@dataclass(frozen=True)
class FragmentMedia:
    number: str
    """The KVS fragment number: the cache key."""
    start_ms: int
    """The fragment's start (its Cluster Timecode) in the clock the times are in."""
    header: bytes
    body: bytes | tuple[bytes, ...]


class ImageSampler:
    """Encoded images of fragments at given times, keeping ``max_cached`` decoders."""

    def __init__(self, max_cached: int = 8) -> None:
        self._max_cached = max(1, max_cached)
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._decoded = 0

    @property
    def frames_decoded(self) -> int:
        """Video packets fed to a decoder so far, over all fragments."""
        return self._decoded

    def sample(
        self,
        fragment: FragmentMedia,
        times_ms: Sequence[int],
        *,
        fmt: str,
        width: int | None,
        height: int | None,
        quality: int = DEFAULT_QUALITY,
    ) -> list[bytes | str]:
        """For each time (ascending, within the fragment): the image of the last video
        frame at or before it, NO_MEDIA if there is none, or MEDIA_ERROR if there is
        media but no image can be made of it. Bad arguments raise ValueError."""
        if fmt not in FORMATS:
            raise ValueError(f"unknown image format {fmt!r}")
        if not 1 <= quality <= 100:
            raise ValueError(f"JPEG quality {quality} is not in 1..100")
        if (width is not None and width < 1) or (height is not None and height < 1):
            raise ValueError("image width and height must be positive")
        entry = self._entry(fragment.number)
        render = _Render(fmt, width, height, quality)
        with entry.lock:
            if not entry.opened:
                entry.video, entry.opened = _Video.open(fragment), True
            if entry.video is None:
                return [MEDIA_ERROR] * len(times_ms)
            before = entry.video.sent
            images = entry.video.images(fragment.start_ms, times_ms, render)
            sent = entry.video.sent - before
        with self._lock:
            self._decoded += sent
        return images

    def _entry(self, number: str) -> _Entry:
        with self._lock:
            entry = self._entries.get(number)
            if entry is None:
                entry = self._entries[number] = _Entry()
                while len(self._entries) > self._max_cached:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(number)
            return entry


@dataclass(frozen=True)
class _Render:
    fmt: str
    width: int | None
    height: int | None
    quality: int

    def __call__(self, frame: VideoFrame) -> bytes:
        codec, pix_fmt = FORMATS[self.fmt]
        width, height = image_size(frame.width, frame.height, self.width, self.height)
        image = frame.reformat(width=width, height=height, format=pix_fmt)
        encoder = av.CodecContext.create(codec, "w")
        assert isinstance(encoder, VideoCodecContext)
        encoder.width, encoder.height, encoder.pix_fmt = width, height, pix_fmt
        encoder.time_base = Fraction(1, 1)
        if codec == "mjpeg":
            qscale = str(jpeg_qscale(self.quality))
            encoder.options = {"qmin": qscale, "qmax": qscale}
        return b"".join(bytes(p) for p in [*encoder.encode(image), *encoder.encode(None)])


def image_size(
    source_width: int, source_height: int, width: int | None, height: int | None
) -> tuple[int, int]:
    """Both given: that size; one: the other keeps the aspect ratio (even, >= 2); none: the
    source's."""
    if width and height:
        return width, height
    if width:
        return width, _even(width * source_height / source_width)
    if height:
        return _even(height * source_width / source_height), height
    return source_width, source_height


def jpeg_qscale(quality: int) -> int:
    """JPEGQuality 1..100 as the mjpeg encoder's fixed qscale, 31 (worst) .. 1 (best)."""
    return round(31 - (quality - 1) * 30 / 99)


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


class _Video:
    """One fragment's video packets (decode order) and a decoder fed up to ``next``."""

    def __init__(self, container: InputContainer, stream: VideoStream, cluster_ticks: int) -> None:
        self._container = container
        self.codec: VideoCodecContext | None = stream.codec_context
        if self.codec is not None:
            self.codec.thread_type = "AUTO"
        self.packets = _demux(container, stream)
        self.index: dict[int, int] = {}
        for i, packet in enumerate(self.packets):
            self.index.setdefault(_pts(packet), i)
        self.pts = sorted(self.index)
        base = stream.time_base or Fraction(1, 1000)
        self.offsets_ms = [
            (pts - cluster_ticks) * base.numerator * 1000 // base.denominator for pts in self.pts
        ]
        self.keyframes = [i for i, packet in enumerate(self.packets) if packet.is_keyframe]
        self.next = 0
        self.drained = False
        self.pending: dict[int, VideoFrame] = {}
        self.seen = _NONE_SEEN
        self.last: tuple[int, VideoFrame] | None = None
        self.sent = 0

    @classmethod
    def open(cls, media: FragmentMedia) -> _Video | None:
        """None when the fragment has no video PyAV can demux."""
        body = media.body if isinstance(media.body, bytes) else b"".join(media.body)
        data = media.header + body
        try:
            ticks = _cluster_timecode(data, len(media.header))
            container = av.open(io.BytesIO(data), mode="r", format="matroska")
        except (av.FFmpegError, ValueError):
            return None
        if not container.streams.video:
            container.close()
            return None
        return cls(container, container.streams.video[0], ticks)

    def images(self, start_ms: int, times_ms: Sequence[int], render: _Render) -> list[bytes | str]:
        done: dict[int, bytes | str] = {}
        images: list[bytes | str] = []
        for time_ms in times_ms:
            at = bisect.bisect_right(self.offsets_ms, time_ms - start_ms) - 1
            if at < 0:
                images.append(NO_MEDIA)
                continue
            pts = self.pts[at]
            if pts not in done:
                frame = self.frame(pts)
                done[pts] = MEDIA_ERROR if frame is None else _rendered(render, frame)
            images.append(done[pts])
        return images

    def frame(self, pts: int) -> VideoFrame | None:
        """The decoded frame whose PTS is ``pts``, or None if it does not decode."""
        if self.last is not None and self.last[0] == pts:
            return self.last[1]
        if self.codec is None:
            return None
        found = self.pending.pop(pts, None)
        if found is None:
            target = self.index[pts]
            start = self._keyframe(target, pts)
            if pts <= self.seen or start > self.next:
                self._seek(start)
            while found is None and self._feed(pts):
                found = self.pending.pop(pts, None)
                if self.next > target and self.seen > pts:
                    break
        self.pending = {p: f for p, f in self.pending.items() if p > pts}
        if found is not None:
            self.last = (pts, found)
        return found

    def _keyframe(self, target: int, pts: int) -> int:
        """The last keyframe at or before ``target`` in decode order that is not shown after
        it (an open GOP's leading frames need the keyframe before)."""
        for k in reversed(self.keyframes[: bisect.bisect_right(self.keyframes, target)]):
            if _pts(self.packets[k]) <= pts:
                return k
        return 0

    def _seek(self, start: int) -> None:
        assert self.codec is not None
        self.codec.flush_buffers()
        self.next, self.drained, self.seen = start, False, _NONE_SEEN
        self.pending.clear()

    def _feed(self, floor: int) -> bool:
        """Feed the next packet (or the end); keep the frames out at or after ``floor``."""
        assert self.codec is not None
        packet: Packet | None = None
        if self.next < len(self.packets):
            packet = self.packets[self.next]
            self.next += 1
            self.sent += 1
        elif self.drained:
            return False
        else:
            self.drained = True
        try:
            frames = self.codec.decode(packet)
        except av.FFmpegError:
            return True
        for frame in frames:
            if frame.pts is not None:
                self.seen = max(self.seen, frame.pts)
                if frame.pts >= floor:
                    self.pending[frame.pts] = frame
        return True


class _Entry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opened = False
        self.video: _Video | None = None
        """None once opened: no video to decode (audio only, or not readable)."""


def _cluster_timecode(data: bytes, pos: int) -> int:
    """The raw Timecode of the first Cluster at or after ``pos``: the ticks that a frame's
    Matroska PTS counts from."""
    in_cluster = False
    while True:
        got_id = ebml.read_id(data, pos)
        got_size = got_id and ebml.read_size(data, pos + got_id[1])
        if not got_id or not got_size:
            raise ebml.EbmlError("no Cluster Timecode")
        (element_id, id_len), (size, size_len) = got_id, got_size
        start = pos + id_len + size_len
        if element_id == ebml.CLUSTER and not in_cluster:
            in_cluster, pos = True, start
        elif in_cluster and element_id == ebml.CLUSTER_TIMECODE:
            return ebml.read_uint(data[start : start + size])
        elif size == ebml.UNKNOWN:
            raise ebml.EbmlError("no Cluster Timecode")
        else:
            pos = start + size


def _demux(container: InputContainer, stream: VideoStream) -> list[Packet]:
    packets: list[Packet] = []
    try:
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None:
                packets.append(packet)
    except av.FFmpegError:
        pass  # damaged after this point: the frames before it still make images
    return packets


def _pts(packet: Packet) -> int:
    assert packet.pts is not None
    return packet.pts


def _rendered(render: _Render, frame: VideoFrame) -> bytes | str:
    try:
        return render(frame)
    except (av.FFmpegError, ValueError):
        return MEDIA_ERROR
