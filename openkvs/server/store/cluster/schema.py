"""The clustered store's PostgreSQL schema, as numbered migrations.

``migrate`` brings a database up to the newest version (``openkvs cluster init``);
``check`` is what a node runs when it opens: it refuses a database without the
schema or with a newer one than this code knows, saying what to run.
"""

from __future__ import annotations

from typing import Any

MIGRATIONS: list[str] = [
    """
    CREATE TABLE openkvs_schema (version integer NOT NULL);
    INSERT INTO openkvs_schema VALUES (0);
    CREATE TABLE streams (
        key text PRIMARY KEY,
        info jsonb NOT NULL,
        version text NOT NULL,
        writer_token bigint NOT NULL DEFAULT 0,
        expired jsonb
    );
    CREATE TABLE track_sets (
        id text PRIMARY KEY,
        tracks jsonb NOT NULL
    );
    CREATE TABLE fragments (
        stream_key text NOT NULL REFERENCES streams (key) ON DELETE CASCADE,
        seq bigint NOT NULL,
        number text NOT NULL,
        server_ms bigint NOT NULL,
        producer_ms bigint NOT NULL,
        duration_ms integer NOT NULL,
        size integer NOT NULL,
        keyframe boolean NOT NULL,
        track_set text NOT NULL REFERENCES track_sets (id),
        header_bytes integer NOT NULL,
        object_key text NOT NULL,
        PRIMARY KEY (stream_key, seq)
    );
    CREATE INDEX fragments_by_server_time ON fragments (stream_key, server_ms);
    CREATE INDEX fragments_by_producer_time ON fragments (stream_key, producer_ms);
    """,
    # v2: names unique across nodes; stream ownership (a lease per stream) and live nodes
    """
    ALTER TABLE streams ADD COLUMN name text GENERATED ALWAYS AS (info->>'name') STORED;
    ALTER TABLE streams ADD CONSTRAINT streams_name_unique UNIQUE (name);
    ALTER TABLE streams ADD COLUMN owner text;
    ALTER TABLE streams ADD COLUMN lease_until timestamptz;
    CREATE INDEX streams_by_owner ON streams (owner);
    CREATE TABLE nodes (
        id text PRIMARY KEY,
        url text NOT NULL,
        heartbeat timestamptz NOT NULL
    );
    """,
]
VERSION = len(MIGRATIONS)


class SchemaError(Exception):
    """The database has no schema, or a newer one than this code."""


async def migrate(conn: Any) -> int:
    """Apply the migrations the database lacks, each in its own transaction; the version."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(2017093001)")  # one migrator at a time
        current = await _version(conn)
        for number in range(current, VERSION):
            await conn.execute(MIGRATIONS[number])
            await conn.execute("UPDATE openkvs_schema SET version = %s", (number + 1,))
    return VERSION


async def check(conn: Any) -> None:
    current = await _version(conn)
    if current == 0:
        raise SchemaError(
            "the database has no OpenKVS schema: run `openkvs cluster init` with the same "
            "--database-url first"
        )
    if current > VERSION:
        raise SchemaError(
            f"the database schema is version {current}, newer than this OpenKVS knows "
            f"({VERSION}): upgrade OpenKVS on this node"
        )
    if current < VERSION:
        raise SchemaError(
            f"the database schema is version {current}, older than this OpenKVS needs "
            f"({VERSION}): run `openkvs cluster init` to migrate it"
        )


async def _version(conn: Any) -> int:
    exists = await (await conn.execute("SELECT to_regclass('openkvs_schema')")).fetchone()
    if exists[0] is None:
        return 0
    row = await (await conn.execute("SELECT version FROM openkvs_schema")).fetchone()
    return int(row[0]) if row else 0
