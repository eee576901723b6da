"""Several OpenKVS nodes on one PostgreSQL and one SeaweedFS: one set of streams, one owner per
stream, PutMedia relayed to it from any node, readers on any node, and a takeover when the
owner is killed with SIGKILL mid-ingest that loses and duplicates no PERSISTED fragment."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from openkvs.producer import Producer
from openkvs.wire.acks import Ack
from tests.conftest import ServerProcess
from tests.kvs import LiveReader, get_media, numbers, put
from tests.media import ffmpeg_command, ffmpeg_mkv, probe_frames
from tests.producer import put_media
from tests.services import cluster_flags, free_ports
from tests.test_cluster_store import openkvs
from tests.test_health import probe
from tests.test_media_e2e import probe_frames_of_chunks
from tests.test_producer import stored_frames

LEASE_S = 2


@pytest.fixture
def cluster(database_url: str, s3_bucket: Any, tmp_path: Path) -> Iterator[Callable[..., list[ServerProcess]]]:
    """``cluster(n, *flags)`` starts n nodes (each ``--node-url`` its own port) on one schema
    and bucket; every node is killed at teardown."""
    flags = cluster_flags(database_url, s3_bucket)
    started: list[ServerProcess] = []

    def start(count: int, *extra: str) -> list[ServerProcess]:
        assert openkvs("cluster", "init", *flags[2:]).returncode == 0
        for port in free_ports(count):
            node = ServerProcess(
                tmp_path / f"node{port}",
                port=port,
                extra=[*flags, "--node-url", f"http://127.0.0.1:{port}",
                       "--lease-seconds", str(LEASE_S), *extra],
            )
            started.append(node)
            node.start()
        return started[-count:]

    yield start
    for node in started:
        node.stop(signal.SIGKILL)


def endpoint(node: ServerProcess, name: str, api: str = "PUT_MEDIA") -> str:
    return str(node.client().get_data_endpoint(StreamName=name, APIName=api)["DataEndpoint"])


def by_url(nodes: list[ServerProcess], url: str) -> ServerProcess:
    return next(node for node in nodes if node.url == url)


def error_code(call: Callable[[], object]) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return str(caught.value.response["Error"]["Code"])


def test_every_node_serves_one_set_of_streams_and_relays_putmedia_to_the_owner(
    cluster, av_clip: Path
) -> None:
    a, b = cluster(2, "--getmedia-idle-timeout-s", "3", "--no-rate-limits")
    assert probe(a, "/ready") == probe(b, "/ready") == (200, {"status": "ready"})
    ca, cb = a.client(), b.client()
    arn = ca.create_stream(StreamName="cam", DataRetentionInHours=24)["StreamARN"]
    assert cb.describe_stream(StreamName="cam")["StreamInfo"]["StreamARN"] == arn
    assert error_code(lambda: cb.create_stream(StreamName="cam")) == "ResourceInUseException"
    version = cb.describe_stream(StreamName="cam")["StreamInfo"]["Version"]
    cb.update_stream(StreamName="cam", CurrentVersion=version, MediaType="video/h264")
    seen = ca.describe_stream(StreamName="cam")["StreamInfo"]
    assert seen["MediaType"] == "video/h264" and seen["Version"] != version
    update = lambda: ca.update_stream(StreamName="cam", CurrentVersion=version)  # noqa: E731
    assert error_code(update) == "VersionMismatchException"
    for name in ("cam-2", "cam-3"):
        cb.create_stream(StreamName=name)
    first = ca.list_streams(MaxResults=2)
    rest = ca.list_streams(MaxResults=2, NextToken=first["NextToken"])
    listed = [s["StreamName"] for s in first["StreamInfoList"] + rest["StreamInfoList"]]
    assert listed == ["cam", "cam-2", "cam-3"] and "NextToken" not in rest

    owner_url = endpoint(a, "cam")
    assert endpoint(b, "cam") == owner_url and endpoint(b, "cam", "GET_MEDIA") == owner_url
    owner = by_url([a, b], owner_url)
    other = b if owner is a else a
    assert endpoint(other, "cam", "LIST_FRAGMENTS") == other.url  # any node: itself
    follower = LiveReader(other, "cam", {"StartSelectorType": "NOW"})  # on the non-owner
    body = av_clip.read_bytes()
    stored = [a["FragmentNumber"] for a in put(owner, "cam", body, timecode_type="RELATIVE").events("PERSISTED")]
    assert len(stored) == 6
    follower.join(15)
    assert numbers(bytes(follower.data)) == stored  # heard of through the database
    again = put(other, "cam", body, timecode_type="RELATIVE")  # relayed to the owner, which knows them all
    assert again.status == 200 and not again.events("ERROR")
    assert [a["FragmentNumber"] for a in again.events("PERSISTED")] == stored
    assert endpoint(other, "cam") == owner_url

    cb.create_stream(StreamName="live")  # no retention: only its owner holds its fragments
    received = put(owner, "live", body, timecode_type="RELATIVE").events("RECEIVED")
    assert len(received) == 6
    relayed = get_media(other, "live", {"StartSelectorType": "EARLIEST"})
    assert numbers(relayed) == [a["FragmentNumber"] for a in received]

    cb.delete_stream(StreamARN=arn)
    assert error_code(lambda: ca.describe_stream(StreamName="cam")) == "ResourceNotFoundException"
    listed = [s["StreamName"] for s in ca.list_streams()["StreamInfoList"]]
    assert listed == ["cam-2", "cam-3", "live"]


def _persisted(node: ServerProcess, name: str) -> list[dict[str, Any]]:
    archived = node.client("kinesis-video-archived-media")
    fragments = archived.list_fragments(
        StreamName=name,
        FragmentSelector={
            "FragmentSelectorType": "SERVER_TIMESTAMP",
            "TimestampRange": {"StartTimestamp": 0, "EndTimestamp": time.time() + 60},
        },
    )["Fragments"]
    return sorted(fragments, key=lambda f: int(f["FragmentNumber"]))


def test_killing_the_owner_mid_ingest_moves_the_stream_with_no_fragment_lost_or_doubled(
    cluster, tmp_path: Path
) -> None:
    nodes = cluster(3, "--no-rate-limits", "--getmedia-idle-timeout-s", "1")
    control = nodes[0]
    names = (f"door-{i}" for i in range(100))
    for name in names:  # a stream whose producer the control node will not own
        control.client().create_stream(StreamName=name, DataRetentionInHours=24)
        if endpoint(control, name) != control.url:
            break
    owner = by_url(nodes, endpoint(control, name))
    seconds = 8
    reference = ffmpeg_mkv(tmp_path / "reference.mkv", seconds=seconds)
    ffmpeg = subprocess.Popen(
        ffmpeg_command("-", seconds=seconds, realtime=True), stdout=subprocess.PIPE
    )
    putter = subprocess.Popen(
        [sys.executable, "-m", "openkvs", "put", name, "-", "--endpoint-url", control.url],
        stdin=ffmpeg.stdout, stderr=subprocess.PIPE, text=True,
    )
    assert ffmpeg.stdout is not None
    ffmpeg.stdout.close()
    deadline = time.monotonic() + 20
    while len(_persisted(control, name)) < 3:
        assert time.monotonic() < deadline, "no fragments stored"
        time.sleep(0.1)
    owner.stop(signal.SIGKILL)
    _, put_err = putter.communicate(timeout=60)
    assert ffmpeg.wait(10) == 0
    assert putter.returncode == 0, put_err
    assert f"{seconds} sent, {seconds} acknowledged, 0 refused" in put_err
    survivor = next(node for node in nodes if node is not owner and node is not control)
    new_owner = endpoint(control, name)
    assert new_owner in (control.url, survivor.url)
    stored = _persisted(survivor, name)
    starts = [f["ProducerTimestamp"] for f in stored]
    assert len(stored) == seconds and len(set(starts)) == seconds  # none lost, none twice
    payload = get_media(control, name, {"StartSelectorType": "EARLIEST"})
    assert numbers(payload) == [f["FragmentNumber"] for f in stored]
    out = tmp_path / "out.mkv"
    out.write_bytes(payload)
    assert len(probe_frames_of_chunks(out, tmp_path)) == len(probe_frames(reference))
    assert "reconnected" in put_err, put_err


def test_a_raw_putmedia_resent_to_another_node_after_the_owner_dies_is_recognised(
    cluster, av_clip: Path
) -> None:
    a, b = cluster(2, "--no-rate-limits")
    a.client().create_stream(StreamName="gate", DataRetentionInHours=24)
    body = av_clip.read_bytes()
    first = asyncio.run(put_media(a.url, "gate", body, timecode_type="RELATIVE"))
    stored = [ack["FragmentNumber"] for ack in first.events("PERSISTED")]
    assert len(stored) == 6
    a.stop(signal.SIGKILL)  # its lease still runs: b waits it out, then takes the stream
    started = time.monotonic()
    resent = asyncio.run(put_media(b.url, "gate", body, timecode_type="RELATIVE"))
    assert time.monotonic() - started < LEASE_S + 5
    assert [ack["FragmentNumber"] for ack in resent.events("PERSISTED")] == stored
    assert not resent.events("ERROR")
    assert [f["FragmentNumber"] for f in _persisted(b, "gate")] == stored


def test_ingest_rides_out_a_restart_of_postgresql_and_of_the_object_store(
    cluster, postgres_server, seaweedfs_server, tmp_path: Path
) -> None:
    (node,) = cluster(1, "--getmedia-idle-timeout-s", "1")
    node.client().create_stream(StreamName="yard", DataRetentionInHours=24)
    source = ffmpeg_mkv(tmp_path / "source.mkv", seconds=12)
    acks: list[Ack] = []
    outages: list[threading.Thread] = []
    outage_at = {2: lambda: postgres_server.restart(2.0), 6: lambda: seaweedfs_server.restart(2.0)}

    def on_ack(ack: Ack) -> None:
        acks.append(ack)
        persisted = sum(a.event_type == "PERSISTED" for a in acks)
        if ack.event_type == "PERSISTED" and persisted in outage_at:
            outages.append(threading.Thread(target=outage_at.pop(persisted)))
            outages[-1].start()

    producer = Producer(node.url, "yard", realtime=True, retry_delay=0.2, max_retries=40,
                        on_ack=on_ack)
    summary = producer.put(source)
    for outage in outages:
        outage.join(60)
    assert len(outages) == 2
    failed = {a.error_id for a in acks if a.event_type == "ERROR"}
    assert failed <= {5000, 5001} and 5001 in failed  # while they were away
    assert summary.errors == [] and summary.fragments_acknowledged == summary.fragments_sent == 12
    stored = _persisted(node, "yard")
    assert len({f["ProducerTimestamp"] for f in stored}) == len(stored) == 12
    assert sorted(stored_frames(node, "yard", tmp_path)) == sorted(probe_frames(source))
