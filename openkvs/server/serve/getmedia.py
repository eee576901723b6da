"""GetMedia: stream stored and live fragments as MKV chunks (spec §6).

Chunks go out in fragment-number order; once caught up the response follows
the live edge, and ends cleanly after an idle period so that clients resume
with the continuation token. Where to go next is ``reader.next_step`` (pure);
this module moves the bytes. After the 200 every failure is in band: a
fragment that cannot be read is a 4000 chunk and the read goes on, anything
else a 5000 chunk and a clean end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from aiohttp import web

from openkvs.clock import now_ms
from openkvs.server.control.plane import ControlPlane, store_errors
from openkvs.server.errors import ClientLimitExceededException, InvalidArgumentException
from openkvs.server.http import read_json
from openkvs.server.model import Fragment, FragmentMeta, FragmentNumber
from openkvs.server.nodes.forward import Forwarder
from openkvs.server.runtime.limits import Pacer, admit
from openkvs.server.runtime.registry import Runtimes
from openkvs.server.runtime.stream import GrowingFragment, StreamRuntime
from openkvs.server.serve.chunked import ChunkedBody, begin_chunks, chunks_response
from openkvs.server.serve.live_edge import LiveFollower, send_growing
from openkvs.server.serve.reader import End, Forward, Serve, SkipExpired, next_step
from openkvs.server.store.base import ReadOutcome
from openkvs.server.validate import Validator, parse_timestamp
from openkvs.wire import error_ids
from openkvs.wire.chunk import error_chunk, not_found_chunk

log = logging.getLogger("openkvs.getmedia")

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


async def start_position(stream: StreamRuntime, selector: dict[str, Any]) -> Start:
    kind = selector.get("StartSelectorType")
    if kind not in SELECTOR_TYPES:
        raise InvalidArgumentException(
            f"StartSelector.StartSelectorType must be one of {', '.join(SELECTOR_TYPES)}."
        )
    edge = stream.last_completed_seq + 1
    if kind == "NOW":
        return Start(edge)
    if kind == "EARLIEST":
        first = await stream.completed_from(0, 1)
        return Start(first[0].seq if first else edge)
    if kind in ("FRAGMENT_NUMBER", "CONTINUATION_TOKEN"):
        name = "AfterFragmentNumber" if kind == "FRAGMENT_NUMBER" else "ContinuationToken"
        raw = _member(selector, name, kind)
        number = _fragment_number(raw, name)
        found = await stream.find(number) if number is not None else None
        return Start(found.seq + 1) if found else Start(missing=raw)
    at = parse_timestamp(_member(selector, "StartTimestamp", kind))
    meta = await stream.containing(at, producer=kind == "PRODUCER_TIMESTAMP")
    return Start(meta.seq if meta else edge)


async def get_media(
    control: ControlPlane, runtimes: Runtimes, forwarder: Forwarder, request: web.Request
) -> web.StreamResponse:
    body = await read_json(request)
    VALIDATOR.check("GetMedia", body)  # types, enums, patterns and lengths from the model
    selector = body.get("StartSelector")
    if not isinstance(selector, dict):
        raise InvalidArgumentException("StartSelector is required.")
    info = await control.lookup(body.get("StreamName"), body.get("StreamARN"))
    if info.data_retention_hours <= 0:  # its fragments live in its owner's memory only
        with store_errors(info.name):
            relayed = await forwarder.get_media(request, info.key)
        if relayed is not None:
            return relayed
    stream = await runtimes.get(info)
    start = await start_position(stream, selector)
    config = runtimes.config
    calls_per_second = config.getmedia_calls_per_second
    if config.rate_limits and not admit(stream.get_calls, time.monotonic(), calls_per_second):
        runtimes.metrics.quota_refusals.labels("GetMedia").inc()
        raise ClientLimitExceededException(
            "GetMedia calls per second for this stream exceeded. Retry after a moment."
        )
    response = chunks_response(request)
    metrics = runtimes.metrics
    counter = metrics.bytes_out.labels(metrics.stream(info.name))
    with (
        stream.reader(config.getmedia_max_connections),
        metrics.getmedia_sessions.track_inprogress(),
    ):
        try:
            chunks = await begin_chunks(
                request, response, config.getmedia_idle_timeout_s, counter.inc
            )
            if chunks is None:
                return response
            if start.seq is None:
                await chunks.send(not_found_chunk(start.missing or "0"))
            else:
                await Read(runtimes, stream, chunks, start.seq).run()
            await response.write_eof()
        except TimeoutError:
            transport = request.transport
            if transport is not None:  # it took nothing for the idle timeout: free its slot
                transport.abort()
        except (ConnectionError, RuntimeError):
            pass  # the reader went away
    return response


class Read:
    """One GetMedia read from ``seq`` on: stored runs, then the live edge until idle or closed.

    A reader that hangs up while it waits must free its connection slot at once,
    not after the idle timeout, or it blocks new readers (3 per stream).
    """

    def __init__(
        self, runtimes: Runtimes, stream: StreamRuntime, body: ChunkedBody, seq: int
    ) -> None:
        config, metrics = runtimes.config, runtimes.metrics
        self.runtimes, self.stream, self.body, self.seq = runtimes, stream, body, seq
        self.pacer = Pacer(config.getmedia_max_bytes_per_second if config.rate_limits else 0)
        self.live = LiveFollower(body, self.pacer, config.getmedia_idle_timeout_s, self.delivered)
        self.due: FragmentNumber | str = "0"  # the fragment a failure is reported for
        label = metrics.stream(stream.info.name)
        self.fragments, self.lag = metrics.fragments_out.labels(label), metrics.getmedia_lag
        self.live_readers, self.at_edge = metrics.live_readers.labels(label), False

    def delivered(self, millis_behind_now: int) -> None:
        """A fragment's chunk went out whole (metrics)."""
        self.fragments.inc()
        self.lag.observe(max(0, millis_behind_now) / 1000)

    def edge(self, at_edge: bool) -> None:
        """Whether the read is at the live edge now or catching up (a gauge counts the former)."""
        if at_edge != self.at_edge:
            self.at_edge = at_edge
            self.live_readers.inc(1 if at_edge else -1)

    async def run(self) -> None:
        failed, gone = False, None
        async with asyncio.TaskGroup() as tasks:  # raised inside, an error would come out grouped
            ahead = ReadAhead(self.stream, tasks)
            try:
                await self.serve(ahead)
            except (ConnectionError, TimeoutError) as exc:
                gone = exc
            except Exception:
                log.exception("getmedia failed", extra={"stream": self.stream.info.name})
                failed = True
            finally:
                ahead.close()
                self.edge(False)
        if gone is not None:
            raise gone
        if failed:
            await self.body.send(error_chunk(self.due, error_ids.INTERNAL_ERROR))

    async def serve(self, ahead: ReadAhead) -> None:
        stream, live, body = self.stream, self.live, self.body
        while not self.runtimes.closing:
            if live.growing is not None:  # the stream let go of this reader mid-fragment
                await self.forward(live.growing, live.sent)
                continue
            expired = await stream.store.expired(stream.info.key)
            outcome = await ahead.next()
            if outcome is not None and (expired is None or outcome.meta.seq > expired.seq):
                await self.send(outcome)
                continue
            ahead.close()  # what was read ahead may have expired since: say so instead
            completed = await stream.completed_from(self.seq, READ_AHEAD_FRAGMENTS)
            growing = stream.growing
            step = next_step(
                self.seq,
                completed[0] if completed else None,
                growing.seq if growing is not None else None,
                expired,
                stream.closed,
                time.monotonic() >= live.idle_until or body.closed,
            )
            if isinstance(step, End):
                return
            if isinstance(step, SkipExpired):
                await body.send(not_found_chunk(step.meta.number))
                self.seq = step.meta.seq + 1
            elif isinstance(step, Serve):
                await ahead.start(completed)
            elif isinstance(step, Forward) and growing is not None:
                await self.forward(growing, 0)
            else:
                self.edge(True)
                await live.follow_from(stream, self.seq, None, 0)
                self.seq = live.seq

    async def send(self, outcome: ReadOutcome) -> None:
        meta = outcome.meta
        self.due, self.seq = meta.number, meta.seq + 1
        if not isinstance(outcome, Fragment):  # Missing or Corrupt: the read goes on
            await self.body.send(not_found_chunk(meta.number))
            return
        now = now_ms()
        self.edge(False)
        await self.body.send(*outcome.chunk(now))
        self.delivered(now - meta.server_ms)
        await self.pacer.spend(meta.size)
        self.live.reset_idle()

    async def forward(self, growing: GrowingFragment, sent: int) -> None:
        """The growing fragment from piece ``sent`` on, then follow the stream."""
        self.due = growing.number
        self.edge(True)
        now_sent = await send_growing(self.body, growing, sent, self.pacer, self.delivered)
        if now_sent is None:
            self.live.growing, self.seq = None, growing.seq + 1
            self.live.reset_idle()
            return
        await self.live.follow_from(self.stream, growing.seq, growing, now_sent)
        self.seq = self.live.seq


