"""The media data plane: per-stream state, PutMedia, GetMedia and retention."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from openkvs import clock
from openkvs.api import getmedia, putmedia
from openkvs.api.control import ControlPlane
from openkvs.config import Config
from openkvs.live.state import StreamState
from openkvs.model import StreamInfo
from openkvs.store.base import Store, StoreError

log = logging.getLogger("openkvs.media")


class MediaService:
    """Owns every stream's runtime state; handlers are named for the AWS operation."""

    def __init__(self, store: Store, control: ControlPlane, config: Config) -> None:
        self.store, self.control, self.config = store, control, config
        self.states: dict[str, StreamState] = {}
        self.closing = False
        self._retention: asyncio.Task[None] | None = None
        control.add_listener(self.stream_deleted)

    def state(self, info: StreamInfo) -> StreamState:
        state = self.states.get(info.key)
        if state is None:
            state = self.states[info.key] = StreamState(info, self.store)
        state.info = info
        return state

    def stream_deleted(self, info: StreamInfo) -> None:
        state = self.states.pop(info.key, None)
        if state is None:
            return
        state.close()
        if isinstance(state.publisher, putmedia.PutMediaSession):
            state.publisher.kick(putmedia.ERROR_STREAM_DELETED)

    async def start(self) -> None:
        self._retention = asyncio.create_task(self._retention_loop())

    async def stop(self) -> None:
        """Finish or reject in-flight work: publishers stop reading and drain their persists."""
        self.closing = True
        if self._retention:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
        publishers = []
        for state in self.states.values():
            state.close()
            if isinstance(state.publisher, putmedia.PutMediaSession):
                state.publisher.kick()
                publishers.append(state.publisher.finished.wait())
        if publishers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*publishers), 5.0)

    async def put_media(self, request: web.Request) -> web.StreamResponse:
        return await putmedia.put_media(self, request)

    async def get_media(self, request: web.Request) -> web.StreamResponse:
        return await getmedia.get_media(self, request)

    async def enforce_retention(self, now_ms: int | None = None) -> int:
        """Delete fragments older than each stream's DataRetentionInHours; returns how many.

        The store drops them from its index at once and deletes files in a worker
        thread, so PutMedia acks keep flowing. Live copies go too, so a reader
        never gets a deleted fragment from memory (GetMedia says 4000 instead).
        """
        now_ms = clock.now_ms() if now_ms is None else now_ms
        hour_ms = self.config.retention_unit_s * 1000
        deleted = 0
        for info in self.control.all_streams():
            if not self.store.index(info.key):
                continue
            cutoff = now_ms - int(info.data_retention_hours * hour_ms)
            state = self.states.get(info.key)
            if state is not None and state.persistent:  # else live is the only copy
                for fragment in [f for f in state.live if f.meta.server_ms < cutoff]:
                    state.drop_live(fragment.meta.seq)
            try:
                deleted += await self.store.truncate_before(info.key, cutoff)
            except StoreError as exc:
                log.error("retention failed", extra={"stream": info.name, "error": str(exc)})
        return deleted

    async def _retention_loop(self) -> None:
        """Run retention every --retention-interval-s; one bad pass never stops the next."""
        while True:
            try:
                deleted = await self.enforce_retention()
            except Exception:
                log.exception("retention pass failed")
            else:
                if deleted:
                    log.info("retention deleted fragments", extra={"fragments": deleted})
            await asyncio.sleep(self.config.retention_interval_s)
