"""Durability at the server level: a full disk, and retention under ingest and reads.

Real server processes on real disks: the full disk is a 1 MiB tmpfs; retention
is made short with ``--retention-unit-s`` (seconds per DataRetentionInHours
hour) and tiny segments (``--segment-bytes``, here from ``OPENKVS_SEGMENT_BYTES``), so a pass deletes many files.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from openkvs.server.store.embedded import EmbeddedStore
from tests.conftest import ServerProcess
from tests.kvs import chunks, create_stream, get_media, put
from tests.layout import aws_tags
from tests.media import synthetic_mkv
from tests.producer import put_media
from tests.test_crash import make_fragment, segments, stored_cluster, stream_dir
from tests.test_store import CAM, append, frag, index

FAST = ("--no-rate-limits", "--getmedia-idle-timeout-s", "0.3")
EARLIEST = {"StartSelectorType": "EARLIEST"}


def fragments(count: int, size: int, start: int = 1_700_000_000_000) -> list[bytes]:
    """``count`` Clusters 100 ms apart with random payloads of ``size`` bytes."""
    rng = random.Random(size)
    return [make_fragment(start + i * 100, rng.randbytes(size)) for i in range(count)]


def stored(server: ServerProcess, name: str) -> list[bytes]:
    """The Clusters GetMedia EARLIEST returns, as stored (no error chunk allowed)."""
    payload = get_media(server, name, EARLIEST)
    if not payload:
        return []
    assert all("SERVER_TIMESTAMP" in tags for tags in aws_tags(payload))
    return [stored_cluster(chunk) for chunk in chunks(payload)]


def persisted(result_acks: list[dict], sent: list[bytes], start: int) -> list[bytes]:
    """The sent Clusters these acks name, by timecode (``fragments`` spaces them 100 ms)."""
    return [sent[(a["FragmentTimecode"] - start) // 100] for a in result_acks]


def test_a_full_disk_fails_putmedia_with_5001_and_heals_without_restart(
    make_server, tiny_disk: Path
) -> None:
    """ENOSPC fails the append, not the server: the producer gets 5001 and may resend."""
    server = make_server(*FAST, data_dir=tiny_disk / "data")
    create_stream(server, "full")
    ballast = tiny_disk / "ballast"
    ballast.write_bytes(b"\0" * (640 << 10))
    start = 1_700_000_000_000
    sent = fragments(30, 30_000, start)
    first = put(server, "full", synthetic_mkv(sent))
    assert [a.get("ErrorId") for a in first.events("ERROR")] == [5001]
    kept = persisted(first.events("PERSISTED"), sent, start)
    assert 1 <= len(kept) < len(sent) and kept == sent[: len(kept)]  # batches fail whole

    # Full: stored fragments read back intact; reads and the control plane keep working.
    assert stored(server, "full") == kept
    kvs = server.client()
    assert kvs.describe_stream(StreamName="full")["StreamInfo"]["Status"] == "ACTIVE"
    assert [s["StreamName"] for s in kvs.list_streams()["StreamInfoList"]] == ["full"]
    kvs.get_data_endpoint(StreamName="full", APIName="PUT_MEDIA")
    again = put(server, "full", synthetic_mkv(sent[len(kept) :]))
    assert [a.get("ErrorId") for a in again.events("ERROR")] == [5001], again.acks
    kept += persisted(again.events("PERSISTED"), sent, start)  # a smaller batch may still fit
    assert len(kept) < len(sent) and kept == sent[: len(kept)] == stored(server, "full")

    # Space returns: the producer resends everything; nothing is stored twice.
    ballast.unlink()
    healed = put(server, "full", synthetic_mkv(sent))
    assert not healed.events("ERROR"), healed.acks
    assert persisted(healed.events("PERSISTED"), sent, start) == sent
    assert stored(server, "full") == sent


@pytest.fixture
def tiny_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fragment in a segment file of its own, so retention deletes a file per fragment."""
    monkeypatch.setenv("OPENKVS_SEGMENT_BYTES", "1")


async def watch_deletions(directory: Path) -> tuple[float, float]:
    """When retention's first pass over ``directory`` began and ended deleting (monotonic).

    The pass is the first burst of deletions: it ends when no file went for 50 ms.
    """
    count = len(segments(directory))
    first = last = 0.0
    while not first or time.monotonic() - last < 0.05:
        left = len(segments(directory))
        if left < count:
            count, last = left, time.monotonic()
            first = first or last
        await asyncio.sleep(0.0005)
    return first, last


