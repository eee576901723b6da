"""The clustered store: the fragment index and stream records in PostgreSQL, fragment bytes
in an S3-compatible object store, behind the same interface as the embedded store.

A fragment is durable only once its object is stored and its index row committed
(``synchronous_commit`` on): objects go first, so a row never points at missing
bytes; an object orphaned by a crash between the two is never read (and is swept
with its stream). A writer's claim is a fencing token in the stream's row, checked
under that row's lock in the transaction that adds the rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from openkvs.server.config import Config
from openkvs.server.model import Fragment, FragmentMeta, FragmentNumber, StreamInfo, TrackSet
from openkvs.server.store.base import (
    Fenced,
    Missing,
    OutOfOrderError,
    ReadOutcome,
    StoreError,
    StreamExists,
    StreamNotFound,
    VersionConflict,
    WriterClaim,
)
from openkvs.server.store.cluster.objects import Objects, S3Target, object_key
from openkvs.server.store.cluster.schema import check, migrate
from openkvs.server.store.watch import Watchers
from openkvs.wire.mkv.elements import TrackEntry

log = logging.getLogger("openkvs.store.cluster")

POOL_SIZE = 4
CHANNEL = "openkvs_fragments"
RELISTEN_S = 1.0
NOTIFY_BYTES = 7_900
COLUMNS = "seq, number, server_ms, producer_ms, duration_ms, size, keyframe, track_set"


class ClusterStore:
    shared = True

    def __init__(self, database_url: str, target: S3Target, pool_size: int = POOL_SIZE) -> None:
        self.database_url, self.objects = database_url, Objects(target)
        self._pool_size = pool_size
        self._idle: asyncio.Queue[Any] = asyncio.Queue()
        self._connections: list[Any] = []
        self._tracks: dict[str, TrackSet] = {}
        self._watchers = Watchers()
        self._changes: dict[str, int] = {}  # per stream, appends heard of (here or by NOTIFY)
        self._reconnects = 0
        self._listener: asyncio.Task[None] | None = None
        self._unannounced: dict[str, int] = {}
        self._announcer: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, config: Config) -> ClusterStore:
        target = S3Target(
            config.s3_endpoint_url or "",
            config.s3_access_key_id or "",
            config.s3_secret_access_key or "",
            config.s3_bucket or "",
            config.s3_region,
        )
        return cls(config.database_url or "", target)

    # ---- lifecycle ---------------------------------------------------------------------------

    async def init(self) -> int:
        """Create or migrate the schema and the bucket (``openkvs cluster init``); the version."""
        async with self.connection() as conn:
            version = await migrate(conn)
        await self.objects.create_bucket()
        return version

    async def open(self) -> list[StreamInfo]:
        async with self.connection() as conn:
            await check(conn)
            rows = await (await conn.execute("SELECT info FROM streams")).fetchall()
        return [info_from_record(row[0]) for row in rows]

    async def close(self) -> None:
        if self._announcer is not None:  # the last appends' news goes out first
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._announcer, RELISTEN_S)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        for conn in self._connections:
            await conn.close()
        self._connections.clear()
        self._idle = asyncio.Queue()

    async def check(self) -> None:
        """PostgreSQL answers and the bucket is there."""
        await self._rows("SELECT 1", ())
        await self.objects.check()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        import psycopg

        if self._idle.empty() and len(self._connections) < self._pool_size:
            try:
                conn = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
            except psycopg.Error as exc:
                raise StoreError(f"cannot reach PostgreSQL: {exc}") from None
            self._connections.append(conn)
            self._idle.put_nowait(conn)
        conn = await self._idle.get()
        try:
            yield conn
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL: {exc}") from None
        finally:
            if conn.closed or conn.broken:  # e.g. PostgreSQL restarted: the next use reconnects
                self._connections.remove(conn)
                await conn.close()
            else:
                self._idle.put_nowait(conn)

    async def _rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        async with self.connection() as conn:
            return await (await conn.execute(sql, params)).fetchall()

    # ---- streams -----------------------------------------------------------------------------

    async def save_stream(self, info: StreamInfo, expected_version: str | None) -> None:
        record = json.dumps(dataclasses.asdict(info))
        async with self.connection() as conn, conn.transaction():
            found = await (
                await conn.execute("SELECT version FROM streams WHERE key = %s FOR UPDATE", (info.key,))
            ).fetchone()
            if expected_version is None:
                if found is not None:
                    raise StreamExists(f"stream {info.key} exists")
                inserted = await conn.execute(
                    "INSERT INTO streams (key, info, version) VALUES (%s, %s, %s) "
                    "ON CONFLICT (name) DO NOTHING",
                    (info.key, record, info.version),
                )
                if inserted.rowcount == 0:  # another node created the name meanwhile
                    raise StreamExists(f"a stream named {info.name} exists")
                return
            if found is None:
                raise StreamNotFound(f"no stream {info.key}")
            if found[0] != expected_version:
                raise VersionConflict(f"stream {info.key} is at version {found[0]}")
            await conn.execute(
                "UPDATE streams SET info = %s, version = %s WHERE key = %s",
                (record, info.version, info.key),
            )

    async def find_stream(self, name: str) -> StreamInfo | None:
        rows = await self._rows("SELECT info FROM streams WHERE name = %s", (name,))
        return info_from_record(rows[0][0]) if rows else None

    async def list_streams(self, after: str, prefix: str, limit: int) -> list[StreamInfo]:
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = await self._rows(
            'SELECT info FROM streams WHERE name COLLATE "C" > %s AND name LIKE %s '
            'ORDER BY name COLLATE "C" LIMIT %s',
            (after, pattern, limit),
        )
        return [info_from_record(row[0]) for row in rows]

    async def delete_stream(self, key: str) -> None:
        await self._rows("DELETE FROM streams WHERE key = %s RETURNING key", (key,))
        await self.objects.delete_prefix(f"{key}/")
        self._watchers.wake(key)

    # ---- writing -----------------------------------------------------------------------------

    async def claim_writer(self, key: str) -> WriterClaim:
        rows = await self._rows(
            "UPDATE streams SET writer_token = writer_token + 1 WHERE key = %s "
            "RETURNING writer_token, (SELECT max(seq) FROM fragments WHERE stream_key = %s)",
            (key, key),
        )
        if not rows:
            raise StreamNotFound(f"no stream {key}")
        token, last = rows[0]
        next_seq = 0 if last is None else int(last) + 1
        # Objects above the last committed row are a crashed or fenced writer's: no row will
        # ever point at them (the new writer numbers above ``last`` and fences the old one).
        after = object_key(key, next_seq - 1) if next_seq else ""
        try:
            swept = await self.objects.delete_prefix(f"{key}/", after)
        except StoreError as exc:  # harmless: the next claim sweeps them, or a writer overwrites
            log.warning("sweeping orphaned objects failed", extra={"stream": key, "error": str(exc)})
        else:
            if swept:
                log.info("swept orphaned objects", extra={"stream": key, "objects": swept})
        return WriterClaim(key, int(token), next_seq)

    async def append(self, claim: WriterClaim, fragments: Sequence[Fragment]) -> None:
        key = claim.key
        await self._fence(claim)  # before uploading: a fenced writer stores nothing
        seqs = [f.meta.seq for f in fragments]
        if any(b <= a for a, b in zip(seqs, seqs[1:], strict=False)):
            raise OutOfOrderError(f"seqs {seqs} are not increasing")
        await asyncio.gather(
            *(
                self.objects.put(object_key(key, f.meta.seq), (f.header, *f.body_parts()))
                for f in fragments
            )
        )
        sets = {self._track_set_id(f.meta.tracks): f.meta.tracks for f in fragments}
        async with self.connection() as conn, conn.transaction():
            await self._fence(claim, conn)
            last = await (
                await conn.execute("SELECT max(seq) FROM fragments WHERE stream_key = %s", (key,))
            ).fetchone()
            if last[0] is not None and seqs and seqs[0] <= last[0]:
                raise OutOfOrderError(f"seq {seqs[0]} after {last[0]}")
            for set_id, tracks in sets.items():
                await conn.execute(
                    "INSERT INTO track_sets (id, tracks) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (set_id, json.dumps([_track(t) for t in tracks])),
                )
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    f"INSERT INTO fragments (stream_key, {COLUMNS}, header_bytes, object_key) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [_row(key, f, self._track_set_id(f.meta.tracks)) for f in fragments],
                )
        self._heard(key)
        if seqs:
            self._announce(key, seqs[-1])

    async def _fence(self, claim: WriterClaim, conn: Any = None) -> None:
        sql = "SELECT writer_token FROM streams WHERE key = %s" + (" FOR UPDATE" if conn else "")
        if conn is None:
            rows = await self._rows(sql, (claim.key,))
        else:
            rows = await (await conn.execute(sql, (claim.key,))).fetchall()
        if not rows:
            raise StreamNotFound(f"no stream {claim.key}")
        if int(rows[0][0]) != claim.token:
            raise Fenced(f"a newer writer claimed stream {claim.key}")

    # ---- queries -----------------------------------------------------------------------------

    async def fragments_after(self, key: str, seq: int, limit: int) -> list[FragmentMeta]:
        return await self._metas(
            f"SELECT {COLUMNS} FROM fragments WHERE stream_key = %s AND seq > %s "
            "ORDER BY seq LIMIT %s",
            (key, seq, limit),
        )

    async def fragments_between(
        self,
        key: str,
        start_ms: int,
        end_ms: int,
        *,
        producer: bool,
        limit: int,
        newest_first: bool = False,
    ) -> list[FragmentMeta]:
        column = "producer_ms" if producer else "server_ms"
        order = "DESC" if newest_first else ""
        return await self._metas(
            f"SELECT {COLUMNS} FROM fragments WHERE stream_key = %s AND {column} BETWEEN %s AND %s "
            f"ORDER BY {column} {order}, seq {order} LIMIT %s",
            (key, start_ms, end_ms, limit),
        )

    async def last_fragment(self, key: str) -> FragmentMeta | None:
        found = await self._metas(
            f"SELECT {COLUMNS} FROM fragments WHERE stream_key = %s ORDER BY seq DESC LIMIT 1",
            (key,),
        )
        return found[0] if found else None

    async def fragment(self, key: str, number: FragmentNumber) -> FragmentMeta | None:
        found = await self._metas(
            f"SELECT {COLUMNS} FROM fragments WHERE stream_key = %s AND seq = %s AND number = %s",
            (key, number.seq, str(number)),
        )
        return found[0] if found else None

    async def read(self, key: str, metas: Sequence[FragmentMeta]) -> list[ReadOutcome]:
        rows = await self._rows(
            "SELECT seq, number, header_bytes, object_key FROM fragments "
            "WHERE stream_key = %s AND seq = ANY(%s)",
            (key, [m.seq for m in metas]),
        )
        stored = {int(seq): (number, int(head), obj) for seq, number, head, obj in rows}

        async def one(meta: FragmentMeta) -> ReadOutcome:
            found = stored.get(meta.seq)
            if found is None or found[0] != str(meta.number):
                return Missing(meta)
            data = await self.objects.get(found[2])
            if data is None:  # retention deleted it after the rows were read
                return Missing(meta)
            return Fragment(meta, data[: found[1]], data[found[1] :])

        return list(await asyncio.gather(*(one(m) for m in metas)))

    async def expired(self, key: str) -> FragmentMeta | None:
        rows = await self._rows("SELECT expired FROM streams WHERE key = %s", (key,))
        if not rows or rows[0][0] is None:
            return None
        return (await self._to_metas([tuple(rows[0][0])]))[0]

    async def truncate_before(self, key: str, server_ms: int) -> int:
        async with self.connection() as conn, conn.transaction():
            deleted = await (
                await conn.execute(
                    f"DELETE FROM fragments WHERE stream_key = %s AND server_ms < %s "
                    f"RETURNING {COLUMNS}, object_key",
                    (key, server_ms),
                )
            ).fetchall()
            if deleted:
                newest = max(deleted, key=lambda row: row[0])
                await conn.execute(
                    "UPDATE streams SET expired = %s WHERE key = %s",
                    (json.dumps(list(newest[:-1])), key),
                )
        await self.objects.delete([row[-1] for row in deleted])
        return len(deleted)

    async def wait_for_fragment(self, key: str, after_seq: int, timeout: float) -> bool:
        """Until a fragment above ``after_seq`` is stored by any node: appends anywhere wake
        the wait (LISTEN/NOTIFY), and each wake asks the database, since NOTIFY does not
        replay what a listener missed while it reconnected."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            heard = self._heard_of(key)
            last = await self.last_fragment(key)
            if last is not None and last.seq > after_seq:
                return True
            left = deadline - loop.time()
            if left <= 0 or not await self._watchers.wait(key, left, _changed(self, key, heard)):
                return False

    async def _listen(self) -> None:
        """Hear every node's appends; after a lost connection, wake every waiter to re-ask."""
        import psycopg

        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
                try:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._reconnected()
                    async for note in conn.notifies():
                        for line in note.payload.splitlines():
                            self._heard(line.split(" ", 1)[1])
                finally:
                    await conn.close()
            except psycopg.Error:
                self._reconnected()
                await asyncio.sleep(RELISTEN_S)

    def _announce(self, key: str, seq: int) -> None:
        """Tell every node's listener of an append, after its commit.

        Not in the append's transaction: a notifying transaction holds a lock on the
        whole database until its commit is flushed, which would make every node's
        appends commit one at a time (bench/CLUSTER_MODEL.md). Instead each node has one
        announcement in flight, carrying every stream appended to since the last. One
        lost (a crash after the commit) costs a waiting reader its next re-check."""
        self._unannounced[key] = seq
        if self._announcer is None or self._announcer.done():
            self._announcer = asyncio.create_task(self._send_announcements())

    async def _send_announcements(self) -> None:
        while self._unannounced:
            lines = [f"{seq} {key}" for key, seq in self._unannounced.items()]
            self._unannounced = {}
            payloads = _payloads(lines)
            try:
                async with self.connection() as conn, conn.transaction():
                    await conn.execute("SET LOCAL synchronous_commit = off")  # news, not data
                    for payload in payloads:
                        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            except StoreError as exc:
                log.warning("announcing appends failed", extra={"error": str(exc)})

    def _heard_of(self, key: str) -> int:
        """A count that moves whenever news of ``key`` may have come."""
        return self._changes.get(key, 0) + self._reconnects

    def _heard(self, key: str) -> None:
        self._changes[key] = self._changes.get(key, 0) + 1
        self._watchers.wake(key)

    def _reconnected(self) -> None:
        self._reconnects += 1
        self._watchers.wake_all()

    # ---- rows and metas ----------------------------------------------------------------------

    async def _metas(self, sql: str, params: Sequence[Any]) -> list[FragmentMeta]:
        return await self._to_metas(await self._rows(sql, params))

    async def _to_metas(self, rows: Sequence[Sequence[Any]]) -> list[FragmentMeta]:
        unknown = {row[7] for row in rows} - self._tracks.keys()
        if unknown:
            for set_id, tracks in await self._rows(
                "SELECT id, tracks FROM track_sets WHERE id = ANY(%s)", (list(unknown),)
            ):
                self._tracks[set_id] = tuple(_entry(t) for t in tracks)
        return [
            FragmentMeta(
                FragmentNumber.parse(number),
                int(server_ms),
                int(producer_ms),
                int(duration_ms),
                int(size),
                bool(keyframe),
                self._tracks[set_id],
            )
            for _, number, server_ms, producer_ms, duration_ms, size, keyframe, set_id in rows
        ]

    def _track_set_id(self, tracks: TrackSet) -> str:
        """A content hash: equal track sets are one row, and one object in memory."""
        text = json.dumps([_track(t) for t in tracks])
        set_id = hashlib.sha256(text.encode()).hexdigest()[:32]
        self._tracks.setdefault(set_id, tracks)
        return set_id


