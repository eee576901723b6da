"""GetMedia: stream stored and live fragments as MKV chunks (spec §6).

Chunks go out in fragment-number order; once caught up the response follows
the live edge, and ends cleanly after an idle period so that clients resume
with the continuation token.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from openkvs.api.http import id_headers, read_json
from openkvs.api.validate import Validator
from openkvs.clock import now_ms
from openkvs.config import Config
from openkvs.errors import (
    ClientLimitExceededException,
    ConnectionLimitExceededException,
    InvalidArgumentException,
)
from openkvs.getmedia.chunk import chunk_head, chunk_parts, chunk_tail, not_found_chunk
from openkvs.live.limits import Pacer, admit
from openkvs.live.state import GrowingFragment, StreamState
from openkvs.model import Fragment, FragmentMeta, FragmentNumber
from openkvs.store.base import FragmentGone

if TYPE_CHECKING:
    from openkvs.api.media import MediaService

VALIDATOR = Validator("kinesis-video-media")
CHUNK_FRAMING = 64  # more than the chunked encoding adds around one write
READ_AHEAD_BYTES = 4 << 20
READ_AHEAD_FRAGMENTS = 64
SELECTOR_TYPES = (
    "FRAGMENT_NUMBER",
    "SERVER_TIMESTAMP",
    "PRODUCER_TIMESTAMP",
    "NOW",
    "EARLIEST",
    "CONTINUATION_TOKEN",
)


def parse_timestamp(value: Any) -> int:
    """StartTimestamp as epoch ms: botocore sends epoch seconds; accept ISO-8601 too."""
    if isinstance(value, bool):
        raise InvalidArgumentException("StartTimestamp must be a timestamp.")
    if isinstance(value, int | float | str):
        try:
            return int(round(float(value) * 1000))
        except (ValueError, OverflowError):  # not a number, NaN, or out of range (1e308)
            pass
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except (ValueError, OverflowError):
            pass
    raise InvalidArgumentException("StartTimestamp must be a timestamp.")


def _member(selector: dict[str, Any], name: str, kind: str) -> Any:
    value = selector.get(name)
    if value is None:
        raise InvalidArgumentException(f"StartSelector.{name} is required for {kind}.")
    return value


def _fragment_number(value: Any, name: str) -> FragmentNumber | None:
    """A fragment number we issued, None for a well-formed one we could not have issued."""
    if not isinstance(value, str) or not value or len(value) > 128:
        raise InvalidArgumentException(
            f"StartSelector.{name} must be a string of 1-128 characters."
        )
    pattern_ok = (
        value.isdigit()
        if name == "AfterFragmentNumber"
        else all(c.isalnum() or c in "_.-" for c in value)
    )
    if not pattern_ok:
        raise InvalidArgumentException(f"StartSelector.{name} is not valid: {value!r}.")
    try:
        return FragmentNumber.parse(value)
    except ValueError:
        return None


class Start:
    """Where a read begins: a seq to serve from, or a fragment number that was not found."""

    def __init__(self, seq: int | None = None, missing: str | None = None) -> None:
        self.seq, self.missing = seq, missing


def start_position(state: StreamState, selector: dict[str, Any]) -> Start:
    kind = selector.get("StartSelectorType")
    if kind not in SELECTOR_TYPES:
        raise InvalidArgumentException(
            f"StartSelector.StartSelectorType must be one of {', '.join(SELECTOR_TYPES)}."
        )
    if kind == "NOW":
        return Start(state.last_completed_seq + 1)
    if kind == "EARLIEST":
        first = state.earliest()
        return Start(first.seq if first else state.last_completed_seq + 1)
    if kind in ("FRAGMENT_NUMBER", "CONTINUATION_TOKEN"):
        name = "AfterFragmentNumber" if kind == "FRAGMENT_NUMBER" else "ContinuationToken"
        raw = _member(selector, name, kind)
        number = _fragment_number(raw, name)
        found = state.find(number) if number is not None else None
        return Start(found.seq + 1) if found else Start(missing=raw)
    at = parse_timestamp(_member(selector, "StartTimestamp", kind))
    meta = state.containing(at, producer=kind == "PRODUCER_TIMESTAMP")
    return Start(meta.seq if meta else state.last_completed_seq + 1)


async def get_media(service: MediaService, request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    VALIDATOR.check("GetMedia", body)  # types, enums, patterns and lengths from the model
    name, arn = body.get("StreamName"), body.get("StreamARN")
    selector = body.get("StartSelector")
    if not isinstance(selector, dict):
        raise InvalidArgumentException("StartSelector is required.")
    info = service.control.resolve(name, arn)
    state = service.state(info)
    start = start_position(state, selector)
    config = service.config
    calls_per_second = config.getmedia_calls_per_second
    if config.rate_limits and not admit(state.get_calls, time.monotonic(), calls_per_second):
        raise ClientLimitExceededException(
            "GetMedia calls per second for this stream exceeded. Retry after a moment."
        )
    if state.readers >= config.getmedia_max_connections:
        raise ConnectionLimitExceededException(
            f"At most {config.getmedia_max_connections} GetMedia sessions per stream."
        )
    response = web.StreamResponse(status=200, headers=id_headers(request))
    response.content_type = "video/webm"
    response.enable_chunked_encoding()
    state.readers += 1
    try:
        await response.prepare(request)
        if start.seq is None:
            await response.write(not_found_chunk(start.missing or "0"))
        else:
            await serve_fragments(service, state, request, response, start.seq)
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the reader went away
    finally:
        state.readers -= 1
    return response


async def serve_fragments(
    service: MediaService,
    state: StreamState,
    request: web.Request,
    response: web.StreamResponse,
    seq: int,
) -> None:
    """Send from ``seq`` on; at the live edge wait, checking that the reader is still there.

    A reader that hangs up while we wait must free its connection slot at once,
    not after the idle timeout, or it blocks new readers (3 per stream).
    """
    config = service.config
    pacer = Pacer(config.getmedia_max_bytes_per_second if config.rate_limits else 0)
    idle_until = time.monotonic() + config.getmedia_idle_timeout_s
    ready: deque[Fragment] = deque()  # read ahead from the store, in seq order
    while not state.closed and not service.closing:
        expired = service.store.expired(state.info.key)
        if expired is not None and seq <= expired.seq:
            # Retention deleted what this reader was due next: say so (4000), go on after it.
            await response.write(not_found_chunk(expired.number))
            seq = expired.seq + 1
            continue
        growing = state.growing
        if growing is not None and growing.seq == seq:
            try:
                await send_growing(state, request, response, growing, pacer, config)
            except TimeoutError:
                raise _stopped_reading(request) from None
            seq = growing.seq + 1
            idle_until = time.monotonic() + config.getmedia_idle_timeout_s
            continue
        meta = state.first_from(seq)
        if meta is None or meta.seq > state.last_completed_seq:
            left = idle_until - time.monotonic()
            transport = request.transport
            if left <= 0 or transport is None or transport.is_closing():
                return
            await state.wait()
            continue
        seq = meta.seq + 1
        if not ready or ready[0].meta.seq != meta.seq:
            ready = deque(await read_run(state, meta))
        try:
            if not ready:
                await response.write(not_found_chunk(meta.number))
                continue
            await send_chunk(
                request, response, ready.popleft(), pacer, config.getmedia_idle_timeout_s
            )
        except TimeoutError:
            raise _stopped_reading(request) from None
        idle_until = time.monotonic() + config.getmedia_idle_timeout_s


def _stopped_reading(request: web.Request) -> ConnectionError:
    """A reader that takes nothing for the idle timeout would keep its slot: drop it."""
    if request.transport is not None:
        request.transport.abort()
    return ConnectionError("the reader stopped reading")


async def send_growing(
    state: StreamState,
    request: web.Request,
    response: web.StreamResponse,
    growing: GrowingFragment,
    pacer: Pacer,
    config: Config,
) -> None:
    """Forward a fragment while it arrives: head at once, elements as they come, tail at the end.

    A reader at the live edge then gets each frame as soon as the server has it,
    and its last byte right after the fragment completes. If the fragment is never
    stored, the half-sent chunk must not stand: the connection is aborted and the
    reader resumes from its last complete fragment.
    """
    timeout = config.getmedia_idle_timeout_s
    if not growing.head:
        growing.head = chunk_head(
            growing.header, growing.number, growing.server_ms, growing.producer_ms
        )
    await write(request, response, growing.head, timeout)
    sent = 0
    while True:
        parts = growing.parts
        while sent < len(parts):
            await write(request, response, parts[sent], timeout)
            if pacer.rate > 0:
                await pacer.spend(len(parts[sent]))
            sent += 1
        if growing.complete:
            break
        transport = request.transport
        if growing.failed or state.closed or transport is None or transport.is_closing():
            if transport is not None:
                transport.abort()
            raise ConnectionError("the fragment being forwarded was not stored")
        await state.wait()
    now = now_ms()
    if growing.tail is None or growing.tail[0] != now:
        growing.tail = (now, chunk_tail(growing.number, growing.server_ms, now))
    await write(request, response, growing.tail[1], timeout)


async def write(
    request: web.Request, response: web.StreamResponse, data: bytes, timeout: float
) -> None:
    """Write, giving up (TimeoutError) if the reader takes nothing for ``timeout`` seconds.

    A write that fits under the transport's high-water mark cannot wait for the
    reader, so it skips the timer: live readers write every frame.
    """
    transport = request.transport
    if transport is not None:
        room = transport.get_write_buffer_limits()[1] - transport.get_write_buffer_size()
        if len(data) + CHUNK_FRAMING <= room:
            await response.write(data)
            return
    async with asyncio.timeout(timeout):
        await response.write(data)


async def read_run(state: StreamState, first: FragmentMeta) -> list[Fragment]:
    """``first`` and the completed fragments after it, up to READ_AHEAD_BYTES, in one read.

    A reader catching up would otherwise pay one trip to the disk thread per
    fragment, which dominates with small fragments. Empty if ``first`` is gone.
    """
    metas, size = [first], first.size
    while size < READ_AHEAD_BYTES and len(metas) < READ_AHEAD_FRAGMENTS:
        following = state.first_from(metas[-1].seq + 1)
        if following is None or following.seq > state.last_completed_seq:
            break
        metas.append(following)
        size += following.size
    try:
        return await state.fetch_batch(metas)
    except FragmentGone:
        if len(metas) == 1:
            return []
    try:
        return await state.fetch_batch([first])  # a later one went: the rest is retried then
    except FragmentGone:
        return []


async def send_chunk(
    request: web.Request,
    response: web.StreamResponse,
    fragment: Fragment,
    pacer: Pacer,
    write_timeout: float,
) -> None:
    for part in chunk_parts(fragment, now_ms()):
        await write(request, response, part, write_timeout)
    await pacer.spend(fragment.meta.size)


__all__ = ["get_media"]
