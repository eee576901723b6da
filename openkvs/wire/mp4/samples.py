"""One track's frames as MP4 samples: decode times, durations, composition offsets.

Matroska stores presentation times only. The decode times here are the
presentation times sorted (the i-th frame in decode order is decoded at the
i-th earliest presentation time), moved earlier by the reorder delay so that no
frame is presented before it is decoded: composition offsets stay non-negative
(``trun`` version 0 semantics, which every demuxer reads alike), and without
B-frames decode times equal presentation times. The delay of an encoder is the
same in every fragment, so one fragment's decode times go on where the
previous one's stopped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from openkvs.wire.mkv.frames import Frame

SYNC = 0x02000000  # sample_depends_on = 2 (an I-frame)
NON_SYNC = 0x01010000  # depends on others, sample_is_non_sync_sample


@dataclass(slots=True)
class Samples:
    """A run of one track's samples in decode order, times in ms."""

    track: int
    first_dts: int
    first_pts: int
    durations: list[int]
    sizes: list[int]
    offsets: list[int]  # presentation minus decode time
    sync: list[bool]
    data: list[memoryview]

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def end_dts(self) -> int:
        return self.first_dts + sum(self.durations)

    @property
    def bytes(self) -> int:
        return sum(self.sizes)


def track_samples(
    track: int, frames: Iterable[Frame], base_ms: int, audio: bool, last_ms: int = 0
) -> Samples:
    """The samples of ``track`` among ``frames`` (one fragment's, in decode order), placed at
    ``base_ms`` plus each frame's offset. The last sample lasts as long as the one before
    it (``last_ms`` if it is the only one)."""
    mine = [f for f in frames if f.track == track]
    pts = [base_ms + f.offset_ms for f in mine]
    ordered = sorted(pts)
    delay = max((s - p for s, p in zip(ordered, pts, strict=True)), default=0)
    dts = [s - delay for s in ordered]
    durations = [b - a for a, b in zip(dts, dts[1:], strict=False)]
    if mine:
        durations.append(durations[-1] if durations else max(last_ms, 1))
    return Samples(
        track,
        dts[0] if dts else base_ms,
        ordered[0] if ordered else base_ms,
        durations,
        [len(f.data) for f in mine],
        [p - d for p, d in zip(pts, dts, strict=True)],
        [audio or f.keyframe for f in mine],
        [f.data for f in mine],
    )


def nal_units_fit(data: memoryview, length_size: int) -> bool:
    """Whether a video frame is a run of length-prefixed NAL units that fills it exactly
    (what MP4 needs; Annex B start codes or a truncated frame are not)."""
    pos, end = 0, len(data)
    while pos < end:
        if pos + length_size > end:
            return False
        size = int.from_bytes(data[pos : pos + length_size], "big")
        if size == 0:
            return False
        pos += length_size + size
    return pos == end
