"""Regression tests for the defects issue 10 lists, each against the real server.

Each test names its defect; each failed on the code before the fix (the closing
note of issue 10 has the run). Races that need a store operation held at an exact
point run the server in-process over a gated store (``tests.inprocess``).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import threading
import time
from pathlib import Path

import pytest

from openkvs.media import write_mkv
from openkvs.media.reader import FragmentReader
from openkvs.server.store.memory import MemoryStore
from tests.inprocess import Gate, control, serving
from tests.kvs import LiveReader, chunks, create_stream, get_media, numbers, put
from tests.layout import aws_tags
from tests.media import cluster, end_of_fragment, simple_block, synthetic_mkv
from tests.producer import put_media
from tests.shapes import EPOCH_S, SHAPES, clusters, make, packets

EARLIEST = {"StartSelectorType": "EARLIEST"}
NOW = {"StartSelectorType": "NOW"}


def fragment(timecode: int, marker: bytes = b"frame", frames: int = 2) -> bytes:
    blocks = [simple_block(1, 40 * i, marker + b"-%d" % i) for i in range(frames)]
    return cluster(timecode, blocks) + end_of_fragment()


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


# ---- 1: ordinary A/V MKV was refused with 4004 ----------------------------------------------


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shapes")


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_every_fragment_of_real_producer_media_is_persisted_and_reads_back_identical(
    make_server, shapes_dir: Path, shape
) -> None:
    """Defect 1: a Cluster may start at the millisecond of the previous one's last frame."""
    source = make(shape, shapes_dir)
    body = source.read_bytes()
    server = make_server("--no-rate-limits", "--getmedia-idle-timeout-s", "0.5")
    create_stream(server, "shape")
    start = None if shape.timecode_type == "ABSOLUTE" else f"{EPOCH_S}.000"
    result = put(server, "shape", body, timecode_type=shape.timecode_type, start_timestamp=start)
    assert not result.events("ERROR"), result.acks
    assert len(result.events("PERSISTED")) == clusters(body) > 3
    merged = io.BytesIO()
    reader = FragmentReader()
    payload = get_media(server, "shape", EARLIEST)
    write_mkv(reader.feed(payload) + reader.feed_eof(), merged)
    assert packets(merged.getvalue()) == packets(source)


# ---- 2: the event loop froze at a gap in sequence numbers ------------------------------------


def test_a_now_reader_at_a_numbering_gap_gets_the_next_fragment(make_server) -> None:
    """Defect 2: a fragment numbered at BUFFERING but never stored leaves a gap."""
    server = make_server("--getmedia-idle-timeout-s", "3")
    create_stream(server, "gap")
    body = synthetic_mkv([fragment(1000)]) + cluster(2000, [simple_block(1, 0)]) + b"\x00junk"
    first = put(server, "gap", body)  # 1000 stored; 2000 numbered, then refused (4006)
    assert [a.get("ErrorId") for a in first.events("ERROR")] == [4006]
    assert len(first.events("BUFFERING")) == 2 and len(first.events("PERSISTED")) == 1
    reader = LiveReader(server, "gap", NOW)  # its start is fixed before the 200 comes
    growing = synthetic_mkv([cluster(3000, [simple_block(1, 0)])])
    second = put(server, "gap", [growing, simple_block(1, 40) + end_of_fragment()], delay=0.5)
    received = [a["FragmentNumber"] for a in second.events("RECEIVED")]
    reader.join(15)
    assert numbers(bytes(reader.data)) == received


# ---- 3: two publishers could write one stream at once ---------------------------------------


