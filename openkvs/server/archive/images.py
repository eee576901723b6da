"""GetImages: JPEG or PNG images sampled from a time range, a page at a time.

Sample times run from StartTimestamp every SamplingInterval up to
EndTimestamp. As on AWS, only fragments that start within the range count, so
a start in the middle of a fragment gets NO_MEDIA until the next one begins
(boto3#3712). Decoding runs in worker threads (``imaging``), which keep a
fragment's decoder between pages.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from aiohttp import web

from openkvs.server.archive.segments import read_fragments
from openkvs.server.archive.service import Archive, Body, page_token, read_page_token
from openkvs.server.errors import InvalidArgumentException
from openkvs.server.http import json_response
from openkvs.server.model import FragmentMeta
from openkvs.server.validate import parse_timestamp

MAX_SPAN_MS = 300_000
MIN_INTERVAL_MS = 200
DEFAULT_INTERVAL_MS = 3000
PAGE = 25
SAMPLER = "image_sampler"


async def get_images(archive: Archive, request: web.Request, body: Body) -> web.StreamResponse:
    stream = await archive.stream(body)
    producer = body["ImageSelectorType"] == "PRODUCER_TIMESTAMP"
    start = parse_timestamp(body["StartTimestamp"], "StartTimestamp")
    end = parse_timestamp(body["EndTimestamp"], "EndTimestamp")
    if end < start or end - start > MAX_SPAN_MS:
        raise InvalidArgumentException(
            "The EndTimestamp must not be before the StartTimestamp, nor more than 300 seconds after it."
        )
    interval = body.get("SamplingInterval") or DEFAULT_INTERVAL_MS
    if interval < MIN_INTERVAL_MS:
        raise InvalidArgumentException(
            f"SamplingInterval must be at least {MIN_INTERVAL_MS} milliseconds."
        )
    quality = _quality(body.get("FormatConfig"))
    first = _token_index(body.get("NextToken"))
    page = min(body.get("MaxResults") or PAGE, PAGE)
    count = (end - start) // interval + 1
    times = [start + i * interval for i in range(first, min(count, first + page))]
    images: list[Body] = [{"TimeStamp": t / 1000} for t in times]
    if times:
        from openkvs.server.archive.imaging import FragmentMedia, ImageSampler  # loads PyAV

        metas = await stream.completed_between(start, times[-1], producer, 10_000)
        groups = _by_fragment(times, metas, producer)
        sampler = archive.shared.setdefault(SAMPLER, ImageSampler())
        for meta, indices in groups:
            fragment = (await read_fragments(stream, [meta]))[0]
            media = FragmentMedia(
                str(meta.number),
                meta.start_ms(producer),
                fragment.header,
                fragment.body_parts(),
            )
            results = await asyncio.to_thread(
                sampler.sample,
                media,
                [times[i] for i in indices],
                fmt=body["Format"],
                width=body.get("WidthPixels"),
                height=body.get("HeightPixels"),
                quality=quality,
            )
            for i, result in zip(indices, results, strict=True):
                _fill(images[i], result)
    for image in images:
        if "ImageContent" not in image:
            image.setdefault("Error", "NO_MEDIA")
    out: Body = {"Images": images}
    if first + page < count:
        out["NextToken"] = page_token([first + page])
    return json_response(request, out)


def _fill(image: Body, result: bytes | str) -> None:
    if isinstance(result, str):
        image["Error"] = result
    else:
        image["ImageContent"] = base64.b64encode(result).decode()


def _by_fragment(
    times: list[int], metas: list[FragmentMeta], producer: bool
) -> list[tuple[FragmentMeta, list[int]]]:
    """Which sample times (their indices) fall in which fragment, by the fragments' starts."""
    groups: list[tuple[FragmentMeta, list[int]]] = []
    k = 0
    for i, t in enumerate(times):
        while k + 1 < len(metas) and metas[k + 1].start_ms(producer) <= t:
            k += 1
        if not metas or metas[k].start_ms(producer) > t:
            continue
        meta = metas[k]
        if t >= meta.start_ms(producer) + max(meta.duration_ms, 1):
            continue
        if groups and groups[-1][0] is meta:
            groups[-1][1].append(i)
        else:
            groups.append((meta, [i]))
    return groups


def _quality(config: Any) -> int:
    if not config:
        return 80
    text = config.get("JPEGQuality") if isinstance(config, dict) else None
    if not isinstance(text, str) or not text.isdigit() or not 1 <= int(text) <= 100:
        raise InvalidArgumentException("FormatConfig takes JPEGQuality, from 1 to 100.")
    return int(text)


def _token_index(token: str | None) -> int:
    if token is None:
        return 0
    (index,) = read_page_token(token, 1)
    if index < 0:
        raise InvalidArgumentException("The NextToken is not valid.")
    return index
