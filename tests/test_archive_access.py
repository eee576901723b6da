"""Archived media under credentials, access rules and quotas: SigV4 on the operations, the
session token alone on the HLS/DASH resources, AWS's per-stream limits."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tests.archive import fetch, ffmpeg_variant, load
from tests.producer import put_media
from tests.test_archived_media import H264
from tests.test_auth import producer_sdk_headers

ADMIN = ("AKIDADMIN", "admin-secret")
VIEWER = ("AKIDVIEWER", "viewer-secret")
OTHER = ("AKIDOTHER", "other-secret")


def client(server, key: tuple[str, str], service: str = "kinesis-video-archived-media"):  # type: ignore[no-untyped-def]
    return boto3.client(
        service, endpoint_url=server.url, region_name="us-east-1",
        aws_access_key_id=key[0], aws_secret_access_key=key[1],
        config=BotoConfig(retries={"max_attempts": 1}),
    )


def error(call) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as raised:
        call()
    response = raised.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


@pytest.fixture
def media(tmp_path: Path) -> Path:
    return ffmpeg_variant(tmp_path / "cam.mkv", *H264, seconds=3)


def test_operations_are_signed_and_ruled_the_session_resources_need_only_the_token(
    make_server, tmp_path: Path, media: Path
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(dict([ADMIN, VIEWER, OTHER])))
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({
        ADMIN[0]: {"admin": [""], "read": [""], "write": [""]},
        VIEWER[0]: {"read": ["cam"]},
        OTHER[0]: {"read": ["other"]},
    }))
    server = make_server("--credentials", str(keys), "--access-rules", str(rules))
    admin = client(server, ADMIN, "kinesisvideo")
    admin.create_stream(StreamName="cam", DataRetentionInHours=1)
    headers = producer_sdk_headers(server.url, "cam", ADMIN, None)
    result = asyncio.run(
        put_media(server.url, "cam", media.read_bytes(), timecode_type="RELATIVE", extra_headers=headers)
    )
    assert result.status == 200
    viewer = client(server, VIEWER)
    span = {"StartTimestamp": time.time() - 60, "EndTimestamp": time.time() + 1}
    listed = viewer.list_fragments(
        StreamName="cam", FragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": span}
    )["Fragments"]
    assert len(listed) == 3
    assert error(lambda: client(server, OTHER).list_fragments(
        StreamName="cam", FragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": span}
    )) == (401, "NotAuthorizedException")
    assert error(lambda: client(server, (VIEWER[0], "wrong")).get_hls_streaming_session_url(
        StreamName="cam", PlaybackMode="ON_DEMAND",
        HLSFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": span},
    ))[0] == 403
    url = viewer.get_hls_streaming_session_url(
        StreamName="cam", PlaybackMode="ON_DEMAND",
        HLSFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": span},
    )["HLSStreamingSessionURL"]
    status, body, _ = fetch(url)  # a player: no signature, the token is the credential
    assert status == 200 and body.startswith(b"#EXTM3U")
    assert fetch(url.split("?")[0])[0] == 403


@pytest.mark.serial  # calls per wall-clock second
def test_get_clip_is_one_call_a_second_per_stream_unless_limits_are_off(make_server, media: Path) -> None:
    for flags, refused in (((), True), (("--no-rate-limits",), False)):
        server = make_server(*flags)
        loaded = load(server, "cam", media)
        archived = server.client("kinesis-video-archived-media")
        selector = {"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": loaded.server_range()}
        archived.get_clip(StreamName="cam", ClipFragmentSelector=selector)["Payload"].read()
        if refused:
            with pytest.raises(archived.exceptions.ClientLimitExceededException):
                archived.get_clip(StreamName="cam", ClipFragmentSelector=selector)
            time.sleep(1.05)
        archived.get_clip(StreamName="cam", ClipFragmentSelector=selector)["Payload"].read()


@pytest.mark.serial  # calls per wall-clock second
def test_list_fragments_is_five_calls_a_second_per_stream(make_server, media: Path) -> None:
    server = make_server()
    loaded = load(server, "cam", media)
    archived = server.client("kinesis-video-archived-media")
    selector = {"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": loaded.server_range()}
    started = time.monotonic()
    for _ in range(5):
        archived.list_fragments(StreamName="cam", FragmentSelector=selector)
    if time.monotonic() - started < 0.9:
        assert error(lambda: archived.list_fragments(StreamName="cam", FragmentSelector=selector)) == (
            400, "ClientLimitExceededException")


def test_get_media_for_fragment_list_connections_per_stream(make_server, media: Path) -> None:
    server = make_server("--archive-max-connections", "1")
    loaded = load(server, "cam", media)
    body = json.dumps({"StreamName": "cam", "Fragments": [loaded.numbers[0]] * 1000}).encode()
    host, port = "127.0.0.1", server.port
    stalled = socket.create_connection((host, port))
    stalled.sendall(
        f"POST /getMediaForFragmentList HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    )
    try:
        assert stalled.recv(12) == b"HTTP/1.1 200"  # ~40 MB it never reads: it holds its slot
        archived = server.client("kinesis-video-archived-media")
        assert error(lambda: archived.get_media_for_fragment_list(
            StreamName="cam", Fragments=loaded.numbers[:1])) == (400, "ConnectionLimitExceededException")
    finally:
        stalled.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            archived.get_media_for_fragment_list(StreamName="cam", Fragments=loaded.numbers[:1])["Payload"].read()
            break
        except ClientError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
