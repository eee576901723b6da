"""Where each archived-media request goes: operations by path (POST, SigV4) and the
session resources under ``/hls/v1/`` and ``/dash/v1/`` (GET, SessionToken only)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from openkvs.server.archive.clip import get_clip
from openkvs.server.archive.dash import get_dash_manifest, get_dash_streaming_session_url
from openkvs.server.archive.fragment_list import get_media_for_fragment_list
from openkvs.server.archive.hls import (
    get_hls_master_playlist,
    get_hls_media_playlist,
    get_hls_streaming_session_url,
)
from openkvs.server.archive.images import get_images
from openkvs.server.archive.listing import list_fragments
from openkvs.server.archive.low_latency import get_mp4_media_part
from openkvs.server.archive.playback import (
    CORS,
    get_mp4_init_fragment,
    get_mp4_media_fragment,
    get_ts_fragment,
)
from openkvs.server.archive.service import VALIDATOR, Archive, Handler, checked
from openkvs.server.archive.sessions import Session
from openkvs.server.errors import AwsError, ResourceNotFoundException
from openkvs.server.http import error_response, read_json

HANDLERS: dict[str, Handler] = {
    "ListFragments": list_fragments,
    "GetMediaForFragmentList": get_media_for_fragment_list,
    "GetClip": get_clip,
    "GetImages": get_images,
    "GetHLSStreamingSessionURL": get_hls_streaming_session_url,
    "GetDASHStreamingSessionURL": get_dash_streaming_session_url,
}
OPERATIONS = {
    VALIDATOR.operation(name).http["requestUri"].lstrip("/"): name for name in HANDLERS
}
"""``POST /<path>`` -> operation name."""

Resource = Callable[[Archive, Session, web.Request], Awaitable[web.StreamResponse]]
RESOURCES: dict[tuple[str, str], Resource] = {
    ("hls", "getHLSMasterPlaylist.m3u8"): get_hls_master_playlist,
    ("hls", "getHLSMediaPlaylist.m3u8"): get_hls_media_playlist,
    ("hls", "getMP4InitFragment.mp4"): get_mp4_init_fragment,
    ("hls", "getMP4MediaFragment.mp4"): get_mp4_media_fragment,
    ("hls", "getTSFragment.ts"): get_ts_fragment,
    ("hls", "getMP4MediaPart.mp4"): get_mp4_media_part,
    ("dash", "getDASHManifest.mpd"): get_dash_manifest,
    ("dash", "getMP4InitFragment.mp4"): get_mp4_init_fragment,
    ("dash", "getMP4MediaFragment.mp4"): get_mp4_media_fragment,
}
SESSION_PREFIXES = ("/hls/v1/", "/dash/v1/")


async def operation(archive: Archive, op: str, request: web.Request) -> web.StreamResponse:
    """Run the archived-media operation at ``POST /<op>`` (``op`` in OPERATIONS)."""
    name = OPERATIONS[op]
    body = checked(name, await read_json(request))
    return await HANDLERS[name](archive, request, body)


async def session_resource(archive: Archive, request: web.Request) -> web.StreamResponse:
    """``GET /{hls,dash}/v1/<resource>?SessionToken=…``."""
    kind = request.path.split("/")[1]
    try:
        resource = RESOURCES.get((kind, request.match_info["resource"]))
        if resource is None:
            raise ResourceNotFoundException(f"No such resource: {request.path}.")
        session = archive.sessions.get(request.query.get("SessionToken"))
        if session.kind.lower() != kind:
            raise ResourceNotFoundException(f"This is not an {kind.upper()} session.")
        return await resource(archive, session, request)
    except AwsError as err:
        response = error_response(request, err)
        response.headers.update(CORS)
        return response
