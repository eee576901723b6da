"""Every stream's runtime, made on first use; retention; the sweep that ages live buffers.

The registry owns the runtimes and its own background tasks: ``start`` creates
them, ``stop`` cancels and awaits them after closing every stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from openkvs import clock
from openkvs.server.config import Config
from openkvs.server.metrics import Metrics
from openkvs.server.model import StreamInfo
from openkvs.server.nodes.ownership import Ownership
from openkvs.server.runtime.buffers import LiveBuffers
from openkvs.server.runtime.stream import BufferLimits, StreamRuntime
from openkvs.server.store.base import Store, StoreError
from openkvs.wire import error_ids

log = logging.getLogger("openkvs.runtime")

SWEEP_S = 1.0
CLOSE_TIMEOUT_S = 5.0


class Runtimes:
    def __init__(self, store: Store, config: Config) -> None:
        self.store, self.config = store, config
        self.buffers = LiveBuffers(config.live_buffer_total_bytes)
        self.limits = BufferLimits(config.live_buffer_seconds, config.live_buffer_bytes)
        self.metrics = Metrics(per_stream=config.metrics_per_stream)
        self._runtimes: dict[str, StreamRuntime] = {}
        self._loading: dict[str, asyncio.Future[StreamRuntime]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.closing = False

    async def get(self, info: StreamInfo) -> StreamRuntime:
        """The stream's runtime, made (and loaded from the store) on first use."""
        runtime = self._runtimes.get(info.key)
        if runtime is not None:
            runtime.info = info
            await runtime.catch_up()
            return runtime
        loading = self._loading.get(info.key)
        if loading is None:
            loading = self._loading[info.key] = asyncio.ensure_future(self._load(info))
        try:
            return await asyncio.shield(loading)
        finally:
            if loading.done():
                self._loading.pop(info.key, None)

    async def _load(self, info: StreamInfo) -> StreamRuntime:
        runtime = StreamRuntime(info, self.store, self.buffers, self.limits)
        await runtime.load()
        if info.status == "DELETING":  # deleted while it loaded: serve nothing, keep nothing
            runtime.close(error_ids.STREAM_NOT_ACTIVE)
            return runtime
        return self._runtimes.setdefault(info.key, runtime)

    async def close_stream(self, info: StreamInfo, error_id: int | None) -> None:
        """Close the stream's runtime and wait (bounded) for its publisher to drain."""
        loading = self._loading.get(info.key)
        if loading is not None:  # being made: let it finish, then close it
            with contextlib.suppress(Exception):
                await asyncio.shield(loading)
        runtime = self._runtimes.pop(info.key, None)
        if runtime is None:
            return
        await _wait(runtime.close(error_id))
        for fragment in runtime.live_fragments():
            self.buffers.released(fragment)

    def start(
        self, streams: Callable[[], Awaitable[Iterable[StreamInfo]]], ownership: Ownership
    ) -> None:
        """``streams`` lists every stream; ``ownership`` says whether this node runs the
        retention pass (one node of a cluster at a time)."""
        self._tasks = [
            asyncio.create_task(self._retention_loop(streams, ownership)),
            asyncio.create_task(self._sweep_loop()),
        ]

    async def stop(self) -> None:
        """Finish or reject in-flight work: publishers stop reading and drain their persists."""
        self.closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        drains = [event for r in self._runtimes.values() for event in r.close(None)]
        await _wait(drains)

    async def enforce_retention(
        self, streams: Iterable[StreamInfo], now_ms: int | None = None
    ) -> int:
        """Delete fragments older than each stream's DataRetentionInHours; returns how many.

        The store drops them from its index at once and deletes files in a worker
        thread, so PutMedia acks keep flowing. Copies in memory go too, so a reader
        never gets a deleted fragment from memory (GetMedia says 4000 instead).
        """
        now_ms = clock.now_ms() if now_ms is None else now_ms
        hour_ms = self.config.retention_unit_s * 1000
        deleted = 0
        for info in list(streams):
            if info.data_retention_hours <= 0:
                continue
            cutoff = now_ms - int(info.data_retention_hours * hour_ms)
            runtime = self._runtimes.get(info.key)
            if runtime is not None:
                runtime.drop_older(cutoff)
            try:
                deleted += await self.store.truncate_before(info.key, cutoff)
            except StoreError as exc:
                log.error("retention failed", extra={"stream": info.name, "error": str(exc)})
        return deleted

    async def _retention_loop(
        self, streams: Callable[[], Awaitable[Iterable[StreamInfo]]], ownership: Ownership
    ) -> None:
        """Run retention every --retention-interval-s; one bad pass never stops the next."""
        while True:
            try:
                async with ownership.exclusive("retention") as ours:
                    deleted = await self.enforce_retention(await streams()) if ours else 0
            except Exception:
                log.exception("retention pass failed")
            else:
                if deleted:
                    self.metrics.retention_deleted.inc(deleted)
                    log.info("retention deleted fragments", extra={"fragments": deleted})
            await asyncio.sleep(self.config.retention_interval_s)

    async def _sweep_loop(self) -> None:
        """Age the live buffers even when no fragment arrives to trigger it."""
        while True:
            await asyncio.sleep(SWEEP_S)
            now = clock.now_ms()
            for runtime in list(self._runtimes.values()):
                runtime.trim(now)


async def _wait(events: list[asyncio.Event]) -> None:
    if events:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.gather(*(event.wait() for event in events))
