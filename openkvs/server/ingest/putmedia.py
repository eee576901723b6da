"""PutMedia: one producer connection streaming MKV in and ACKs out (spec §4, §10).

The thin asyncio shell around three pure pieces: the Fragmenter cuts the body
into fragments, the stream's runtime numbers them (or recognises replays) and
shows them to live readers, and the ``IngestSession`` table says which ACK is
due. The 200 goes out before the body is read; each ACK is one HTTP chunk;
PERSISTED only once the store has fsynced the fragment (for a replay, its
original). Two tasks, owned by one TaskGroup: the body reader and the storer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from aiohttp import web

from openkvs.clock import now_ms
from openkvs.server.config import Config
from openkvs.server.control.plane import ControlPlane, store_errors
from openkvs.server.errors import ClientLimitExceededException, InvalidArgumentException
from openkvs.server.http import id_headers
from openkvs.server.ingest.session import IngestSession
from openkvs.server.metrics import Metrics
from openkvs.server.model import Fragment
from openkvs.server.nodes.forward import Forwarder
from openkvs.server.runtime.limits import Pacer, admit
from openkvs.server.runtime.registry import Runtimes
from openkvs.server.runtime.stream import Begin, Publisher, Refused, Replaced, StreamRuntime
from openkvs.server.store.base import StoreError, StreamNotFound, WriterClaim
from openkvs.wire import error_ids
from openkvs.wire.acks import Ack
from openkvs.wire.fragmenter import FragmentBegun, FragmentDone, Fragmenter, FragmenterEvent

log = logging.getLogger("openkvs.putmedia")

MAX_BATCH = 64
"""Most fragments one group commit takes."""


@dataclass(slots=True)
class _Store:
    fragment: Fragment
    timecode: int
    received: float  # time.monotonic() of its last byte


@dataclass(slots=True)
class _Replay:
    """A replayed fragment: PERSISTED once its original is durable."""

    durable: asyncio.Future[bool]
    timecode: int
    number: str


_Item = _Store | _Replay


class PutMedia:
    """One PutMedia request, from the 200 to the last ACK."""

    def __init__(
        self,
        runtime: StreamRuntime,
        config: Config,
        request: web.Request,
        response: web.StreamResponse,
        fragmenter: Fragmenter,
        metrics: Metrics,
    ) -> None:
        self.runtime, self.config, self.request, self.response = runtime, config, request, response
        self.fragmenter, self.metrics = fragmenter, metrics
        self.table = IngestSession(runtime.persistent)
        self.queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self.write_lock = asyncio.Lock()
        self.current: Begin | None = None
        self.stopping = False
        self.kicked: int | None = None
        self.refusal: tuple[int, int | None, str | None] | None = None
        self.reading: asyncio.Task[None] | None = None
        self.unsettled: dict[int, Fragment] = {}  # seq -> received, neither stored nor given up
        self.unsettled_bytes = 0
        self.settled = asyncio.Event()  # set whenever some of them are settled

    async def send(self, ack: Ack | None) -> None:
        if ack is None:
            return
        self.metrics.acks.labels(ack.event_type, str(ack.error_id or "")).inc()
        async with self.write_lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.response.write(bytes(ack))

    def kick(self, error_id: int | None) -> None:
        """From the runtime: a newer PutMedia took over (None), or the stream closed."""
        self.kicked = error_id
        self.stop_reading()

    def stop_reading(self) -> None:
        self.stopping = True
        if self.reading is not None and self.reading is not asyncio.current_task():
            self.reading.cancel()

    async def run(self, start_ok: bool) -> None:
        runtime = self.runtime
        try:
            publisher = runtime.claim_publisher(self.kick)
        except Replaced:
            await self.send(self.table.refused(error_ids.STREAM_NOT_ACTIVE, None, None))
            return
        try:
            if not start_ok:
                error = error_ids.INVALID_PRODUCER_TIMESTAMP
                await self.send(self.table.refused(error, None, None))
                return
            try:
                claim = await runtime.take_turn(publisher, self.config.putmedia_takeover_timeout_s)
            except Replaced:
                await self.say_kicked()
                return
            except StoreError as exc:  # deleted, or the store is away (the producer retries)
                gone = isinstance(exc, StreamNotFound)
                if not gone:
                    log.error(
                        "claim failed", extra={"stream": runtime.info.name, "error": str(exc)}
                    )
                error = error_ids.STREAM_NOT_ACTIVE if gone else error_ids.PERSIST_FAILED
                await self.send(self.table.refused(error, None, None))
                return
            self.table.turn()
            try:
                async with asyncio.TaskGroup() as tasks:
                    self.reading = tasks.create_task(self.read_body(publisher))
                    tasks.create_task(self.store(claim))
            except* Exception:  # after the 200, a bug is an ERROR ack, not a broken response
                log.exception("putmedia failed", extra={"stream": runtime.info.name})
                await self.send(self.table.refused(error_ids.INTERNAL_ERROR, None, self.number))
        finally:
            if self.unsettled:
                await self.settle_the_rest()
            runtime.release_publisher(publisher)

    async def settle_the_rest(self) -> None:
        """The session ended before it learnt whether these were stored (a cancelled append
        may still have landed): ask the store, and give up the rest."""
        stored: list[Fragment] = []
        lost: list[Fragment] = []
        try:
            for fragment in self.unsettled.values():
                found = await self.runtime.store.fragment(
                    self.runtime.info.key, fragment.meta.number
                )
                (stored if found is not None else lost).append(fragment)
        except BaseException:  # cancelled, or the store cannot say: nothing more is known
            known = {f.meta.seq for f in stored}
            lost = [f for f in self.unsettled.values() if f.meta.seq not in known]
            raise
        finally:
            self.runtime.stored(stored)
            self.runtime.store_failed(lost)
            self.settle([*stored, *lost])

    async def say_kicked(self) -> None:
        if self.kicked is not None:
            await self.send(self.table.refused(self.kicked, self.fragmenter.timecode, self.number))

    @property
    def number(self) -> str | None:
        return str(self.current.number) if self.current is not None else None

    # ---- reading the body ------------------------------------------------------------------

    async def read_body(self, publisher: Publisher) -> None:
        try:
            await self.read_loop(publisher)
        except asyncio.CancelledError:
            if not self.stopping:
                raise
        except Refused as exc:
            log.info(
                "putmedia refused",
                extra={
                    "stream": self.runtime.info.name,
                    "error_id": exc.error_id,
                    "reason": str(exc),
                },
            )
            self.refusal = (exc.error_id, self.fragmenter.timecode, self.number)
        except Replaced:
            pass
        finally:
            self.runtime.fail_fragment(publisher)
            self.table.body_ended()
            self.queue.put_nowait(None)
        if self.kicked is not None:
            await self.say_kicked()  # at once: what is queued will not be stored

    async def read_loop(self, publisher: Publisher) -> None:
        content, config, fragmenter = self.request.content, self.config, self.fragmenter
        pacer = Pacer(config.putmedia_max_bytes_per_second if config.rate_limits else 0)
        last_data = last_ack = time.monotonic()
        while not self.stopping:
            await self.room()
            timeout = config.putmedia_idle_ack_interval_s
            deadline = fragmenter.deadline_ms()
            if deadline is not None:
                timeout = min(timeout, max(0.0, (deadline - now_ms()) / 1000))
            try:
                async with asyncio.timeout(timeout):
                    data = await content.readany()
            except TimeoutError:
                await self.handle(publisher, fragmenter.tick(now_ms()))
                if time.monotonic() - last_data >= config.putmedia_idle_timeout_s:
                    return
                if time.monotonic() - last_ack >= config.putmedia_idle_ack_interval_s:
                    await self.send(self.table.idle())
                    last_ack = time.monotonic()
                continue
            except (ConnectionError, asyncio.IncompleteReadError, web.HTTPException):
                return
            if self.stopping:
                return  # nothing read after a kick counts
            last_data = last_ack = time.monotonic()
            await pacer.spend(len(data))
            events = fragmenter.feed(data, now_ms()) if data else fragmenter.feed_eof(now_ms())
            await self.handle(publisher, events)
            self.runtime.grow_fragment(publisher)
            if (error := fragmenter.error) is not None:
                raise Refused(str(error), error.error_id)
            if not data:
                return

    async def room(self) -> None:
        """Read no more while what waits to be stored is over the limit (a slow disk): TCP
        then slows the producer down, instead of memory filling up."""
        limit = 2 * self.config.max_fragment_bytes
        while self.unsettled_bytes > limit and not self.stopping:
            self.settled.clear()
            await self.settled.wait()

    def settle(self, fragments: list[Fragment]) -> None:
        for fragment in fragments:
            if self.unsettled.pop(fragment.meta.seq, None) is not None:
                self.unsettled_bytes -= fragment.meta.size
        self.settled.set()

    async def handle(self, publisher: Publisher, events: list[FragmenterEvent]) -> None:
        for event in events:
            if self.stopping:
                return
            if isinstance(event, FragmentBegun):
                await self.begun(publisher, event)
            else:
                await self.done(publisher, event)

    async def begun(self, publisher: Publisher, event: FragmentBegun) -> None:
        self.current = await self.runtime.begin_fragment(publisher, event)
        replay = self.current.original is not None
        await self.send(self.table.begun(event.timecode, str(self.current.number), replay))

    async def done(self, publisher: Publisher, event: FragmentDone) -> None:
        begin = self.current
        assert begin is not None
        number = str(begin.number)
        new = begin.original is None
        if new:
            fragment = self.runtime.complete_fragment(publisher, begin.number, event, notify=False)
            stream = self.metrics.stream(self.runtime.info.name)
            self.metrics.fragments_in.labels(stream).inc()
            self.metrics.bytes_in.labels(stream).inc(fragment.meta.size)
            self.metrics.last_fragment.labels(stream).set_to_current_time()
            if self.runtime.persistent:
                self.unsettled[fragment.meta.seq] = fragment
                self.unsettled_bytes += fragment.meta.size
                self.queue.put_nowait(_Store(fragment, event.timecode, time.monotonic()))
        elif self.runtime.persistent and begin.durable is not None:
            self.queue.put_nowait(_Replay(begin.durable, event.timecode, number))
        self.current = None
        await self.send(self.table.received(event.timecode, number))
        if new:
            self.runtime.notify()  # the readers' tails after the producer's RECEIVED

    # ---- storing ---------------------------------------------------------------------------

    async def store(self, claim: WriterClaim) -> None:
        """Append in order; PERSISTED only after the store returns (fsynced).

        Whatever queued up during one append goes into the next as a batch, so
        the store can make them durable with one fdatasync (group commit).
        """
        held: deque[_Item | None] = deque()
        while (item := held.popleft() if held else await self.queue.get()) is not None:
            if isinstance(item, _Replay):
                if not await item.durable:
                    error = error_ids.PERSIST_FAILED
                    return await self.store_failed(error, item.timecode, item.number)
                await self.send(self.table.persisted(item.timecode, item.number))
                continue
            batch = [item]
            while len(batch) < MAX_BATCH and not self.queue.empty():
                more = self.queue.get_nowait()
                if not isinstance(more, _Store):
                    held.append(more)
                    break
                batch.append(more)
            fragments = [b.fragment for b in batch]
            try:
                await self.runtime.store.append(claim, fragments)
            except StoreError as exc:
                log.error(
                    "persist failed", extra={"stream": self.runtime.info.name, "error": str(exc)}
                )
                gone = isinstance(exc, StreamNotFound)
                error = error_ids.STREAM_NOT_ACTIVE if gone else error_ids.PERSIST_FAILED
                number = str(fragments[0].meta.number)
                return await self.store_failed(error, batch[0].timecode, number)
            self.runtime.stored(fragments)
            self.settle(fragments)
            now = time.monotonic()
            for done in batch:
                self.metrics.persisted_latency.observe(now - done.received)
                await self.send(self.table.persisted(done.timecode, str(done.fragment.meta.number)))
        if self.refusal is not None:
            await self.send(self.table.refused(*self.refusal))
        self.table.finished()

    async def store_failed(self, error_id: int, timecode: int, number: str) -> None:
        """After a failed append nothing later may be stored: every fragment received and
        not yet stored (the failed batch, what is queued behind it) is given up."""
        self.stop_reading()
        while not self.queue.empty():
            self.queue.get_nowait()
        lost = list(self.unsettled.values())
        self.runtime.store_failed(lost)
        self.settle(lost)
        await self.send(self.table.refused(error_id, timecode, number))


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


async def put_media(
    control: ControlPlane, runtimes: Runtimes, forwarder: Forwarder, request: web.Request
) -> web.StreamResponse:
    headers, config = request.headers, runtimes.config
    info = await control.lookup(headers.get("x-amzn-stream-name"), headers.get("x-amzn-stream-arn"))
    timecode_type = headers.get("x-amzn-fragment-timecode-type", "")
    if timecode_type not in ("ABSOLUTE", "RELATIVE"):
        raise InvalidArgumentException(
            "x-amzn-fragment-timecode-type must be ABSOLUTE or RELATIVE."
        )
    with store_errors(info.name):
        relayed = await forwarder.put_media(request, info.key)
    if relayed is not None:
        return relayed
    runtime = await runtimes.get(info)
    calls = config.putmedia_calls_per_second
    if config.rate_limits and not admit(runtime.put_calls, time.monotonic(), calls):
        runtimes.metrics.quota_refusals.labels("PutMedia").inc()
        raise ClientLimitExceededException("PutMedia calls per second for this stream exceeded.")
    start_ms, start_ok = producer_start_ms(headers.get("x-amzn-producer-start-timestamp"))
    fragmenter = Fragmenter(
        relative=timecode_type == "RELATIVE",
        producer_start_ms=start_ms,
        max_fragment_bytes=config.max_fragment_bytes,
        max_duration_ms=config.max_fragment_duration_ms,
        max_tracks=config.max_tracks,
        max_header_bytes=config.max_header_bytes,
    )
    response = web.StreamResponse(status=200, headers=id_headers(request))
    response.content_type = "application/json"
    response.enable_chunked_encoding()
    response.force_close()
    await response.prepare(request)
    await PutMedia(runtime, config, request, response, fragmenter, runtimes.metrics).run(start_ok)
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
    return response
