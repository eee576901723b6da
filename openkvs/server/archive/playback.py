"""What HLS and DASH sessions share: opening one, keeping its timeline current, and the
MP4 and TS fragments they serve.

PlaybackMode decides which fragments a session shows (spec archived-media §2.5):
ON_DEMAND, all those in the range (up to the maximum), once; LIVE, the newest,
including fragments only RECEIVED so far, so a playlist shows a fragment as
soon as it is whole; LIVE_REPLAY, those from the start time on, each added
once the previous one's duration has passed since the session began.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from openkvs.clock import now_ms
from openkvs.server.archive.segments import (
    CODEC_ERRORS,
    SESSION_G711,
    codecs_of,
    init_fragment,
    media_fragment,
    read_fragments,
)
from openkvs.server.archive.service import Archive, Body, time_range
from openkvs.server.archive.sessions import Session
from openkvs.server.archive.timeline import Entry, Timeline, entry_at
from openkvs.server.archive.transport_stream import ts_segment
from openkvs.server.errors import (
    InvalidArgumentException,
    InvalidMediaFrameException,
    ResourceNotFoundException,
)
from openkvs.server.http import json_response
from openkvs.server.model import Fragment, FragmentMeta, FragmentNumber
from openkvs.server.runtime.stream import StreamRuntime
from openkvs.wire.mkv.frames import FrameError
from openkvs.wire.mp4.codecs import CodecError

LIVE_RECENT_MS = 30_000
EVER = 1 << 62
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "*"}
DEFAULT_RESULTS = {"LIVE": 5, "LIVE_REPLAY": 5, "ON_DEMAND": 1000}


SESSION_KINDS = {
    "HLS": ("HLSFragmentSelector", "MaxMediaPlaylistFragmentResults", "hls/v1/getHLSMasterPlaylist.m3u8"),
    "DASH": ("DASHFragmentSelector", "MaxManifestFragmentResults", "dash/v1/getDASHManifest.mpd"),
}
"""Per kind: the request's selector member, its most-fragments member, the entry resource."""


async def session_url(
    archive: Archive, request: web.Request, body: Body, kind: str
) -> web.Response:
    """Get{HLS,DASH}StreamingSessionURL: start a session, answer the URL that plays it."""
    session = await open_session(archive, body, kind)
    resource = SESSION_KINDS[kind][2]
    url = f"{archive.config.base_url()}/{resource}?SessionToken={session.token}"
    return json_response(request, {f"{kind}StreamingSessionURL": url})


def init_uri(session: Session, track: int, generation: int) -> str:
    """The init segment of a track and set of codec private data, relative to the session."""
    return (
        f"getMP4InitFragment.mp4?SessionToken={session.token}&TrackNumber={track}"
        f"&SequenceNumber={generation}"
    )


async def open_session(archive: Archive, body: Body, kind: str) -> Session:
    """Check a Get{HLS,DASH}StreamingSessionURL request and start its session."""
    selector_key, max_key, _ = SESSION_KINDS[kind]
    stream = await archive.stream(body)
    mode = body.get("PlaybackMode") or "LIVE"
    selector = body.get(selector_key) or {}
    selector_type = selector.get("FragmentSelectorType") or "SERVER_TIMESTAMP"
    producer = selector_type == "PRODUCER_TIMESTAMP"
    timestamps = selector.get("TimestampRange")
    start_ms = end_ms = None
    if mode == "LIVE":
        if timestamps is not None:
            raise InvalidArgumentException("TimestampRange must not be set in LIVE mode.")
    else:
        span = time_range(selector_type, timestamps, end_required=mode == "ON_DEMAND")
        if span.end_ms != EVER and span.end_ms - span.start_ms > 24 * 3600 * 1000:
            raise InvalidArgumentException("The timestamp range must not exceed 24 hours.")
        start_ms, end_ms = span.start_ms, (None if span.end_ms == EVER else span.end_ms)
    created = now_ms()
    discontinuity = body.get("DiscontinuityMode") or ("NEVER" if producer else "ALWAYS")
    session = Session(
        kind=kind,
        stream_name=stream.info.name,
        stream_key=stream.info.key,
        mode=mode,
        producer=producer,
        start_ms=start_ms,
        end_ms=end_ms,
        max_results=body.get(max_key) or DEFAULT_RESULTS[mode],
        expires_at=created / 1000 + (body.get("Expires") or 300),
        created_ms=created,
        container=body.get("ContainerFormat") or "FRAGMENTED_MP4",
        show_timestamp=body.get("DisplayFragmentTimestamp") == "ALWAYS",
        show_number=body.get("DisplayFragmentNumber") == "ALWAYS",
        timeline=Timeline(discontinuity if kind == "HLS" else "NEVER"),
        discontinuity_asked=body.get("DiscontinuityMode") is not None,
    )
    first = await _first_fragment(stream, session)
    codecs_of(first.tracks, SESSION_G711[kind])
    if session.mode == "LIVE":
        await refresh(archive, session)
    return archive.sessions.open(session)


