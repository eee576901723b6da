"""GetMediaForFragmentList: the fragments asked for, as GetMedia chunks, in the order asked.

The chunks carry GetMedia's tag names (consumers parse them with GetMedia's
visitors: kvs-wire §7) and no live-edge tags. A fragment that is not stored
(never was, or retention took it) is an in-band 4000 chunk where it would have
been, as in GetMedia.
"""

from __future__ import annotations

from aiohttp import web

from openkvs.server.archive.segments import in_runs
from openkvs.server.archive.service import Archive, Body
from openkvs.server.model import Fragment, FragmentMeta, FragmentNumber
from openkvs.server.runtime.limits import Pacer
from openkvs.server.serve.chunked import begin_chunks, chunks_response
from openkvs.wire.chunk import chunk_head, not_found_chunk

OPERATION = "GetMediaForFragmentList"
RUN_BYTES = 4 << 20


async def get_media_for_fragment_list(
    archive: Archive, request: web.Request, body: Body
) -> web.StreamResponse:
    stream = await archive.stream(body, retention=False)
    config = archive.config
    archive.admit(stream.info, OPERATION, config.archive_calls_per_second)
    wanted: list[tuple[str, FragmentMeta | None]] = []
    for text in body["Fragments"]:
        try:
            number: FragmentNumber | None = FragmentNumber.parse(text)
        except ValueError:
            number = None
        wanted.append((text, await stream.find(number) if number is not None else None))
    with archive.connection(stream.info, OPERATION, config.archive_max_connections):
        response = chunks_response(request)
        chunks = await begin_chunks(request, response, config.getmedia_idle_timeout_s)
        if chunks is None:
            return response
        pacer = Pacer(config.getmedia_max_bytes_per_second if config.rate_limits else 0)
        try:
            for run in in_runs(wanted, _size, RUN_BYTES):
                metas = [meta for _, meta in run if meta is not None]
                outcomes = iter(await stream.fetch(metas))
                for text, meta in run:
                    fragment = next(outcomes) if meta is not None else None
                    if not isinstance(fragment, Fragment):
                        await chunks.send(not_found_chunk(text))
                        continue
                    m = fragment.meta
                    head = chunk_head(fragment.header, str(m.number), m.server_ms, m.producer_ms)
                    await chunks.send(head, *fragment.body_parts())
                    await pacer.spend(m.size)
            await response.write_eof()
        except (ConnectionError, TimeoutError, RuntimeError):
            if request.transport is not None:
                request.transport.abort()
    return response


def _size(item: tuple[str, FragmentMeta | None]) -> int:
    return item[1].size if item[1] is not None else 0
