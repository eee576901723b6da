"""One OpenKVS node on the clustered store: a real PostgreSQL and SeaweedFS, the real CLI,
boto3 and PutMedia; what it stores survives a restart of the node."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from openkvs.server.store.cluster.schema import VERSION
from tests.archive import load, packets, relative
from tests.kvs import get_media, numbers
from tests.services import cluster_flags


def openkvs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openkvs", *args], capture_output=True, text=True, timeout=60
    )


def test_a_node_refuses_a_database_without_the_schema_until_cluster_init(
    make_server, database_url: str, s3_bucket: Any, tmp_path: Path
) -> None:
    flags = cluster_flags(database_url, s3_bucket)
    refused = openkvs("serve", "--port", "0", *flags)
    assert refused.returncode == 2 and "run `openkvs cluster init`" in refused.stderr
    half = openkvs("serve", "--store", "postgres", "--database-url", database_url)
    assert half.returncode == 2 and "--s3-endpoint-url, --s3-bucket" in half.stderr
    done = openkvs("cluster", "init", *flags[2:])
    assert done.returncode == 0 and f"schema version {VERSION} ready" in done.stderr, done.stderr
    assert openkvs("cluster", "init", *flags[2:]).returncode == 0  # again: nothing to do


def test_ingest_read_and_playback_on_the_cluster_store_survive_a_restart(
    make_server, database_url: str, s3_bucket: Any, av_clip: Path, tmp_path: Path
) -> None:
    flags = cluster_flags(database_url, s3_bucket)
    assert openkvs("cluster", "init", *flags[2:]).returncode == 0
    server = make_server(*flags, "--node-url", "http://node-a.example:8080",
                         "--getmedia-idle-timeout-s", "0.5", "--no-rate-limits")
    control = server.client()
    loaded = load(server, "cam", av_clip)
    assert len(loaded.numbers) == 6
    endpoint = control.get_data_endpoint(StreamName="cam", APIName="GET_MEDIA")["DataEndpoint"]
    assert endpoint == "http://node-a.example:8080"
    payload = get_media(server, "cam", {"StartSelectorType": "EARLIEST"})
    assert numbers(payload) == loaded.numbers
    server.stop()
    server.start()  # a new process: everything comes back from PostgreSQL and the objects
    assert [s["StreamName"] for s in server.client().list_streams()["StreamInfoList"]] == ["cam"]
    assert numbers(get_media(server, "cam", {"StartSelectorType": "EARLIEST"})) == loaded.numbers
    archived = server.client("kinesis-video-archived-media")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(archived.get_clip(
        StreamName="cam",
        ClipFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": loaded.server_range()},
    )["Payload"].read())
    assert relative(packets(clip, "v")) == relative(packets(av_clip, "v"))
    keys = s3_bucket.client().list_objects_v2(Bucket=s3_bucket.bucket)["Contents"]
    assert len(keys) == 6 and all(k["Key"].startswith("cam.") for k in keys)
    control = server.client()
    control.delete_stream(StreamARN=control.describe_stream(StreamName="cam")["StreamInfo"]["StreamARN"])
    deadline = time.monotonic() + 10
    while s3_bucket.client().list_objects_v2(Bucket=s3_bucket.bucket).get("KeyCount"):
        assert time.monotonic() < deadline, "the stream's objects were not deleted"
        time.sleep(0.1)


async def test_a_fragment_stored_by_one_node_wakes_a_reader_waiting_on_another(
    database_url: str, s3_bucket: Any
) -> None:
    import asyncio

    from openkvs.server.store.cluster import ClusterStore, S3Target
    from tests.test_store_contract import INFO, fragment

    target = S3Target(s3_bucket.endpoint_url, s3_bucket.access_key, s3_bucket.secret_key, s3_bucket.bucket)
    writer, reader = ClusterStore(database_url, target), ClusterStore(database_url, target)
    await writer.init()
    try:
        await writer.open()
        await reader.open()
        await writer.save_stream(INFO, None)
        assert await reader.wait_for_fragment(INFO.key, 0, 0.2) is False
        waiting = asyncio.create_task(reader.wait_for_fragment(INFO.key, 0, 10))
        await asyncio.sleep(0.3)  # the reader is listening before the append
        started = time.monotonic()
        await writer.append(await writer.claim_writer(INFO.key), [fragment(1)])
        assert await asyncio.wait_for(waiting, 5) is True
        assert time.monotonic() - started < 4.0  # woken by NOTIFY, not by its 10 s timeout
        assert [m.seq for m in await reader.fragments_after(INFO.key, 0, 10)] == [1]
    finally:
        await writer.close()
        await reader.close()


async def test_objects_no_row_points_at_are_swept_when_a_writer_claims_the_stream(
    database_url: str, s3_bucket: Any
) -> None:
    from openkvs.server.store.cluster import ClusterStore, S3Target
    from openkvs.server.store.cluster.objects import object_key
    from tests.test_store_contract import INFO, fragment

    target = S3Target(s3_bucket.endpoint_url, s3_bucket.access_key, s3_bucket.secret_key, s3_bucket.bucket)
    store = ClusterStore(database_url, target)
    await store.init()
    try:
        await store.open()
        await store.save_stream(INFO, None)
        await store.append(await store.claim_writer(INFO.key), [fragment(1), fragment(2)])
        s3 = s3_bucket.client()
        for seq in (3, 7):  # uploaded, then the writer crashed before its rows committed
            s3.put_object(Bucket=s3_bucket.bucket, Key=object_key(INFO.key, seq), Body=b"orphan")
        claim = await store.claim_writer(INFO.key)
        assert claim.next_seq == 3
        listed = s3.list_objects_v2(Bucket=s3_bucket.bucket)["Contents"]
        assert sorted(item["Key"] for item in listed) == [object_key(INFO.key, 1), object_key(INFO.key, 2)]
        got = await store.read(INFO.key, [fragment(1).meta, fragment(2).meta])
        assert [g.meta.seq for g in got] == [1, 2] and all(not hasattr(g, "where") for g in got)
    finally:
        await store.close()
