"""Low-latency HLS parts: a fragment's frames cut into short runs (pure).

AWS's HLS cannot show a fragment before it is whole, so its latency is at
least one fragment. LL-HLS (RFC 8216bis) lets a player fetch a segment's parts
as they are made. A part of a track is the run of its frames (in decode order)
whose running-highest presentation offset falls in one PART_MS window; the cut
depends only on the frames, so a fragment still growing is cut the same way
each time it is asked, and the same way once it is whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from openkvs.wire.mkv.frames import Frame

PART_MS = 200


@dataclass(frozen=True, slots=True)
class Part:
    frames: list[Frame]
    duration_ms: int
    independent: bool


def cut_parts(frames: Iterable[Frame], track: int, audio: bool, part_ms: int = PART_MS) -> list[Part]:
    """The parts of ``track`` among ``frames``; each lasts until the next one starts
    (the last, until its last frame ends, one frame's step after it)."""
    runs: list[list[Frame]] = []
    window, top = None, None
    for frame in frames:
        if frame.track != track:
            continue
        top = frame.offset_ms if top is None else max(top, frame.offset_ms)
        if top // part_ms != window:
            window = top // part_ms
            runs.append([])
        runs[-1].append(frame)
    starts = [min(f.offset_ms for f in run) for run in runs]
    parts = []
    for i, run in enumerate(runs):
        if i + 1 < len(runs):
            duration = starts[i + 1] - starts[i]
        else:
            times = sorted(f.offset_ms for f in run)
            step = times[-1] - times[-2] if len(times) > 1 else part_ms
            duration = times[-1] + step - starts[i]
        parts.append(Part(run, max(duration, 1), audio or run[0].keyframe))
    return parts