@pytest.mark.serial  # ack gaps in wall-clock time
def test_retention_deletes_many_files_while_acks_keep_flowing(
    make_server, tiny_segments: None
) -> None:
    """Retention's file deletions run off the event loop: another stream's acks go on."""
    interval = 8.0  # the first pass after startup falls after the "old" ingest (~3 s here)
    server = make_server(
        *FAST, "--retention-unit-s", "0.25", "--retention-interval-s", str(interval)
    )
    create_stream(server, "old", retention=1)
    create_stream(server, "live", retention=87600)
    old = fragments(1500, 200)
    result = put(server, "old", synthetic_mkv(old), piece=1 << 20)
    assert len(result.events("PERSISTED")) == len(old)
    directory = stream_dir(server, "old")
    assert len(segments(directory)) == len(old), "a pass ran during the setup: slow disk?"
    live = fragments(int((interval + 1) / 0.01), 2000, start=1_800_000_000_000)
    arrivals: list[float] = []

    def on_ack(ack: dict) -> None:
        if ack["EventType"] == "PERSISTED":
            arrivals.append(time.monotonic())

    async def ingest_while_retention_runs() -> tuple[float, float]:
        watcher = asyncio.create_task(watch_deletions(directory))
        pieces = [synthetic_mkv([]), *live]
        await put_media(server.url, "live", pieces, delay=0.01, on_ack=on_ack)
        return await asyncio.wait_for(watcher, 5)

    first, last = asyncio.run(ingest_while_retention_runs())
    took = last - first
    during = [t for t in arrivals if first < t < last]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert len(arrivals) == len(live)
    assert arrivals[0] < first and last < arrivals[-1], "the pass was not during ingest"
    assert took > 0.1, f"the pass took {took:.3f} s: too short to tell"
    assert len(during) >= 0.5 * took / 0.01, f"{len(during)} acks during a {took:.3f} s pass"
    assert max(gaps) < took / 2, f"acks stalled {max(gaps):.3f} s"
    assert len(segments(directory)) <= 1 and stored(server, "old") == []


def test_retention_lets_a_reader_finish_its_fragment_then_says_4000(
    make_server, tiny_segments: None
) -> None:
    """A fragment being sent completes; the reader then learns (4000) that it fell behind."""
    # A reader that takes nothing for the idle timeout is cut off: it must outlast the pause.
    flags = ("--no-rate-limits", "--getmedia-idle-timeout-s", "3")
    server = make_server(*flags, "--retention-unit-s", "1.5", "--retention-interval-s", "0.2")
    create_stream(server, "old", retention=1)
    start = 1_700_000_000_000
    sent = fragments(1, 16 << 20, start) + fragments(2, 10_000, start + 100)
    acks = put(server, "old", synthetic_mkv(sent), piece=1 << 20).events("PERSISTED")
    numbers = [a["FragmentNumber"] for a in acks]
    assert persisted(acks, sent, start) == sent
    directory = stream_dir(server, "old")
    media = server.client("kinesis-video-media", read_timeout=30)
    payload = media.get_media(StreamName="old", StartSelector=EARLIEST)["Payload"]
    head = payload.read(1 << 16)  # the server is now blocked mid-way through fragment 1,
    # which is far larger than what the socket buffers hold
    deadline = time.monotonic() + 10
    while segments(directory) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not segments(directory), "retention did not delete the fragments"
    data = head + payload.read()
    tags = aws_tags(data)
    assert tags[0]["FRAGMENT_NUMBER"] == numbers[0]
    assert stored_cluster(chunks(data)[0]) == sent[0], "the fragment being read broke"
    assert [(t.get("ERROR_ID"), t["FRAGMENT_NUMBER"]) for t in tags[1:]] == [("4000", numbers[2])]

    for selector in (
        {"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": numbers[0]},
        {"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": numbers[1]},
    ):
        tags = aws_tags(get_media(server, "old", selector))
        assert [t.get("ERROR_ID") for t in tags] == ["4000"], selector
    assert get_media(server, "old", EARLIEST) == b""


async def test_an_append_does_not_wait_for_retention_deleting_its_own_stream(
    tmp_path: Path,
) -> None:
    """A producer back after a pause longer than retention: every segment, even the one
    being written, expires; its next fragment must not wait for all those deletions."""
    store = EmbeddedStore(str(tmp_path), segment_bytes=1)
    await store.open()
    await store.save_stream(CAM, None)
    for seq in range(1, 401):
        await append(store, CAM.key, frag(seq))
    truncation = asyncio.create_task(store.truncate_before(CAM.key, 10**15))
    await asyncio.sleep(0)  # the index is cut, the files are being deleted
    assert await index(store, CAM.key) == [] and await store.expired(CAM.key) == frag(400).meta
    await append(store, CAM.key, frag(401))
    assert not truncation.done(), "the append waited for retention"
    assert await truncation == 400
    await store.close()
    again = EmbeddedStore(str(tmp_path))
    await again.open()
    assert await index(again, CAM.key) == [frag(401).meta]
    await again.close()
