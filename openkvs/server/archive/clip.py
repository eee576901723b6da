"""GetClip: one progressive MP4 of a time range, remuxed without re-encoding.

The clip holds the first 200 fragments or 100 MB from the start (AWS's
limits) and ends early where the tracks change (GetClip takes no change of
codec private data). It is streamed in two passes over the fragments, a run
at a time, so a clip is never whole in memory: the first pass reads frame
sizes and times for the ``moov``, the second sends the frames.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from openkvs.server.archive.segments import (
    CLIP_G711,
    codecs_of,
    frames_of,
    in_runs,
    read_fragments,
)
from openkvs.server.archive.service import MAX_RANGE_MS, Archive, Body, time_range
from openkvs.server.errors import (
    InvalidArgumentException,
    InvalidMediaFrameException,
    ResourceNotFoundException,
)
from openkvs.server.http import id_headers
from openkvs.server.model import Fragment, FragmentMeta
from openkvs.server.runtime.stream import StreamRuntime
from openkvs.wire.mp4.progressive import ClipLayout
from openkvs.wire.mp4.samples import nal_units_fit

log = logging.getLogger("openkvs.getclip")

MAX_FRAGMENTS = 200
MAX_BYTES = 100 * 1000 * 1000
RUN_BYTES = 8 << 20


async def get_clip(archive: Archive, request: web.Request, body: Body) -> web.StreamResponse:
    stream = await archive.stream(body)
    archive.admit(stream.info, "GetClip", archive.config.clip_calls_per_second)
    selector = body["ClipFragmentSelector"]
    span = time_range(selector["FragmentSelectorType"], selector.get("TimestampRange"))
    if span.end_ms <= span.start_ms or span.end_ms - span.start_ms > MAX_RANGE_MS:
        raise InvalidArgumentException(
            "The EndTimestamp must be after the StartTimestamp and within 24 hours of it."
        )
    metas = await stream.completed_between(
        span.start_ms, span.end_ms, span.producer, MAX_FRAGMENTS
    )
    if not metas:
        raise ResourceNotFoundException("No fragments found in the requested time range.")
    metas = clip_fragments(metas)
    codecs = codecs_of(metas[0].tracks, CLIP_G711)
    layout = ClipLayout(codecs)
    video = {c.track.number: c.nal_length_size for c in codecs if c.is_video}
    async for fragment in _fragments(stream, metas):
        frames = frames_of(fragment)
        for frame in frames:
            size = video.get(frame.track)
            if size and not nal_units_fit(frame.data, size):
                raise InvalidMediaFrameException(
                    f"A frame of fragment {fragment.meta.number} is not a run of "
                    "length-prefixed NAL units."
                )
        layout.add(fragment.meta.producer_ms, frames)
    head = layout.head()
    response = web.StreamResponse(headers=id_headers(request))
    response.content_type = "video/mp4"
    response.content_length = len(head) + layout.data_size
    await response.prepare(request)
    try:
        await response.write(head)
        async for fragment in _fragments(stream, metas):
            await response.write(b"".join(layout.sample_data(frames_of(fragment))))
        await response.write_eof()
    except ConnectionError:
        pass  # the client went away
    except Exception as exc:  # after the 200 only a cut connection can say it: the MP4 is short
        # (retention took a fragment between the passes, or the store failed)
        log.warning("getclip cut short", extra={"stream": stream.info.name, "error": str(exc)})
        if request.transport is not None:
            request.transport.abort()
    return response


def clip_fragments(metas: Sequence[FragmentMeta]) -> list[FragmentMeta]:
    """The fragments a clip holds: within 100 MB, and as long as the tracks stay the same."""
    out: list[FragmentMeta] = []
    size = 0
    for meta in metas:
        size += meta.size
        if out and (size > MAX_BYTES or meta.tracks != out[0].tracks):
            break
        out.append(meta)
    return out


async def _fragments(
    stream: StreamRuntime, metas: Sequence[FragmentMeta]
) -> AsyncIterator[Fragment]:
    """The fragments' bytes, read a run of about RUN_BYTES at a time."""
    for run in in_runs(metas, lambda meta: meta.size, RUN_BYTES):
        for fragment in await read_fragments(stream, run):
            yield fragment