def _payloads(lines: list[str]) -> list[str]:
    """Lines joined into NOTIFY payloads under PostgreSQL's 8,000-byte limit."""
    groups: list[list[str]] = [[]]
    size = 0
    for line in lines:
        if size + len(line) + 1 > NOTIFY_BYTES and groups[-1]:
            groups.append([])
            size = 0
        groups[-1].append(line)
        size += len(line) + 1
    return ["\n".join(group) for group in groups]


def _changed(store: ClusterStore, key: str, heard: int) -> Callable[[], bool]:
    return lambda: store._heard_of(key) != heard


def _row(key: str, fragment: Fragment, set_id: str) -> tuple[Any, ...]:
    meta = fragment.meta
    return (
        key,
        meta.seq,
        str(meta.number),
        meta.server_ms,
        meta.producer_ms,
        meta.duration_ms,
        meta.size,
        meta.keyframe,
        set_id,
        len(fragment.header),
        object_key(key, meta.seq),
    )


def _track(track: TrackEntry) -> dict[str, Any]:
    fields = dataclasses.asdict(track)
    fields["codec_private"] = track.codec_private.hex()
    return fields


def _entry(fields: dict[str, Any]) -> TrackEntry:
    return TrackEntry(**{**fields, "codec_private": bytes.fromhex(fields["codec_private"])})


def info_from_record(record: dict[str, Any]) -> StreamInfo:
    return StreamInfo(**record)
