"""GetMedia: stream stored and live fragments as MKV chunks (spec §6).

Chunks go out in fragment-number order; once caught up the response follows
the live edge, and ends cleanly after an idle period so that clients resume
with the continuation token.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from contextlib import closing
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from openkvs.api.chunked import ChunkedBody
from openkvs.api.http import id_headers, read_json
from openkvs.api.live_edge import LiveFollower, send_growing
from openkvs.api.validate import Validator
from openkvs.clock import now_ms
from openkvs.errors import (
    ClientLimitExceededException,
    ConnectionLimitExceededException,
    InvalidArgumentException,
)
from openkvs.getmedia.chunk import chunk_parts, not_found_chunk
from openkvs.live.limits import Pacer, admit
from openkvs.live.state import StreamState
from openkvs.model import Fragment, FragmentMeta, FragmentNumber
from openkvs.store.base import FragmentGone

if TYPE_CHECKING:
    from openkvs.api.media import MediaService

VALIDATOR = Validator("kinesis-video-media")
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
        writer = await response.prepare(request)
        transport = request.transport
        if writer is None or transport is None:
            return response
        chunks = ChunkedBody(transport, writer, config.getmedia_idle_timeout_s)
        if start.seq is None:
            await chunks.send(not_found_chunk(start.missing or "0"))
        else:
            await serve_fragments(service, state, chunks, start.seq)
        await response.write_eof()
    except TimeoutError:
        transport = request.transport
        if transport is not None:  # it took nothing for the idle timeout: free its slot
            transport.abort()
    except (ConnectionError, RuntimeError):
        pass  # the reader went away
    finally:
        state.readers -= 1
    return response


async def serve_fragments(
    service: MediaService, state: StreamState, body: ChunkedBody, seq: int
) -> None:
    """Send from ``seq`` on; at the live edge follow the stream until idle or closed.

    A reader that hangs up while it waits must free its connection slot at once,
    not after the idle timeout, or it blocks new readers (3 per stream).
    """
    config = service.config
    pacer = Pacer(config.getmedia_max_bytes_per_second if config.rate_limits else 0)
    live = LiveFollower(body, pacer, config.getmedia_idle_timeout_s)
    with closing(ReadAhead(state)) as stored:
        while not state.closed and not service.closing:
            expired = service.store.expired(state.info.key)
            if expired is not None and seq <= expired.seq:
                # Retention deleted what this reader was due next: say so (4000), go on after it.
                await body.send(not_found_chunk(expired.number))
                seq = expired.seq + 1
                continue
            growing, sent = live.growing, live.sent  # set if the stream let go mid-fragment
            if growing is None and state.growing is not None and state.growing.seq == seq:
                growing, sent = state.growing, 0
            if growing is not None:
                now_sent = await send_growing(body, growing, sent, pacer)
                if now_sent is None:
                    live.growing, seq = None, growing.seq + 1
                    live.reset_idle()
                    continue
                await live.follow_from(state, seq, growing, now_sent)
                seq = live.seq
                continue
            meta = state.first_from(seq)
            if meta is None or meta.seq > state.last_completed_seq:
                if time.monotonic() >= live.idle_until or body.closed:
                    return
                await live.follow_from(state, seq, None, 0)
                seq = live.seq
                continue
            seq = meta.seq + 1
            fragment = await stored.fragment(meta)
            if fragment is None:
                await body.send(not_found_chunk(meta.number))
                continue
            await body.send(*chunk_parts(fragment, now_ms()))
            await pacer.spend(fragment.meta.size)
            live.reset_idle()


class ReadAhead:
    """One reader's stored fragments, a run at a time; the next run is read while this one
    is sent.

    The disk thread's preads (and CRCs of 1 MiB or more) run without the GIL, so
    reading the next run overlaps sending this one instead of following it.
    """

    def __init__(self, state: StreamState) -> None:
        self.state = state
        self.ready: deque[Fragment] = deque()  # the run being sent, in seq order
        self.next: tuple[int, asyncio.Future[list[Fragment]]] | None = None

    async def fragment(self, meta: FragmentMeta) -> Fragment | None:
        """``meta``'s fragment, from the run in hand or a new one; None if it is gone."""
        if not self.ready or self.ready[0].meta.seq != meta.seq:
            self.ready = deque(await self._run_from(meta))
        return self.ready.popleft() if self.ready else None

    async def _run_from(self, first: FragmentMeta) -> list[Fragment]:
        """``read_run(first)``, read already if it was next; starts reading the run after it."""
        if self.next is not None and self.next[0] == first.seq:
            run = await self.next[1]
        else:
            self.close()
            run = await read_run(self.state, first)
        self.next = None
        following = self.state.first_from(run[-1].meta.seq + 1) if run else None
        if following is not None and following.seq <= self.state.last_completed_seq:
            self.next = (following.seq, asyncio.ensure_future(read_run(self.state, following)))
        return run

    def close(self) -> None:
        if self.next is not None:
            self.next[1].cancel()
            self.next = None


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


__all__ = ["get_media"]