class HeldAppends(MemoryStore):
    """A memory store whose appends wait at ``gate`` (the first one only)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = Gate()

    async def append(self, claim, fragments):  # type: ignore[no-untyped-def]
        if not self.gate.entered.is_set():
            await self.gate.pass_through()
        await super().append(claim, fragments)


def answered_by(event: asyncio.Event):  # type: ignore[no-untyped-def]
    return lambda status: event.set()


async def test_only_the_newest_of_three_racing_publishers_ingests() -> None:
    """Defect 3: a third PutMedia arriving while the second waits for the first."""
    store = HeldAppends()
    async with serving(store, data_dir=":memory:", getmedia_idle_timeout_s=0.5) as url:
        await control(url, "createStream", {"StreamName": "race", "DataRetentionInHours": 1})
        first = asyncio.create_task(
            put_media(url, "race", synthetic_mkv([fragment(1000)]), finish=False)
        )
        await store.gate.entered.wait()  # the first one's fragment is being stored
        answered = [asyncio.Event(), asyncio.Event()]
        second = asyncio.create_task(
            put_media(
                url, "race", synthetic_mkv([fragment(2000)]), on_status=answered_by(answered[0])
            )
        )
        await answered[0].wait()  # its 200 is out: it waits for the first to finish
        third = asyncio.create_task(
            put_media(
                url, "race", synthetic_mkv([fragment(3000)]), on_status=answered_by(answered[1])
            )
        )
        await answered[1].wait()
        store.gate.open()
        results = await asyncio.wait_for(asyncio.gather(first, second, third), 20)
    ingested = [r for r in results[1:] if r.events("BUFFERING")]
    assert len(ingested) == 1 and ingested[0] is results[2], [r.acks for r in results]
    (info,) = await store.open()
    assert [m.producer_ms for m in await store.fragments_after(info.key, -1, 10)] == [1000, 3000]


# ---- 4: a live reader could get one fragment's tags around the next one's frames ------------


def test_live_and_stored_reads_are_identical_when_one_read_holds_two_fragments(
    make_server,
) -> None:
    """Defect 4: all of fragment N and the start of N+1 arrive in one socket read."""
    server = make_server("--getmedia-idle-timeout-s", "1")
    create_stream(server, "two")
    reader = LiveReader(server, "two", NOW)
    head = synthetic_mkv([])
    both = fragment(1000, b"N-frame") + cluster(2000, [simple_block(1, 0, b"N+1-frame-0")])
    rest = simple_block(1, 40, b"N+1-frame-1") + end_of_fragment()

    async def send() -> None:
        await put_media(server.url, "two", [head, both, rest], delay=0.3)

    asyncio.run(send())
    reader.join(10)
    live, stored = bytes(reader.data), get_media(server, "two", EARLIEST)
    assert len(numbers(stored)) == 2
    assert [strip_millis(c) for c in chunks(live)] == [strip_millis(c) for c in chunks(stored)]


def strip_millis(chunk: bytes) -> tuple[bytes, dict[str, str]]:
    """A chunk without its trailing tags, and its AWS tags but MILLIS_BEHIND_NOW."""
    from openkvs.wire.mkv import ebml

    (tags,) = aws_tags(chunk)
    tail = chunk.rfind(ebml.encode_id(ebml.TAGS))
    return chunk[:tail], {k: v for k, v in tags.items() if k != "MILLIS_BEHIND_NOW"}


# ---- 5: a replay was acknowledged PERSISTED before the original was durable ------------------


async def test_a_replay_is_persisted_only_once_the_original_is() -> None:
    """Defect 5: the original's append fails after its replay was acknowledged."""
    store = HeldAppends()
    async with serving(store, data_dir=":memory:") as url:
        await control(url, "createStream", {"StreamName": "dup", "DataRetentionInHours": 1})
        seen: list[dict] = []
        replayed = asyncio.Event()

        def on_ack(ack: dict) -> None:
            seen.append(ack)
            if sum(a["EventType"] == "RECEIVED" for a in seen) == 2:
                replayed.set()

        body = synthetic_mkv([fragment(1000), fragment(1000)])
        sending = asyncio.create_task(put_media(url, "dup", body, on_ack=on_ack, finish=False))
        await asyncio.wait_for(replayed.wait(), 10)
        assert not [a for a in seen if a["EventType"] == "PERSISTED"], seen
        from openkvs.server.store.base import StoreError

        store.gate.open(StoreError("the disk went away"))
        result = await asyncio.wait_for(sending, 10)
    assert not result.events("PERSISTED"), result.acks
    assert [a.get("ErrorId") for a in result.events("ERROR")] == [5001]


# ---- 6: an error after the 200 hung the reader -----------------------------------------------


@pytest.mark.embedded_store
def test_a_corrupt_record_is_an_in_band_4000_between_the_good_fragments(make_server) -> None:
    """Defect 6: one corrupt record withheld its read batch and hung the response."""
    server = make_server("--getmedia-idle-timeout-s", "0.5", log=True)
    create_stream(server, "rot")
    body = synthetic_mkv([fragment(t * 1000, b"marker-%d" % t) for t in range(1, 13)])
    result = put(server, "rot", body)
    sent = [a["FragmentNumber"] for a in result.events("PERSISTED")]
    (segment,) = Path(server.data_dir).rglob("*.seg")
    data = bytearray(segment.read_bytes())
    at = data.find(b"marker-3-1")  # an old fragment: no copy of it is left in memory
    data[at] ^= 0xFF
    segment.write_bytes(bytes(data))
    for _ in range(2):
        payload = get_media(server, "rot", EARLIEST)  # ends cleanly: read() returns
        tags = aws_tags(payload)
        assert [t.get("FRAGMENT_NUMBER") for t in tags] == sent
        assert [t.get("ERROR_ID") for t in tags] == [None, None, "4000"] + [None] * 9
    assert server.log is not None
    logged = [json.loads(line) for line in server.log.read_text().splitlines()]
    damaged = [e for e in logged if "damaged" in e["msg"]]
    assert len(damaged) == 1, damaged  # once, not at every read
    assert damaged[0]["segment"] == segment.name and damaged[0]["offset"] < at


