"""PutMedia: one producer connection streaming MKV in and ACKs out (spec §4, §10).

The 200 goes out before the body is read; the body is fed to the sans-I/O
Fragmenter as it arrives; each ACK is one HTTP chunk. Fragments are made
visible to readers on RECEIVED and acknowledged PERSISTED only after the store
has fsynced them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from aiohttp import web

from openkvs.api.http import id_headers
from openkvs.clock import now_ms
from openkvs.errors import ClientLimitExceededException, InvalidArgumentException
from openkvs.ingest.fragmenter import (
    ERROR_PRODUCER_TIMESTAMP,
    FragmentBegun,
    FragmentDone,
    Fragmenter,
    FragmenterEvent,
)
from openkvs.live.limits import Pacer, admit
from openkvs.live.state import GrowingFragment, StreamState
from openkvs.model import Fragment, FragmentMeta, FragmentNumber
from openkvs.store.base import StoreError

if TYPE_CHECKING:
    from openkvs.api.media import MediaService

log = logging.getLogger("openkvs.putmedia")

ERROR_TIMECODE_NOT_INCREASING = 4004
ERROR_STREAM_DELETED = 4008
ERROR_PERSIST = 5001


class Rejected(Exception):
    """Ends a PutMedia with an ERROR ack."""

    def __init__(self, message: str, error_id: int, timecode: int | None) -> None:
        super().__init__(message)
        self.error_id, self.timecode = error_id, timecode


MAX_BATCH = 64
"""Most fragments one group commit takes."""


class PutMediaSession:
    """One PutMedia request: reads the body, writes ACKs, persists fragments in order."""

    def __init__(
        self,
        service: MediaService,
        state: StreamState,
        request: web.Request,
        response: web.StreamResponse,
        fragmenter: Fragmenter,
    ) -> None:
        self.service, self.state, self.request, self.response = service, state, request, response
        self.fragmenter = fragmenter
        self.config = service.config
        self.persist_queue: asyncio.Queue[tuple[Fragment, int] | None] = asyncio.Queue()
        self.write_lock = asyncio.Lock()
        self.current: FragmentNumber | None = None
        self.duplicate: FragmentMeta | None = None
        self.kicked: int | None = None
        self.stopping = False
        self.growing: GrowingFragment | None = None
        self.reading: asyncio.Task[None] | None = None
        self.finished = asyncio.Event()
        self.errored = False

    async def ack(
        self,
        event: str,
        timecode: int | None = None,
        number: FragmentNumber | None = None,
        error_id: int | None = None,
    ) -> None:
        message: dict[str, object] = {"EventType": event}
        if timecode is not None:
            message["FragmentTimecode"] = timecode
        if number is not None:
            message["FragmentNumber"] = str(number)
        if error_id is not None:
            message["ErrorId"] = error_id
        async with self.write_lock:
            if self.errored:
                return  # an ERROR ends the conversation: nothing may follow it
            self.errored = event == "ERROR"
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.response.write(
                    json.dumps(message, separators=(",", ":")).encode() + b"\n"
                )

    def kick(self, error_id: int | None = None) -> None:
        """Stop reading (a newer PutMedia took over, the stream was deleted, shutdown)."""
        self.kicked, self.stopping = error_id, True
        if self.reading is not None:
            self.reading.cancel()

    async def run(self) -> None:
        persister = asyncio.create_task(self.persist_loop())
        self.reading = asyncio.create_task(self.read_loop())
        try:
            await self.reading
        except asyncio.CancelledError:
            if self.kicked is not None:
                await self.ack("ERROR", self.fragmenter.timecode, self.current, self.kicked)
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                persister.cancel()
                raise
        except Rejected as exc:
            log.info(
                "putmedia rejected",
                extra={
                    "stream": self.state.info.name,
                    "error_id": exc.error_id,
                    "reason": str(exc),
                },
            )
            await self.persist_queue.put(None)
            await persister
            await self.ack("ERROR", exc.timecode, self.current, exc.error_id)
            return
        await self.persist_queue.put(None)
        await persister

    async def read_loop(self) -> None:
        content = self.request.content
        config = self.config
        pacer = Pacer(config.putmedia_max_bytes_per_second if config.rate_limits else 0)
        last_data = last_ack = time.monotonic()
        while True:
            timeout = config.putmedia_idle_ack_interval_s
            deadline = self.fragmenter.deadline_ms()
            if deadline is not None:
                timeout = min(timeout, max(0.0, (deadline - now_ms()) / 1000))
            try:
                data = await asyncio.wait_for(content.readany(), timeout)
            except TimeoutError:
                await self.handle(self.fragmenter.tick(now_ms()))
                idle = time.monotonic() - last_data
                if idle >= config.putmedia_idle_timeout_s:
                    return
                if time.monotonic() - last_ack >= config.putmedia_idle_ack_interval_s:
                    await self.ack("IDLE")
                    last_ack = time.monotonic()
                continue
            except (ConnectionError, asyncio.IncompleteReadError, web.HTTPException):
                return
            last_data = last_ack = time.monotonic()
            await pacer.spend(len(data))
            fragmenter = self.fragmenter
            events = fragmenter.feed(data, now_ms()) if data else fragmenter.feed_eof(now_ms())
            await self.handle(events)
            if self.growing is not None:
                self.state.notify()  # more of the growing fragment for live readers
            if (error := fragmenter.error) is not None:
                raise Rejected(str(error), error.error_id, error.timecode)
            if not data:
                return

    async def handle(self, events: list[FragmenterEvent]) -> None:
        for event in events:
            if self.stopping:
                # Python 3.11's wait_for can swallow the cancel of a kick: nothing read
                # after it may count (a failed persist reset the stream's last timecode).
                raise asyncio.CancelledError
            if isinstance(event, FragmentBegun):
                await self.begun(event)
            else:
                await self.done(event)

    async def begun(self, event: FragmentBegun) -> None:
        state = self.state
        if state.closed:
            raise Rejected("the stream was deleted", ERROR_STREAM_DELETED, event.timecode)
        if event.producer_ms <= state.last_frame_ms:
            self.duplicate = state.with_producer_ms(event.producer_ms)
            if self.duplicate is None:
                raise Rejected(
                    "fragment timecode is not increasing",
                    ERROR_TIMECODE_NOT_INCREASING,
                    event.timecode,
                )
            self.current = self.duplicate.number
        else:
            self.duplicate = None
            self.current = state.allocate(event.server_ms)
            self.publish_growing(event)
        await self.ack("BUFFERING", event.timecode, self.current)

    def publish_growing(self, event: FragmentBegun) -> None:
        """Let readers at the live edge forward this fragment while it arrives."""
        opened = self.fragmenter.open_fragment()
        if opened is None or self.current is None:
            return
        header, parts = opened
        number = self.current
        self.growing = self.state.growing = GrowingFragment(
            number.seq, str(number), event.server_ms, event.producer_ms, header, parts
        )
        self.state.notify()

    def end_growing(self, complete: bool) -> None:
        """The growing fragment is final (and about to be live) or will never be stored."""
        growing, self.growing = self.growing, None
        if growing is None:
            return
        growing.complete, growing.failed = complete, not complete
        if self.state.growing is growing:
            self.state.growing = None
        if not complete:
            self.state.notify()

    async def done(self, event: FragmentDone) -> None:
        number, state = self.current, self.state
        assert number is not None
        await self.ack("RECEIVED", event.timecode, number)
        if self.duplicate is not None:
            if state.persistent:
                await self.ack("PERSISTED", event.timecode, number)
            return
        state.last_frame_ms = event.last_frame_ms
        self.end_growing(complete=True)
        meta = FragmentMeta(
            number, event.server_ms, event.producer_ms, event.duration_ms, event.size
        )
        fragment = Fragment(meta, event.header, event.parts)
        config = self.config
        state.add_live(
            fragment, now_ms(), config.live_buffer_seconds * 1000, config.live_buffer_bytes
        )
        if state.persistent:
            await self.persist_queue.put((fragment, event.timecode))
        self.current = None

    async def persist_loop(self) -> None:
        """Append in order; ACK PERSISTED only after the store returns (fsynced).

        Whatever queued up during one append goes into the next as a batch, so
        the store can make them durable with one fdatasync (group commit).
        """
        state = self.state
        finished = False
        while not finished and (item := await self.persist_queue.get()) is not None:
            batch = [item]
            while not self.persist_queue.empty() and len(batch) < MAX_BATCH:
                more = self.persist_queue.get_nowait()
                if more is None:
                    finished = True
                    break
                batch.append(more)
            try:
                await self.service.store.append_batch(state.info.key, [f for f, _ in batch])
            except StoreError as exc:
                log.error("persist failed", extra={"stream": state.info.name, "error": str(exc)})
                for fragment, _ in batch:
                    state.drop_live(fragment.meta.seq)
                self.kick()
                self.drain()
                # The producer resends from here (e.g. once disk space returns): these
                # timecodes must read as new, not as a non-increasing 4004. No await
                # since the failure, so no fragment was received meanwhile.
                stored = self.service.store.index(state.info.key)
                state.last_frame_ms = stored[-1].producer_ms if stored else -1
                fragment, timecode = batch[0]
                await self.ack("ERROR", timecode, fragment.meta.number, ERROR_PERSIST)
                return
            for fragment, timecode in batch:
                await self.ack("PERSISTED", timecode, fragment.meta.number)

    def drain(self) -> None:
        """After a failed append nothing later may be stored: withdraw the queued fragments."""
        while not self.persist_queue.empty():
            item = self.persist_queue.get_nowait()
            if item is not None:
                self.state.drop_live(item[0].meta.seq)


def producer_start_ms(raw: str | None) -> tuple[int | None, bool]:
    """``x-amzn-producer-start-timestamp`` (decimal epoch seconds) in ms, and whether it parsed."""
    if raw is None:
        return None, True
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        return None, False
    if not value.is_finite() or value < 0 or value.adjusted() > 12:  # 1e999999 would hang
        return None, False
    return int(value * 1000), True


async def put_media(service: MediaService, request: web.Request) -> web.StreamResponse:
    headers = request.headers
    info = service.control.resolve(
        headers.get("x-amzn-stream-name"), headers.get("x-amzn-stream-arn")
    )
    timecode_type = headers.get("x-amzn-fragment-timecode-type", "")
    if timecode_type not in ("ABSOLUTE", "RELATIVE"):
        raise InvalidArgumentException(
            "x-amzn-fragment-timecode-type must be ABSOLUTE or RELATIVE."
        )
    state = service.state(info)
    calls_per_second = service.config.putmedia_calls_per_second
    if service.config.rate_limits and not admit(state.put_calls, time.monotonic(), calls_per_second):
        raise ClientLimitExceededException("PutMedia calls per second for this stream exceeded.")
    start_ms, start_ok = producer_start_ms(headers.get("x-amzn-producer-start-timestamp"))
    config = service.config
    fragmenter = Fragmenter(
        relative=timecode_type == "RELATIVE",
        producer_start_ms=start_ms,
        max_fragment_bytes=config.max_fragment_bytes,
        max_duration_ms=config.max_fragment_duration_ms,
        max_tracks=config.max_tracks,
    )
    response = web.StreamResponse(status=200, headers=id_headers(request))
    response.content_type = "application/json"
    response.enable_chunked_encoding()
    response.force_close()
    await response.prepare(request)
    session = PutMediaSession(service, state, request, response, fragmenter)
    previous = state.publisher
    if isinstance(previous, PutMediaSession):
        previous.kick()
        await previous.finished.wait()
    state.publisher = session
    try:
        if not start_ok:
            await session.ack("ERROR", error_id=ERROR_PRODUCER_TIMESTAMP)
        else:
            await session.run()
    finally:
        session.end_growing(complete=False)
        if state.publisher is session:
            state.publisher = None
        session.finished.set()
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
    return response
