"""ListFragments: the stored fragments whose start lies in a time range, a page at a time.

The NextToken carries the range and the last fragment listed, so a page is a
bisection in the store's index wherever the listing stands (a million
fragments cost no more than ten). Only stored fragments are listed: on AWS the
list is eventually consistent with PERSISTED.
"""

from __future__ import annotations

from aiohttp import web

from openkvs.server.archive.service import (
    Archive,
    Body,
    TimeRange,
    page_token,
    read_page_token,
    time_range,
)
from openkvs.server.errors import InvalidArgumentException
from openkvs.server.http import json_response
from openkvs.server.model import FragmentMeta
from openkvs.server.store.base import Store

DEFAULT_RESULTS = 1000


async def list_fragments(archive: Archive, request: web.Request, body: Body) -> web.StreamResponse:
    info = await archive.info(body, retention=False)
    archive.admit(info, "ListFragments", archive.config.archive_calls_per_second)
    limit = body.get("MaxResults") or DEFAULT_RESULTS
    token = body.get("NextToken")
    if token is not None:
        span, after = _decode(token)
    else:
        selector = body.get("FragmentSelector")
        if not isinstance(selector, dict):
            raise InvalidArgumentException("FragmentSelector is required without a NextToken.")
        span = time_range(selector["FragmentSelectorType"], selector.get("TimestampRange"))
        after = None
    page = await fragments_page(archive.runtimes.store, info.key, span, after, limit + 1)
    more = len(page) > limit
    page = page[:limit]
    out: Body = {"Fragments": [describe(meta) for meta in page]}
    if more:
        out["NextToken"] = _encode(span, page[-1])
    return json_response(request, out)


async def fragments_page(
    store: Store, key: str, span: TimeRange, after: tuple[int, int] | None, limit: int
) -> list[FragmentMeta]:
    """Up to ``limit`` fragments in ``span`` past ``after`` (a start time and seq)."""
    start = span.start_ms if after is None else max(span.start_ms, after[0])
    last_seq = -1 if after is None else after[1]
    want = limit
    while True:
        batch = await store.fragments_between(
            key, start, span.end_ms, producer=span.producer, limit=want
        )
        page = [meta for meta in batch if meta.seq > last_seq]
        if len(batch) < want or len(page) >= limit:
            return page[:limit]
        want *= 2  # many fragments share the start time of the last one listed


def describe(meta: FragmentMeta) -> Body:
    return {
        "FragmentNumber": str(meta.number),
        "FragmentSizeInBytes": meta.size,
        "ProducerTimestamp": meta.producer_ms / 1000,
        "ServerTimestamp": meta.server_ms / 1000,
        "FragmentLengthInMilliseconds": meta.duration_ms,
    }


def _encode(span: TimeRange, last: FragmentMeta) -> str:
    start = last.start_ms(span.producer)
    return page_token([int(span.producer), span.start_ms, span.end_ms, start, last.seq])


def _decode(token: str) -> tuple[TimeRange, tuple[int, int]]:
    producer, start, end, at, seq = read_page_token(token, 5)
    return TimeRange(bool(producer), start, end), (at, seq)