# ---- 7: DeleteStream during an append gave the producer 5001 ---------------------------------


async def test_delete_stream_during_ingest_is_4008_not_5001(tmp_path: Path) -> None:
    """Defect 7: the fragment is appended while the store deletes the stream."""
    from openkvs.server.store.embedded import EmbeddedStore

    removing, release = threading.Event(), threading.Event()

    class SlowDelete(EmbeddedStore):
        def _remove_stream(self, directory, fd):  # type: ignore[no-untyped-def]
            removing.set()
            release.wait(10)
            super()._remove_stream(directory, fd)

    store = SlowDelete(str(tmp_path))
    async with serving(store, data_dir=str(tmp_path)) as url:
        made = await control(url, "createStream", {"StreamName": "del", "DataRetentionInHours": 1})
        pieces = asyncio.Queue[bytes | None]()

        async def body():  # type: ignore[no-untyped-def]
            while (piece := await pieces.get()) is not None:
                yield piece

        first_acks = asyncio.Event()
        producing = asyncio.create_task(
            put_media(url, "del", body(), on_ack=lambda _: first_acks.set())
        )
        await pieces.put(synthetic_mkv([cluster(1000, [simple_block(1, 0)])]))
        await asyncio.wait_for(first_acks.wait(), 10)  # BUFFERING: the fragment is under way
        deleting = asyncio.create_task(
            control(url, "deleteStream", {"StreamARN": made["StreamARN"]})
        )
        await asyncio.to_thread(removing.wait, 10)
        await pieces.put(simple_block(1, 40) + end_of_fragment())
        await asyncio.sleep(0.3)
        release.set()
        await pieces.put(None)
        result = await asyncio.wait_for(producing, 10)
        assert await deleting == {}
    assert [a.get("ErrorId") for a in result.events("ERROR")] == [4008], result.acks


# ---- 8: the access rules read another member than the operation acts on ----------------------