async def _first_fragment(stream: StreamRuntime, session: Session) -> FragmentMeta:
    if session.mode == "LIVE":
        newest = await stream.completed_between(-EVER, EVER, False, 1, newest_first=True)
        if not newest or newest[0].server_ms < now_ms() - LIVE_RECENT_MS:
            raise ResourceNotFoundException(
                "No fragments were ingested in the last 30 seconds: the stream is not live."
            )
        return newest[0]
    found = await stream.completed_between(
        session.start_ms or 0, session.end_ms or EVER, session.producer, 1
    )
    if not found:
        raise ResourceNotFoundException("No fragments found in the requested time range.")
    return found[0]


async def session_stream(archive: Archive, session: Session) -> StreamRuntime:
    info = archive.control.get(session.stream_name)
    if info is None or info.key != session.stream_key:
        archive.sessions.close_stream(session.stream_key)
        raise ResourceNotFoundException("The stream of this session no longer exists.")
    return await archive.runtimes.get(info)


async def refresh(archive: Archive, session: Session) -> list[Entry]:
    """Bring the session's timeline up to now; the entries a playlist shows now."""
    stream = await session_stream(archive, session)
    timeline, limit = session.timeline, session.max_results
    if session.mode == "ON_DEMAND":
        if not timeline.entries:
            timeline.extend(
                await stream.completed_between(
                    session.start_ms or 0, session.end_ms or EVER, session.producer, limit
                )
            )
        return timeline.entries
    if session.mode == "LIVE":
        last = timeline.last
        if session.low_latency and last is not None:  # parts were announced: skip nothing
            found = await stream.completed_from(last.meta.seq + 1, limit)
            announced = session.announced
            if found and announced is not None and announced[0] == timeline.shown:
                if found[0].seq != announced[1]:  # the announced fragment failed: a new one
                    timeline.mark_break()
            timeline.extend(found)
        else:
            timeline.extend(
                await stream.completed_between(-EVER, EVER, False, limit, newest_first=True)
            )
    else:
        await _replay(stream, session)
    return list(timeline.window(limit))


async def _replay(stream: StreamRuntime, session: Session) -> None:
    """Add each fragment once the previous ones' durations have passed since the session
    began; at most a playlist's worth per call, so a late request never floods the loop."""
    timeline = session.timeline
    elapsed = now_ms() - session.created_ms
    end = session.end_ms if session.end_ms is not None else EVER
    for _ in range(session.max_results):
        if timeline.entries and timeline.shown_ms > elapsed:
            return
        last = timeline.last
        if last is None:
            found = await stream.completed_between(
                session.start_ms or 0, end, session.producer, 1
            )
        else:
            found = await stream.completed_from(last.meta.seq + 1, 1)
        if not found or found[0].start_ms(session.producer) > end:
            session.complete = end <= now_ms()  # nothing more can come in the range
            return
        timeline.extend(found)


