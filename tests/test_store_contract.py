"""The storage contract: every backend answers the same queries with the same typed errors.

Runs against the memory store, the embedded store and the clustered store (a real
PostgreSQL and SeaweedFS, started by ``tests/services.py``), unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from openkvs.server.model import Fragment, FragmentMeta, FragmentNumber, StreamInfo
from openkvs.server.store.base import (
    Fenced,
    Missing,
    OutOfOrderError,
    StreamExists,
    StreamNotFound,
    VersionConflict,
)
from openkvs.server.store.embedded import EmbeddedStore
from openkvs.server.store.memory import MemoryStore
from openkvs.wire.mkv.elements import TrackEntry

INFO = StreamInfo(name="cam", arn="arn:cam", creation_ms=5, version="v1", data_retention_hours=1)
H264 = (TrackEntry(1, "V_MPEG4/ISO/AVC", b"\x01avcC", 1),)
H264_AAC = (*H264, TrackEntry(2, "A_AAC", b"\x12\x10", 2))


def header(tracks: tuple[TrackEntry, ...]) -> bytes:
    """A real fragment header declaring ``tracks`` (the embedded store reads them back)."""
    from openkvs.wire.mkv import ebml

    entries = b"".join(
        ebml.element(
            ebml.TRACK_ENTRY,
            ebml.uint_element(ebml.TRACK_NUMBER, t.number)
            + ebml.uint_element(ebml.TRACK_TYPE, t.track_type)
            + ebml.element(ebml.CODEC_ID, t.codec_id.encode())
            + ebml.element(ebml.CODEC_PRIVATE, t.codec_private),
        )
        for t in tracks
    )
    from tests.media import ebml_header

    segment = ebml.encode_id(ebml.SEGMENT) + ebml.UNKNOWN_SIZE_8
    return ebml_header() + segment + ebml.element(ebml.TRACKS, entries)


def fragment(seq: int, tracks: tuple[TrackEntry, ...] = H264, keyframe: bool = True) -> Fragment:
    server_ms = 1_000_000 + seq * 1000
    meta = FragmentMeta(
        FragmentNumber.make(seq, server_ms, salt=seq),
        server_ms,
        500_000 + seq * 1000,
        990,
        100,
        keyframe,
        tracks,
    )
    return Fragment(meta, header(tracks), bytes([seq % 256]) * 100)


Opener = Callable[[], Awaitable[Any]]


@pytest.fixture(params=["memory", "embedded", "cluster"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    make: Callable[[], Any]
    if request.param == "memory":
        make = MemoryStore
    elif request.param == "embedded":
        make = lambda: EmbeddedStore(str(tmp_path), segment_bytes=2000)  # noqa: E731
    else:
        from openkvs.server.store.cluster import ClusterStore, S3Target

        url, bucket = request.getfixturevalue("database_url"), request.getfixturevalue("s3_bucket")
        target = S3Target(bucket.endpoint_url, bucket.access_key, bucket.secret_key, bucket.bucket)
        make = lambda: ClusterStore(url, target)  # noqa: E731
        first = make()
        await first.init()
        await first.close()
    store = make()
    await store.open()
    await store.save_stream(INFO, None)
    store.durable = request.param != "memory"
    store.reopen = lambda: _reopen(store, make)
    yield store
    await store.close()


async def _reopen(store: Any, make: Callable[[], Any]) -> Any:
    await store.close()
    again = make()
    await again.open()
    return again


async def append(store: Any, *seqs: int, **kw: Any) -> list[Fragment]:
    fragments = [fragment(seq, **kw) for seq in seqs]
    await store.append(await store.claim_writer(INFO.key), fragments)
    return fragments


async def test_stream_records_are_compare_and_set(backend: Any) -> None:
    with pytest.raises(StreamExists):
        await backend.save_stream(INFO, None)
    updated = dataclasses.replace(INFO, version="v2", tags={"k": "v"})
    with pytest.raises(VersionConflict):
        await backend.save_stream(updated, "not-v1")
    await backend.save_stream(updated, "v1")
    with pytest.raises(VersionConflict):
        await backend.save_stream(dataclasses.replace(INFO, version="v3"), "v1")
    gone = dataclasses.replace(INFO, name="gone", creation_ms=9)
    with pytest.raises(StreamNotFound):
        await backend.save_stream(gone, "v1")
    if backend.durable:
        backend = await backend.reopen()
    assert await backend.open() == [updated]
    await backend.close()


async def test_a_newer_writer_claim_fences_the_older(backend: Any) -> None:
    first = await backend.claim_writer(INFO.key)
    await backend.append(first, [fragment(1)])
    second = await backend.claim_writer(INFO.key)
    assert second.token != first.token and second.next_seq == 2
    with pytest.raises(Fenced):
        await backend.append(first, [fragment(2)])
    await backend.append(second, [fragment(2)])
    assert [m.seq for m in await backend.fragments_after(INFO.key, 0, 10)] == [1, 2]


async def test_appends_are_in_seq_order_with_gaps(backend: Any) -> None:
    await append(backend, 3, 4, 7)
    with pytest.raises(OutOfOrderError):
        await append(backend, 7)
    with pytest.raises(OutOfOrderError):
        await append(backend, 9, 8)
    assert [m.seq for m in await backend.fragments_after(INFO.key, -1, 100)] == [3, 4, 7]


async def test_unknown_and_deleted_streams_raise_stream_not_found(backend: Any) -> None:
    with pytest.raises(StreamNotFound):
        await backend.claim_writer("nobody.1")
    claim = await backend.claim_writer(INFO.key)
    await backend.append(claim, [fragment(1)])
    await backend.delete_stream(INFO.key)
    with pytest.raises(StreamNotFound):
        await backend.append(claim, [fragment(2)])
    with pytest.raises(StreamNotFound):
        await backend.claim_writer(INFO.key)
    assert await backend.fragments_after(INFO.key, -1, 10) == []
    assert await backend.last_fragment(INFO.key) is None
    assert await backend.read(INFO.key, [fragment(1).meta]) == [Missing(fragment(1).meta)]
    await backend.delete_stream(INFO.key)  # again: nothing to do


async def test_queries_by_seq_number_and_time(backend: Any) -> None:
    stored = await append(backend, *range(1, 11))
    metas = [f.meta for f in stored]
    assert await backend.fragments_after(INFO.key, 3, 4) == metas[3:7]
    assert await backend.fragments_after(INFO.key, 10, 4) == []
    assert await backend.last_fragment(INFO.key) == metas[-1]
    assert await backend.fragment(INFO.key, metas[4].number) == metas[4]
    lookalike = FragmentNumber.make(5, 123, salt=1)
    assert await backend.fragment(INFO.key, lookalike) is None
    between = backend.fragments_between
    server = metas[2].server_ms, metas[5].server_ms
    assert await between(INFO.key, *server, producer=False, limit=100) == metas[2:6]
    assert await between(INFO.key, *server, producer=False, limit=2) == metas[2:4]
    newest = await between(INFO.key, *server, producer=False, limit=2, newest_first=True)
    assert newest == [metas[5], metas[4]]
    producer = metas[0].producer_ms + 1, metas[3].producer_ms
    assert await between(INFO.key, *producer, producer=True, limit=100) == metas[1:4]
    assert await between(INFO.key, 0, 10, producer=True, limit=100) == []
    if backend.durable:
        again = await backend.reopen()
        assert await again.fragments_after(INFO.key, 3, 4) == metas[3:7]
        assert (
            await again.fragments_between(INFO.key, *server, producer=False, limit=9)
            == (metas[2:6])
        )
        await again.close()


async def test_metadata_archived_media_needs_survives(backend: Any) -> None:
    fragments = [fragment(1, H264), fragment(2, H264, keyframe=False), fragment(3, H264_AAC)]
    await backend.append(await backend.claim_writer(INFO.key), fragments)
    metas = await backend.fragments_after(INFO.key, 0, 10)
    assert metas == [f.meta for f in fragments]
    assert [m.keyframe for m in metas] == [True, False, True]
    assert [m.tracks for m in metas] == [H264, H264, H264_AAC]
    assert metas[0].duration_ms == 990
    if backend.durable:
        again = await backend.reopen()
        assert await again.fragments_after(INFO.key, 0, 10) == metas
        await again.close()


async def test_reads_answer_per_fragment(backend: Any) -> None:
    stored = await append(backend, 1, 2, 3, 4)
    unknown = fragment(9).meta
    asked = [stored[0].meta, unknown, stored[2].meta]
    got = await backend.read(INFO.key, asked)
    assert got[1] == Missing(unknown)
    for want, have in ((stored[0], got[0]), (stored[2], got[2])):
        assert isinstance(have, Fragment) and have.meta == want.meta
        assert have.header == want.header and b"".join(have.body_parts()) == want.body


async def test_retention_deletes_by_server_time_and_says_what_expired(backend: Any) -> None:
    stored = await append(backend, *range(1, 9))
    assert await backend.expired(INFO.key) is None
    assert await backend.truncate_before(INFO.key, stored[3].meta.server_ms) == 3
    assert await backend.expired(INFO.key) == stored[2].meta
    assert await backend.fragments_after(INFO.key, -1, 100) == [f.meta for f in stored[3:]]
    assert await backend.read(INFO.key, [stored[0].meta]) == [Missing(stored[0].meta)]
    assert await backend.truncate_before(INFO.key, 0) == 0
    await append(backend, 9)
    assert (await backend.last_fragment(INFO.key)).seq == 9


async def test_a_watcher_wakes_when_a_fragment_is_stored(backend: Any) -> None:
    assert await backend.wait_for_fragment(INFO.key, 0, 0.01) is False
    waiting = asyncio.create_task(backend.wait_for_fragment(INFO.key, 0, 10))
    await asyncio.sleep(0)
    await append(backend, 1)
    assert await asyncio.wait_for(waiting, 5) is True
    assert await backend.wait_for_fragment(INFO.key, 0, 0) is True
