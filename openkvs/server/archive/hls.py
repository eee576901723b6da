"""HLS: GetHLSStreamingSessionURL and the playlists of its session (spec archived-media §2.5).

One KVS fragment is one segment: fMP4 (an init segment per track and set of
codec private data, then ``moof`` + ``mdat`` per fragment and track) or MPEG-TS
(all tracks in one segment). Audio is its own rendition (TrackNumber 2), as KVS
publishes it.
"""

from __future__ import annotations

from aiohttp import web

from openkvs.server.archive.low_latency import ll_playlist
from openkvs.server.archive.m3u8 import MediaPlaylist, Variant, master_playlist
from openkvs.server.archive.playback import (
    CORS,
    date_of,
    ended,
    init_uri,
    int_param,
    refresh,
    session_url,
)
from openkvs.server.archive.segments import codecs_of
from openkvs.server.archive.service import Archive, Body
from openkvs.server.archive.sessions import Session
from openkvs.server.archive.timeline import Entry, Timeline
from openkvs.server.errors import ResourceNotFoundException

PLAYLIST = "application/vnd.apple.mpegurl"


async def get_hls_streaming_session_url(
    archive: Archive, request: web.Request, body: Body
) -> web.StreamResponse:
    return await session_url(archive, request, body, "HLS")


async def get_hls_master_playlist(
    archive: Archive, session: Session, request: web.Request
) -> web.Response:
    if _wants_low_latency(archive, session, request) and not session.low_latency:
        session.low_latency = True
        if not (session.discontinuity_asked or session.served) and session.timeline.mode != "NEVER":
            session.timeline = Timeline("NEVER")  # no playlist out yet: renumbering is safe
    entries = await refresh(archive, session)
    if not entries:
        raise ResourceNotFoundException("The session has no fragments to play yet.")
    codecs = codecs_of(entries[-1].meta.tracks)
    token = session.token
    tracks = [c.track.number for c in codecs]
    ts = session.container == "MPEG_TS"
    video = codecs[0]
    audio_uri = None
    if len(codecs) > 1 and not ts:
        audio_uri = f"getHLSMediaPlaylist.m3u8?SessionToken={token}&TrackNumber={tracks[1]}"
    variant = Variant(
        codecs=",".join(c.codec for c in codecs),
        bandwidth=bandwidth(entries),
        resolution=(video.track.width, video.track.height) if video.is_video else None,
        video_uri=f"getHLSMediaPlaylist.m3u8?SessionToken={token}&TrackNumber={tracks[0]}",
        audio_uri=audio_uri,
    )
    return web.Response(text=master_playlist(variant), content_type=PLAYLIST, headers=CORS)


async def get_hls_media_playlist(
    archive: Archive, session: Session, request: web.Request
) -> web.Response:
    track = int_param(request, "TrackNumber", 1)
    token = session.token
    session.served = True
    low = None
    if session.low_latency and session.mode == "LIVE" and session.container != "MPEG_TS":
        entries, low = await ll_playlist(archive, session, request, track, token)
    else:
        entries = await refresh(archive, session)
    if session.container == "MPEG_TS":

        def segment(entry: Entry) -> str:
            return f"getTSFragment.ts?FragmentNumber={entry.meta.number}&SessionToken={token}"

        map_uri = None
    else:

        def segment(entry: Entry) -> str:
            return (
                f"getMP4MediaFragment.mp4?FragmentNumber={entry.meta.number}"
                f"&SessionToken={token}&TrackNumber={track}"
            )

        def map_uri(entry: Entry) -> str:
            return init_uri(session, track, entry.generation)

    playlist = MediaPlaylist(
        entries,
        segment,
        map_uri,
        ended=ended(session),
        on_demand=session.mode == "ON_DEMAND",
        date_of=date_of(session) if session.show_timestamp else None,
        low_latency=low,
    )
    return web.Response(text=playlist.render(), content_type=PLAYLIST, headers=CORS)


def _wants_low_latency(archive: Archive, session: Session, request: web.Request) -> bool:
    asked = request.query.get("LowLatency", "").lower() in ("1", "true", "yes")
    return session.mode == "LIVE" and (asked or archive.config.hls_low_latency)


def bandwidth(entries: list[Entry]) -> int:
    """The peak bit rate over the entries, as BANDWIDTH asks."""
    return max(
        (e.meta.size * 8 * 1000 // max(e.meta.duration_ms, 1) for e in entries), default=1
    )
