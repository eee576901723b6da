"""Stream ownership in the cluster's database: a lease per stream, a heartbeat per node.

A node owns a stream while its lease (``streams.owner``, ``lease_until``) runs;
it renews every lease it holds, with its heartbeat, a few times per lease. When
a node dies its leases run out and the next node asked takes the stream over.
Expiry is judged by the database's clock, so nodes' clocks need not agree.
A stale owner cannot corrupt a stream it lost: its appends carry a writer token
that the new owner's claim has fenced (``ClusterStore.claim_writer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable

from openkvs.server.model import StreamInfo
from openkvs.server.store.base import StoreError, StreamNotFound
from openkvs.server.store.cluster.store import ClusterStore, info_from_record

log = logging.getLogger("openkvs.nodes")

RENEWALS_PER_LEASE = 3


class Leases:
    """``Ownership`` for a cluster node. ``on_renewed`` gets the records of the streams it
    owns at each renewal, so a change made on another node reaches the owner's ingest."""

    def __init__(
        self,
        store: ClusterStore,
        node_id: str,
        url: str,
        ttl_s: float,
        on_renewed: Callable[[list[StreamInfo]], None] | None = None,
    ) -> None:
        self.store, self.node_id, self.url, self.ttl_s = store, node_id, url, ttl_s
        self.on_renewed = on_renewed
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._renew()
        self._task = asyncio.create_task(self._renew_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(StoreError):
            async with self.store.connection() as conn:
                await conn.execute(
                    "UPDATE streams SET owner = NULL, lease_until = NULL WHERE owner = %s",
                    (self.node_id,),
                )
                await conn.execute("DELETE FROM nodes WHERE id = %s", (self.node_id,))

    async def acquire(self, key: str) -> str | None:
        async with self.store.connection() as conn:
            taken = await (
                await conn.execute(
                    "UPDATE streams SET owner = %s, lease_until = now() + make_interval(secs => %s) "
                    "WHERE key = %s AND (owner IS NULL OR owner = %s OR lease_until < now()) "
                    "RETURNING key",
                    (self.node_id, self.ttl_s, key, self.node_id),
                )
            ).fetchone()
            if taken is not None:
                return None
            owner = await (
                await conn.execute(
                    "SELECT n.url FROM streams s LEFT JOIN nodes n ON n.id = s.owner "
                    "WHERE s.key = %s",
                    (key,),
                )
            ).fetchone()
        if owner is None:
            raise StreamNotFound(f"no stream {key}")
        if owner[0] is None:
            raise StoreError(f"stream {key} is owned by a node that left")
        return str(owner[0])

    async def owner_elsewhere(self, key: str) -> str | None:
        owner = await self._owner(key)
        return None if owner is None or owner[0] == self.node_id else owner[1]

    async def endpoint(self, key: str) -> str:
        """The owner's URL while its lease runs; else the node the stream's key hashes to
        among the live ones (rendezvous hashing), which is where its producer should go."""
        owner = await self._owner(key)
        if owner is not None:
            return owner[1]
        async with self.store.connection() as conn:
            nodes = await (
                await conn.execute(
                    "SELECT id, url FROM nodes "
                    "WHERE heartbeat > now() - make_interval(secs => %s)",
                    (self.ttl_s,),
                )
            ).fetchall()
        if not nodes:
            return self.url
        return str(max(nodes, key=lambda node: _weight(key, node[0]))[1])

    async def _owner(self, key: str) -> tuple[str, str] | None:
        """The id and URL of the node whose lease on the stream runs."""
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT n.id, n.url FROM streams s JOIN nodes n ON n.id = s.owner "
                    "WHERE s.key = %s AND s.lease_until > now()",
                    (key,),
                )
            ).fetchone()
        return (str(row[0]), str(row[1])) if row else None

    @contextlib.asynccontextmanager
    async def exclusive(self, job: str) -> AsyncIterator[bool]:
        lock = int.from_bytes(hashlib.sha256(job.encode()).digest()[:8], "big", signed=True)
        async with self.store.connection() as conn:
            row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (lock,))).fetchone()
            try:
                yield bool(row[0])
            finally:
                if row[0]:
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (lock,))

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / RENEWALS_PER_LEASE)
            try:
                await self._renew()
            except StoreError as exc:
                log.warning("lease renewal failed", extra={"error": str(exc)})

    async def _renew(self) -> None:
        async with self.store.connection() as conn:
            await conn.execute(
                "INSERT INTO nodes (id, url, heartbeat) VALUES (%s, %s, now()) "
                "ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, heartbeat = now()",
                (self.node_id, self.url),
            )
            owned = await (
                await conn.execute(
                    "UPDATE streams SET lease_until = now() + make_interval(secs => %s) "
                    "WHERE owner = %s RETURNING info",
                    (self.ttl_s, self.node_id),
                )
            ).fetchall()
        if self.on_renewed is not None:
            self.on_renewed([info_from_record(row[0]) for row in owned])


def _weight(key: str, node_id: str) -> bytes:
    return hashlib.sha256(f"{key}\0{node_id}".encode()).digest()
