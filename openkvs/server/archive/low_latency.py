"""Low-latency HLS, beyond AWS: parts of the fragment being received, blocking playlist
reloads and preload hints (RFC 8216bis §4.4.4.9, §6.2.5.2).

Opt in with ``LowLatency=1`` on the master playlist URL (or ``--hls-low-latency`` for
every LIVE session). Parts are addressed by the session's media sequence number
(``SegmentNumber``) and ``PartNumber``, so a part of a fragment that has not begun
yet can be named in a preload hint; a request for a part that does not exist yet
is held until it does. The stream's runtime wakes waiters whenever its growing
fragment begins, grows or completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from aiohttp import web

from openkvs.server.archive.m3u8 import LowLatency, PartLine
from openkvs.server.archive.parts import PART_MS, Part, cut_parts
from openkvs.server.archive.playback import (
    CORS,
    init_uri,
    int_param,
    query_int,
    refresh,
    session_stream,
)
from openkvs.server.archive.segments import codec_for, frames_of, read_fragments
from openkvs.server.archive.service import Archive
from openkvs.server.archive.sessions import Session
from openkvs.server.archive.timeline import Entry, entry_at
from openkvs.server.errors import ResourceNotFoundException
from openkvs.server.model import TrackSet
from openkvs.server.runtime.stream import StreamRuntime
from openkvs.wire.mkv.frames import Frame, FrameError, cluster_frames, read_header
from openkvs.wire.mp4.fragmented import media_segment
from openkvs.wire.mp4.samples import track_samples

HOLD_S = 6.0
"""Longest a blocking request waits (three target durations of 2 s fragments)."""
PARTS_FOR = 3
"""The newest segments whose parts a playlist lists."""


class _Change:
    """Wakes one waiter at the stream's next change (a runtime Follower)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def follow(self, stream: StreamRuntime) -> bool:
        self.event.set()
        return False


async def changed(stream: StreamRuntime, timeout: float) -> None:
    change = _Change()
    stream.add_follower(change)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(timeout, 0.0)):
            await change.event.wait()


@dataclass(frozen=True, slots=True)
class Segment:
    """A segment's media as parts are cut from it: whole, or still being received."""

    producer_ms: int
    tracks: TrackSet
    frames: list[Frame]
    complete: bool


async def _segment(
    session: Session, stream: StreamRuntime, entries: list[Entry], msn: int
) -> Segment | None:
    """Segment ``msn`` of the session: a shown entry, or the fragment being received."""
    entry = entry_at(entries, msn)
    if entry is not None:
        fragment = (await read_fragments(stream, [entry.meta]))[0]
        return Segment(entry.meta.producer_ms, entry.meta.tracks, frames_of(fragment), True)
    growing = stream.growing
    last = session.timeline.last
    if msn != session.timeline.shown or growing is None or growing.failed:
        return None
    if last is not None and growing.seq <= last.meta.seq:
        return None
    try:
        header = read_header(growing.header)
        frames = list(cluster_frames(list(growing.parts), header.scale))
    except FrameError:
        return None
    announced = session.announced
    if announced is not None and announced[0] == msn and announced[1] != growing.seq:
        session.timeline.mark_break()  # what was announced as ``msn`` failed; this replaces it
    session.announced = (msn, growing.seq)
    return Segment(growing.producer_ms, header.tracks, frames, growing.complete)


def _parts(segment: Segment, track: int) -> tuple[list[Part], int]:
    """The segment's parts of ``track`` and how many of them are final."""
    audio = not codec_for(segment.tracks, track).is_video
    parts = cut_parts(segment.frames, track, audio)
    return parts, len(parts) if segment.complete else max(len(parts) - 1, 0)


async def ll_playlist(
    archive: Archive, session: Session, request: web.Request, track: int, token: str
) -> tuple[list[Entry], LowLatency]:
    """The entries and LL additions of a media playlist, once it holds what the
    player asked for with ``_HLS_msn``/``_HLS_part`` (or HOLD_S has passed)."""
    stream = await session_stream(archive, session)
    want_msn = query_int(request, "_HLS_msn")
    want_part = query_int(request, "_HLS_part")
    deadline = time.monotonic() + HOLD_S
    while True:
        entries = await refresh(archive, session)
        next_msn = session.timeline.shown
        growing = await _segment(session, stream, entries, next_msn)
        made = _parts(growing, track)[1] if growing is not None else 0
        if (
            want_msn is None
            or want_msn < next_msn
            or (want_msn == next_msn and want_part is not None and made > want_part)
            or time.monotonic() >= deadline
        ):
            break
        await changed(stream, deadline - time.monotonic())

    def part_uri(msn: int, number: int) -> str:
        return (
            f"getMP4MediaPart.mp4?SegmentNumber={msn}&PartNumber={number}"
            f"&SessionToken={token}&TrackNumber={track}"
        )

    listed: dict[int, list[PartLine]] = {}
    for entry in entries[-PARTS_FOR:]:
        segment = await _segment(session, stream, entries, entry.index)
        if segment is not None:
            parts = _parts(segment, track)[0]
            listed[entry.index] = [
                PartLine(p.duration_ms, part_uri(entry.index, i), p.independent)
                for i, p in enumerate(parts)
            ]
    growing_lines: list[PartLine] = []
    if growing is not None:
        parts, made = _parts(growing, track)
        growing_lines = [
            PartLine(p.duration_ms, part_uri(next_msn, i), p.independent)
            for i, p in enumerate(parts[:made])
        ]
    head = []
    if growing is not None:  # what its entry will open with, said before its first part
        cut, generation = session.timeline.placement(growing.producer_ms, growing.tracks)
        if cut:
            head.append("#EXT-X-DISCONTINUITY")
        if cut or not entries or generation != entries[-1].generation:
            head.append(f'#EXT-X-MAP:URI="{init_uri(session, track, generation)}"')
    longest = max((p.duration_ms for lines in listed.values() for p in lines), default=PART_MS)
    low = LowLatency(
        max(PART_MS, longest), listed, growing_lines, head, part_uri(next_msn, len(growing_lines))
    )
    return entries, low


async def get_mp4_media_part(
    archive: Archive, session: Session, request: web.Request
) -> web.Response:
    """One part (``moof`` + ``mdat``) of one track, held until the part exists."""
    stream = await session_stream(archive, session)
    msn = int_param(request, "SegmentNumber")
    number = int_param(request, "PartNumber")
    track = int_param(request, "TrackNumber", 1)
    deadline = time.monotonic() + HOLD_S
    while True:
        segment = await _segment(session, stream, await refresh(archive, session), msn)
        if segment is not None:
            parts, made = _parts(segment, track)
            if number < made:
                part = parts[number]
                audio = not codec_for(segment.tracks, track).is_video
                run = track_samples(
                    track, part.frames, segment.producer_ms, audio, part.duration_ms
                )
                body = b"".join(media_segment((msn * 1000 + number) & 0xFFFFFFFF, [run]))
                return web.Response(body=body, content_type="video/mp4", headers=CORS)
            if segment.complete:
                break
        elif msn < session.timeline.shown or msn > session.timeline.shown + 1:
            break
        if time.monotonic() >= deadline:
            break
        await changed(stream, deadline - time.monotonic())
    raise ResourceNotFoundException(f"Segment {msn} has no part {number}.")