def test_access_rules_authorise_the_resource_the_operation_acts_on(
    make_server, tmp_path: Path
) -> None:
    """Defect 8: a key with rights on cam-* deletes any stream by adding StreamName."""
    import boto3
    from botocore.config import Config as BotoConfig

    keys = {"AKIDADMIN": "admin-secret", "AKIDCAM": "cam-secret"}
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    rules = {"AKIDADMIN": {"admin": [""]}, "AKIDCAM": {"admin": ["cam-"]}}
    (tmp_path / "rules.json").write_text(json.dumps(rules))
    server = make_server(
        "--credentials", str(tmp_path / "keys.json"), "--access-rules", str(tmp_path / "rules.json")
    )

    def client(key: str):  # type: ignore[no-untyped-def]
        return boto3.client(
            "kinesisvideo",
            endpoint_url=server.url,
            region_name="us-west-2",
            aws_access_key_id=key,
            aws_secret_access_key=keys[key],
            config=BotoConfig(retries={"max_attempts": 1}),
        )

    admin, camera = client("AKIDADMIN"), client("AKIDCAM")
    admin.create_stream(StreamName="cam-1")
    victim = admin.create_stream(StreamName="vault")["StreamARN"]

    def smuggle(request, **_):  # type: ignore[no-untyped-def]
        body = json.loads(request.data)
        body["StreamName"] = "cam-1"
        request.data = json.dumps(body).encode()

    camera.meta.events.register("before-sign", smuggle)
    from botocore.exceptions import ClientError

    for call in (
        lambda: camera.delete_stream(StreamARN=victim),
        lambda: camera.tag_resource(ResourceARN=victim, Tags=[{"Key": "k", "Value": "v"}]),
        lambda: camera.untag_resource(ResourceARN=victim, TagKeyList=["k"]),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["Error"]["Code"] in (
            "InvalidArgumentException",
            "NotAuthorizedException",
            "AccessDeniedException",
        )
    assert admin.describe_stream(StreamName="vault")["StreamInfo"]["StreamARN"] == victim
    assert admin.list_tags_for_resource(ResourceARN=victim)["Tags"] == {}


# ---- 9: unbounded memory from one connection --------------------------------------------------


def test_a_header_that_never_ends_is_refused_and_memory_stays_flat(make_server) -> None:
    """Defect 9: Segment-level elements before the first Cluster had no total limit."""
    from openkvs.wire.mkv import ebml

    server = make_server()
    create_stream(server, "bomb")
    void = ebml.element(ebml.VOID, b"\0" * (1 << 20))
    before = rss(server.proc.pid)
    result = put(server, "bomb", [synthetic_mkv([])] + [void] * 150)
    grown = rss(server.proc.pid) - before
    assert [a.get("ErrorId") for a in result.events("ERROR")] in ([4001], [4006]), result.acks
    assert grown < 40 << 20, f"the server grew by {grown >> 20} MiB"


@pytest.mark.serial  # 4 x 30 MB must arrive within the 3 s live buffer
def test_live_buffers_are_capped_across_streams_and_trimmed_without_new_fragments(
    make_server,
) -> None:
    """Defect 9: retention-0 buffers were trimmed only on arrival, with no process-wide cap."""
    server = make_server(
        "--no-rate-limits",
        "--live-buffer-total-bytes",
        "20000000",
        "--live-buffer-seconds",
        "3",
        "--getmedia-idle-timeout-s",
        "0.3",
    )
    before = rss(server.proc.pid)
    frame = os.urandom(500_000)
    for name in ("a", "b", "c", "d"):
        create_stream(server, name, retention=0)
        body = synthetic_mkv([fragment(t * 1000, frame, frames=2) for t in range(1, 31)])
        result = put(server, name, body, piece=1 << 20)
        assert len(result.events("RECEIVED")) == 30
    grown = rss(server.proc.pid) - before
    assert grown < 80 << 20, f"four streams of 30 MB grew the server by {grown >> 20} MiB"
    held = sum(len(numbers(get_media(server, n, EARLIEST))) for n in "abcd")
    assert 0 < held <= 20
    deadline = time.monotonic() + 15
    while any(numbers(get_media(server, n, EARLIEST)) for n in "abcd"):
        assert time.monotonic() < deadline, "the buffers were never trimmed by age"
        time.sleep(0.5)


# ---- found in review: a reader hanging up mid-fragment froze the event loop ------------------


def test_a_reader_hanging_up_mid_fragment_leaves_the_server_running(make_server) -> None:
    """The reader's task resumed with nothing new to send and nowhere to wait: it spun."""
    import aiohttp

    server = make_server()
    create_stream(server, "s")
    kvs = server.client(read_timeout=5)

    async def scenario() -> list[dict]:
        pieces: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def body():  # type: ignore[no-untyped-def]
            while (piece := await pieces.get()) is not None:
                yield piece

        begun = asyncio.Event()
        producing = asyncio.create_task(
            put_media(server.url, "s", body(), on_ack=lambda _: begun.set())
        )
        await pieces.put(synthetic_mkv([cluster(1000, [simple_block(1, 0, b"f0")])]))
        await begun.wait()  # the fragment is growing; the producer pauses
        selector = {"StreamName": "s", "StartSelector": {"StartSelectorType": "EARLIEST"}}
        async with aiohttp.ClientSession() as http:
            response = await http.post(f"{server.url}/getMedia", json=selector)
            await response.content.readexactly(10)  # the chunk's head: it follows the fragment
            response.close()  # ...and hangs up
        for _ in range(4):  # the follower's tick (0.25 s) notices the hang-up meanwhile
            names = await asyncio.to_thread(lambda: kvs.list_streams()["StreamInfoList"])
            assert [n["StreamName"] for n in names] == ["s"]
            await asyncio.sleep(0.2)
        await pieces.put(simple_block(1, 40) + end_of_fragment())
        await pieces.put(None)
        return (await asyncio.wait_for(producing, 10)).acks

    acks = asyncio.run(scenario())
    assert [a["EventType"] for a in acks] == ["BUFFERING", "RECEIVED", "PERSISTED"]


# ---- found in review: fragments waiting for a slow disk had no bound --------------------------


async def test_a_slow_store_slows_the_producer_instead_of_filling_memory() -> None:
    """While appends stall, the session stops reading once twice the fragment limit waits."""
    store = HeldAppends()
    async with serving(store, data_dir=":memory:", max_fragment_bytes=100_000) as url:
        await control(url, "createStream", {"StreamName": "slow", "DataRetentionInHours": 1})
        body = synthetic_mkv([fragment(t * 1000, b"x" * 25_000) for t in range(1, 201)])
        received = []
        producing = asyncio.create_task(
            put_media(url, "slow", body, on_ack=lambda a: received.append(a["EventType"]))
        )
        await store.gate.entered.wait()
        await asyncio.sleep(0.5)  # nothing more may happen while the store is stuck
        waiting = received.count("RECEIVED")
        assert 1 <= waiting <= 10, f"{waiting} fragments (50 KB each) read while none was stored"
        store.gate.open()
        result = await asyncio.wait_for(producing, 30)
    assert len(result.events("PERSISTED")) == 200
