"""openkvs.client against a real OpenKVS server, with boto3 reading the same stream as the reference."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, UnknownServiceError
from botocore.response import StreamingBody

import openkvs.client
from openkvs.media import MediaFragment, follow, iter_fragments
from tests.conftest import ServerProcess
from tests.kvs import create_stream, put

SERVICE = "kinesis-video-media"
EARLIEST = {"StartSelectorType": "EARLIEST"}
TRAILING_TAGS = bytes.fromhex("1254C367")


def credentials(url: str, retries: int = 1, **config: Any) -> dict[str, Any]:
    """What tests/conftest.py gives boto3, so both clients sign alike."""
    return {
        "endpoint_url": url,
        "region_name": "us-west-2",
        "aws_access_key_id": "AKIDEXAMPLE",
        "aws_secret_access_key": "secret",
        "config": Config(retries={"max_attempts": retries}, **config),
    }


def put_clip(server: ServerProcess, name: str, clip: Path) -> None:
    create_stream(server, name)
    result = put(server, name, clip.read_bytes(), timecode_type="RELATIVE")
    assert [a["EventType"] for a in result.acks].count("PERSISTED") == 6


@contextmanager
def serving_clip(data_dir: Path, clip: Path) -> Iterator[ServerProcess]:
    """A server holding stream 'clip' (six fragments) whose GetMedia ends after 1 s idle."""
    server = ServerProcess(data_dir, extra=["--getmedia-idle-timeout-s", "1"])
    server.start()
    try:
        put_clip(server, "clip", clip)
        yield server
    finally:
        server.stop(signal.SIGKILL)


def read_with_boto3(server: ServerProcess) -> list[MediaFragment]:
    """The reference: stream 'clip' from EARLIEST as boto3 reads it."""
    response = server.client(SERVICE).get_media(StreamName="clip", StartSelector=EARLIEST)
    return list(iter_fragments(response["Payload"]))


@pytest.fixture(scope="module")
def clip_server(tmp_path_factory: pytest.TempPathFactory, av_clip: Path) -> Iterator[ServerProcess]:
    with serving_clip(tmp_path_factory.mktemp("kvs"), av_clip) as server:
        yield server


@pytest.fixture(scope="module")
def boto3_fragments(clip_server: ServerProcess) -> list[MediaFragment]:
    return read_with_boto3(clip_server)


def without_trailing_tags(fragment: MediaFragment) -> bytes:
    """A chunk's bytes up to its trailing AWS tags, whose MILLIS_BEHIND_NOW depends on the clock."""
    return fragment.raw[: fragment.raw.rindex(TRAILING_TAGS)]


def assert_same_fragments(ours: list[MediaFragment], reference: list[MediaFragment]) -> None:
    assert len(reference) == 6
    assert [f.number for f in ours] == [f.number for f in reference]
    assert [f.continuation_token for f in ours] == [f.continuation_token for f in reference]
    assert [without_trailing_tags(f) for f in ours] == [without_trailing_tags(f) for f in reference]


def test_get_media_earliest_returns_what_boto3_gets(clip_server, boto3_fragments) -> None:
    client = openkvs.client.client(SERVICE, **credentials(clip_server.url))
    response = client.get_media(StreamName="clip", StartSelector=EARLIEST)
    assert response["ContentType"] == "video/webm"
    assert isinstance(response["Payload"], StreamingBody)
    metadata = response["ResponseMetadata"]
    assert metadata["HTTPStatusCode"] == 200 and metadata["RetryAttempts"] == 0
    assert metadata["RequestId"] == metadata["HTTPHeaders"]["x-amzn-requestid"] != ""
    with response["Payload"] as payload:
        fragments = list(iter_fragments(payload, piece=1000))
    assert_same_fragments(fragments, boto3_fragments)
    assert sum(len(f.frames) for f in fragments) == 410


def test_payload_streams_while_the_response_is_still_open(make_server, av_clip) -> None:
    server = make_server()  # a caught-up GetMedia then waits 30 s for more
    put_clip(server, "live", av_clip)
    client = openkvs.client.Session(region_name="us-west-2").create_client(
        SERVICE, **credentials(server.url, read_timeout=60)
    )
    started = time.monotonic()
    response = client.get_media(StreamName="live", StartSelector=EARLIEST)
    payload = response["Payload"]
    first_two = list(islice(iter_fragments(payload, piece=512), 2))
    assert time.monotonic() - started < 10
    assert [len(f.frames) > 0 for f in first_two] == [True, True]
    assert len(payload.read(100)) == 100
    payload.close()
    assert time.monotonic() - started < 10


def assert_not_found_like_boto3(ours: ClientError, server: ServerProcess) -> None:
    """``ours`` carries what boto3 gets for the same missing stream, with its own RequestId."""
    with pytest.raises(ClientError) as boto3s:
        server.client(SERVICE).get_media(StreamName="nope", StartSelector=EARLIEST)
    response = ours.response
    assert response["Error"] == boto3s.value.response["Error"]
    assert response["Error"]["Code"] == "ResourceNotFoundException"
    assert response["Message"] == response["Error"]["Message"] != ""
    metadata = response["ResponseMetadata"]
    assert metadata["HTTPStatusCode"] == 404
    assert metadata["RequestId"] == metadata["HTTPHeaders"]["x-amzn-requestid"] != ""
    assert str(ours) == str(boto3s.value)


def test_missing_stream_raises_the_modeled_exception(clip_server) -> None:
    client = openkvs.client.client(SERVICE, **credentials(clip_server.url))
    with pytest.raises(client.exceptions.ResourceNotFoundException) as ours:
        client.get_media(StreamName="nope", StartSelector=EARLIEST)
    assert_not_found_like_boto3(ours.value, clip_server)


def test_follow_works_with_our_client(clip_server, boto3_fragments) -> None:
    client = openkvs.client.client(SERVICE, **credentials(clip_server.url))
    start = {
        "StartSelectorType": "FRAGMENT_NUMBER",
        "AfterFragmentNumber": boto3_fragments[1].number,
    }
    fragments = list(islice(follow(client, "clip", start, retry_delay=0.1), 4))
    assert [f.number for f in fragments] == [f.number for f in boto3_fragments[2:]]


def test_only_kinesis_video_media_is_served() -> None:
    with pytest.raises(UnknownServiceError):
        openkvs.client.client("kinesisvideo", region_name="us-west-2")
