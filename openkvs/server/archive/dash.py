"""DASH: GetDASHStreamingSessionURL and the manifest of its session (spec archived-media §2.6).

The media are the same MP4 init and media fragments HLS serves. DASH allows
no change of codec private data within a session, so the manifest names the
init segment of the newest set of tracks.
"""

from __future__ import annotations

from aiohttp import web

from openkvs.clock import now_ms
from openkvs.server.archive.hls import bandwidth
from openkvs.server.archive.mpd import Manifest
from openkvs.server.archive.playback import CORS, date_of, ended, init_uri, refresh, session_url
from openkvs.server.archive.segments import SESSION_G711, codecs_of
from openkvs.server.archive.service import Archive, Body
from openkvs.server.archive.sessions import Session
from openkvs.server.archive.timeline import Entry
from openkvs.server.errors import ResourceNotFoundException


async def get_dash_streaming_session_url(
    archive: Archive, request: web.Request, body: Body
) -> web.StreamResponse:
    return await session_url(archive, request, body, "DASH")


async def get_dash_manifest(archive: Archive, session: Session, request: web.Request) -> web.Response:
    entries = await refresh(archive, session)
    session.served = True
    if not entries:
        raise ResourceNotFoundException("The session has no fragments to play yet.")
    generation = entries[-1].generation
    entries = [e for e in entries if e.generation == generation]
    token = session.token

    def init(track: int) -> str:
        return init_uri(session, track, generation)

    def media_template(track: int) -> str:
        return (
            f"getMP4MediaFragment.mp4?SessionToken={token}&TrackNumber={track}"
            "&SegmentNumber=$Number$"
        )

    manifest = Manifest(
        entries,
        codecs_of(entries[-1].meta.tracks, SESSION_G711["DASH"]),
        bandwidth(entries),
        init,
        media_template,
        live=not ended(session),
        now_ms=now_ms(),
        show_number=session.show_number,
        date_of=date_of(session) if session.show_timestamp else None,
        origin_ms=_origin(session, entries),
    )
    return web.Response(text=manifest.render(), content_type="application/dash+xml", headers=CORS)


def _origin(session: Session, entries: list[Entry]) -> int:
    """LIVE_REPLAY: the first fragment shown is live when the session began."""
    if session.mode != "LIVE_REPLAY":
        return 0
    if session.origin_ms is None:
        session.origin_ms = session.created_ms - entries[0].meta.producer_ms
    return session.origin_ms