class ReadAhead:
    """One read's stored fragments, a run at a time; the next run is read while this one
    is sent, by a task of the read's own TaskGroup.

    The disk thread's preads (and CRCs of 1 MiB or more) run without the GIL, so
    reading the next run overlaps sending this one instead of following it. A run
    is consecutive completed fragments: none can appear between them later.
    """

    def __init__(self, stream: StreamRuntime, tasks: asyncio.TaskGroup) -> None:
        self.stream, self.tasks = stream, tasks
        self.ready: deque[ReadOutcome] = deque()
        self.following: asyncio.Task[list[ReadOutcome] | Exception] | None = None

    async def next(self) -> ReadOutcome | None:
        """The next fragment of the run in hand, or of the one read ahead; None at the end."""
        if not self.ready and self.following is not None:
            run, self.following = await self.following, None
            if isinstance(run, Exception):
                raise run
            await self._take(run)
        return self.ready.popleft() if self.ready else None

    async def start(self, completed: list[FragmentMeta]) -> None:
        """Read a run beginning with ``completed`` (the first fragments from the cursor)."""
        await self._take(await self.stream.fetch(_run(completed)))

    async def _take(self, run: list[ReadOutcome]) -> None:
        self.ready = deque(run)
        if run:
            after = await self.stream.completed_from(run[-1].meta.seq + 1, READ_AHEAD_FRAGMENTS)
            if after:
                self.following = self.tasks.create_task(self._fetch(_run(after)))

    async def _fetch(self, metas: list[FragmentMeta]) -> list[ReadOutcome] | Exception:
        """A failure is handed to the read (``next``), not to the TaskGroup."""
        try:
            return await self.stream.fetch(metas)
        except Exception as exc:
            return exc

    def close(self) -> None:
        """Drop the run in hand and stop reading ahead; the TaskGroup awaits the cancelled task."""
        self.ready.clear()
        if self.following is not None:
            self.following.cancel()
            self.following = None


def _run(metas: list[FragmentMeta]) -> list[FragmentMeta]:
    """The first of ``metas`` and those after it up to READ_AHEAD_BYTES: one disk trip.

    A reader catching up would otherwise pay one trip to the disk thread per
    fragment, which dominates with small fragments.
    """
    run, size = metas[:1], metas[0].size
    for meta in metas[1:]:
        if size >= READ_AHEAD_BYTES:
            break
        run.append(meta)
        size += meta.size
    return run


__all__ = ["get_media"]