def ended(session: Session) -> bool:
    """Whether the playlist is complete (EXT-X-ENDLIST; a static MPD)."""
    if session.mode == "ON_DEMAND":
        return True
    return session.complete


def date_of(session: Session) -> Any:
    """The clock a session displays fragment times in (DisplayFragmentTimestamp)."""
    return lambda entry: entry.meta.start_ms(session.producer)


def param(request: web.Request, name: str) -> str:
    value = request.query.get(name)
    if value is None:
        raise InvalidArgumentException(f"The {name} parameter is required.")
    return value


MAX_PARAM_DIGITS = 18


def query_int(request: web.Request, name: str) -> int | None:
    """A whole-number query parameter (None when absent); InvalidArgument when it is not one."""
    text = request.query.get(name)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_PARAM_DIGITS):
        raise InvalidArgumentException(f"The {name} parameter must be a whole number.")
    return int(text)


def int_param(request: web.Request, name: str, default: int | None = None) -> int:
    value = query_int(request, name)
    if value is None:
        if default is None:
            raise InvalidArgumentException(f"The {name} parameter is required.")
        return default
    return value


async def get_mp4_init_fragment(archive: Archive, session: Session, request: web.Request) -> web.Response:
    generations = session.timeline.generations
    sequence = int_param(request, "SequenceNumber", len(generations) - 1)
    if not 0 <= sequence < len(generations):
        raise ResourceNotFoundException(f"No init fragment with SequenceNumber {sequence}.")
    track = int_param(request, "TrackNumber", 1)
    data = init_fragment(generations[sequence], track, SESSION_G711[session.kind])
    return web.Response(body=data, content_type="video/mp4", headers=CORS)


async def _fragment(archive: Archive, session: Session, request: web.Request) -> Fragment:
    """The fragment a resource names: by FragmentNumber, or (DASH's template) by the
    session's SegmentNumber."""
    stream = await session_stream(archive, session)
    if "SegmentNumber" in request.query and "FragmentNumber" not in request.query:
        index = int_param(request, "SegmentNumber")
        entry = entry_at(session.timeline.entries, index)
        if entry is None:
            raise ResourceNotFoundException(f"The session has no segment {index}.")
        return (await read_fragments(stream, [entry.meta]))[0]
    text = param(request, "FragmentNumber")
    try:
        number = FragmentNumber.parse(text)
    except ValueError:
        raise InvalidArgumentException(f"{text!r} is not a fragment number.") from None
    meta = await stream.find(number)
    if meta is None:
        raise ResourceNotFoundException(f"Fragment {text} was not found.")
    return (await read_fragments(stream, [meta]))[0]


async def get_mp4_media_fragment(
    archive: Archive, session: Session, request: web.Request
) -> web.StreamResponse:
    fragment = await _fragment(archive, session, request)
    track = int_param(request, "TrackNumber", 1)
    parts = media_fragment(
        fragment, track, fragment.meta.seq & 0xFFFFFFFF, SESSION_G711[session.kind]
    )
    return _send(request, parts, "video/mp4")


async def get_ts_fragment(
    archive: Archive, session: Session, request: web.Request
) -> web.StreamResponse:
    fragment = await _fragment(archive, session, request)
    meta = fragment.meta
    shown = next((e.index for e in reversed(session.timeline.entries) if e.meta.seq == meta.seq), 0)
    try:  # ts_segment checks the tracks itself: CodecError says which AWS error
        data = ts_segment(fragment.header, fragment.body_parts(), meta.producer_ms, shown)
    except FrameError as exc:
        raise InvalidMediaFrameException(f"Fragment {meta.number}: {exc}") from None
    except CodecError as exc:
        raise CODEC_ERRORS[exc.kind](str(exc)) from None
    return _send(request, [data], "video/mp2t")


def _send(
    request: web.Request, parts: list[bytes | memoryview], content_type: str
) -> web.Response:
    """One write: a fragment's frames joined once beats a write per frame."""
    return web.Response(body=b"".join(parts), content_type=content_type, headers=CORS)
