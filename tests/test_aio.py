"""openkvs.aio against a real OpenKVS server, with boto3 reading the same stream as the reference."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import openkvs.aio
from openkvs.media import FragmentReader, MediaFragment, aiter_fragments
from tests.conftest import ServerProcess
from tests.test_client import (
    EARLIEST,
    SERVICE,
    assert_not_found_like_boto3,
    assert_same_fragments,
    credentials,
    put_clip,
    read_with_boto3,
    serving_clip,
)


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory, av_clip: Path
) -> Iterator[tuple[ServerProcess, list[MediaFragment]]]:
    """The clip server and what boto3 reads from it, as in test_client.py."""
    with serving_clip(tmp_path_factory.mktemp("kvs"), av_clip) as server:
        yield server, read_with_boto3(server)


async def read_fragments(
    payload: openkvs.aio.AioStreamingBody, limit: int = 0
) -> list[MediaFragment]:
    """Fragments as the chunks arrive; stop after ``limit`` of them (0: read to the end)."""
    reader, fragments = FragmentReader(), []
    async for piece in payload.iter_chunks(1000):
        assert 0 < len(piece) <= 1000
        fragments += reader.feed(piece)
        if limit and len(fragments) >= limit:
            return fragments[:limit]
    return fragments + reader.feed_eof()


async def test_get_media_earliest_returns_what_boto3_gets(reference) -> None:
    clip_server, boto3_fragments = reference
    async with openkvs.aio.client(SERVICE, **credentials(clip_server.url)) as client:
        response = await client.get_media(StreamName="clip", StartSelector=EARLIEST)
        assert response["ContentType"] == "video/webm"
        metadata = response["ResponseMetadata"]
        assert metadata["HTTPStatusCode"] == 200 and metadata["RetryAttempts"] == 0
        assert metadata["RequestId"] == metadata["HTTPHeaders"]["x-amzn-requestid"] != ""
        async with response["Payload"] as payload:
            fragments = await read_fragments(payload)
            assert await payload.read(10) == b""
    assert_same_fragments(fragments, boto3_fragments)


async def test_payload_streams_while_the_response_is_still_open(make_server, av_clip) -> None:
    server = make_server()  # a caught-up GetMedia then waits 30 s for more
    await asyncio.to_thread(put_clip, server, "live", av_clip)
    session = openkvs.aio.Session(region_name="us-west-2")
    async with session.create_client(SERVICE, **credentials(server.url)) as client:
        started = time.monotonic()
        response = await client.get_media(StreamName="live", StartSelector=EARLIEST)
        payload = response["Payload"]
        first_two = await read_fragments(payload, limit=2)
        assert [len(f.frames) > 0 for f in first_two] == [True, True]
        assert 0 < len(await payload.read(100)) <= 100
        payload.close()
        assert time.monotonic() - started < 10


async def test_continuation_token_resumes_after_that_fragment(reference) -> None:
    clip_server, boto3_fragments = reference
    token = boto3_fragments[2].continuation_token
    selector = {"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": token}
    async with openkvs.aio.client(SERVICE, **credentials(clip_server.url)) as client:
        response = await client.get_media(StreamName="clip", StartSelector=selector)
        rest = await read_fragments(response["Payload"])
    assert [f.number for f in rest] == [f.number for f in boto3_fragments[3:]]


async def test_aiter_fragments_reads_the_async_payload(reference) -> None:
    clip_server, boto3_fragments = reference
    async with openkvs.aio.client(SERVICE, **credentials(clip_server.url)) as client:
        response = await client.get_media(StreamName="clip", StartSelector=EARLIEST)
        fragments = [f async for f in aiter_fragments(response["Payload"])]
    assert_same_fragments(fragments, boto3_fragments)


async def test_missing_stream_raises_the_modeled_exception(reference) -> None:
    clip_server, _ = reference
    async with openkvs.aio.client(SERVICE, **credentials(clip_server.url)) as client:
        with pytest.raises(client.exceptions.ResourceNotFoundException) as ours:
            await client.get_media(StreamName="nope", StartSelector=EARLIEST)
    assert_not_found_like_boto3(ours.value, clip_server)
