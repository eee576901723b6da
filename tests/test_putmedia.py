"""PutMedia errors, replacement, replays and streams without retention, over real HTTP."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kvs import LiveReader, create_stream, get_media, numbers, per_fragment, put
from tests.media import cluster, end_of_fragment, simple_block, synthetic_mkv
from tests.producer import put_media

EARLIEST = {"StartSelectorType": "EARLIEST"}


def good(timecode: int) -> bytes:
    return cluster(timecode, [simple_block(1, 0), simple_block(1, 40)]) + end_of_fragment()


@pytest.fixture
def srv(make_server):
    return make_server("--getmedia-idle-timeout-s", "0.5", "--max-fragment-bytes", "100000")


CASES = {
    "4001-too-large": (
        synthetic_mkv([good(1000), cluster(2000, [simple_block(1, 0, b"x" * 120_000)])]),
        4001,
    ),
    "4002-too-long": (
        synthetic_mkv([good(1000), cluster(2000, [simple_block(1, 0), simple_block(1, 25_000)])]),
        4002,
    ),
    "4004-not-increasing": (synthetic_mkv([good(1000), good(500)]), 4004),
    "4006-invalid-mkv": (synthetic_mkv([good(1000)]) + b"\x00garbage", 4006),
    "4010-undeclared-track": (
        synthetic_mkv([good(1000), cluster(2000, [simple_block(3, 0)])]),
        4010,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_errors_are_error_acks_and_keep_earlier_fragments(srv, case: str) -> None:
    body, error_id = CASES[case]
    create_stream(srv, "s")
    result = put(srv, "s", body, piece=1000)
    events = per_fragment(result.acks)
    assert events[1000] == ["BUFFERING", "RECEIVED", "PERSISTED"]
    assert result.acks[-1]["EventType"] == "ERROR" and result.acks[-1]["ErrorId"] == error_id
    stored = next(a["FragmentNumber"] for a in result.acks if a["EventType"] == "PERSISTED")
    assert numbers(get_media(srv, "s", EARLIEST)) == [stored]
    again = put(srv, "s", synthetic_mkv([good(9000)]))  # the stream still takes data
    assert [a["EventType"] for a in again.acks] == ["BUFFERING", "RECEIVED", "PERSISTED"]


def test_too_many_tracks_is_4012(srv) -> None:
    create_stream(srv, "t")
    result = put(srv, "t", synthetic_mkv([good(1000)], tracks=(1, 2, 3, 4)))
    assert [(a["EventType"], a.get("ErrorId")) for a in result.acks] == [("ERROR", 4012)]
    assert "FragmentTimecode" not in result.acks[0]


def test_bad_producer_start_timestamp_is_4007(srv) -> None:
    create_stream(srv, "p")
    result = put(
        srv, "p", synthetic_mkv([good(0)]), timecode_type="RELATIVE", start_timestamp="not-a-time"
    )
    assert [(a["EventType"], a.get("ErrorId")) for a in result.acks] == [("ERROR", 4007)]


def test_stream_deleted_during_ingest_is_4008(srv) -> None:
    arn = create_stream(srv, "d")
    control = srv.client()

    def body() -> Iterator[bytes]:
        yield synthetic_mkv([good(1000)])
        control.delete_stream(StreamARN=arn)
        yield good(2000)

    result = asyncio.run(put_media(srv.url, "d", body(), wait_for_acks=None))
    assert [(a["EventType"], a.get("ErrorId")) for a in result.acks][-1] == ("ERROR", 4008)


def test_unknown_stream_and_bad_headers_fail_before_200(srv) -> None:
    result = put(srv, "missing", synthetic_mkv([good(0)]))
    assert (
        result.status == 404 and result.headers["x-amzn-errortype"] == "ResourceNotFoundException"
    )
    create_stream(srv, "h")
    result = put(srv, "h", synthetic_mkv([good(0)]), timecode_type="SOMETIMES")
    assert result.status == 400 and result.headers["x-amzn-errortype"] == "InvalidArgumentException"


def test_a_newer_putmedia_replaces_the_older(srv) -> None:
    create_stream(srv, "r")

    async def scenario() -> tuple:
        stored = asyncio.Event()

        def on_ack(ack: dict) -> None:
            if ack["EventType"] == "PERSISTED":
                stored.set()

        body = synthetic_mkv([good(1000)])
        first = asyncio.create_task(put_media(srv.url, "r", body, finish=False, on_ack=on_ack))
        await asyncio.wait_for(stored.wait(), 10)
        second = await put_media(srv.url, "r", synthetic_mkv([good(2000)]))
        return await asyncio.wait_for(first, 10), second

    first, second = asyncio.run(scenario())
    assert [a["EventType"] for a in first.acks] == ["BUFFERING", "RECEIVED", "PERSISTED"]
    assert [a["EventType"] for a in second.acks] == ["BUFFERING", "RECEIVED", "PERSISTED"]
    assert len(numbers(get_media(srv, "r", EARLIEST))) == 2


def test_a_replayed_fragment_is_acknowledged_not_stored_twice(srv) -> None:
    create_stream(srv, "replay")
    body = synthetic_mkv([good(1000), good(2000)])
    first = put(srv, "replay", body)
    again = put(srv, "replay", synthetic_mkv([good(2000), good(3000)]))
    persisted = [a["FragmentNumber"] for a in first.acks if a["EventType"] == "PERSISTED"]
    replay = [a["FragmentNumber"] for a in again.acks if a["EventType"] == "PERSISTED"]
    assert replay[0] == persisted[1]
    assert numbers(get_media(srv, "replay", EARLIEST)) == persisted + replay[1:]


def test_no_retention_means_no_persisted_ack_but_live_reads_work(srv) -> None:
    create_stream(srv, "mem", retention=0)
    reader = LiveReader(srv, "mem", {"StartSelectorType": "NOW"})
    result = put(srv, "mem", synthetic_mkv([good(1000), good(2000)]))
    assert [a["EventType"] for a in result.acks] == ["BUFFERING", "RECEIVED"] * 2
    reader.join(10)
    received = [a["FragmentNumber"] for a in result.acks if a["EventType"] == "RECEIVED"]
    assert numbers(bytes(reader.data)) == received
    assert numbers(get_media(srv, "mem", EARLIEST)) == received  # from the memory buffer
    assert not any(Path(srv.data_dir).rglob("*.seg")) or all(
        p.stat().st_size == 0 for p in Path(srv.data_dir).rglob("*.seg")
    )


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a size-limited tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.embedded_store
def test_disk_full_is_5001_and_stored_fragments_stay_readable(
    make_server, small_disk, av_clip
) -> None:
    server = make_server("--getmedia-idle-timeout-s", "0.5", data_dir=small_disk / "data")
    create_stream(server, "full")
    first = put(server, "full", synthetic_mkv([good(1000)]))
    assert first.acks[-1]["EventType"] == "PERSISTED"
    filler = small_disk / "filler"
    with open(filler, "wb") as f:
        try:
            f.write(b"\0" * (3 << 20))
        except OSError:
            pass
    result = put(
        server, "full", av_clip.read_bytes(), timecode_type="RELATIVE", start_timestamp="1800000000"
    )
    assert result.acks[-1]["EventType"] == "ERROR" and result.acks[-1]["ErrorId"] == 5001
    stored = first.acks[-1]["FragmentNumber"]
    assert numbers(get_media(server, "full", EARLIEST))[0] == stored
    filler.unlink()
    later = put(server, "full", synthetic_mkv([good(5_000_000_000_000)]))
    assert later.acks[-1]["EventType"] == "PERSISTED"


def test_a_silent_producer_gets_idle_acks_then_is_closed(make_server) -> None:
    server = make_server(
        "--putmedia-idle-timeout-s", "1.6", "--putmedia-idle-ack-interval-s", "0.5"
    )
    create_stream(server, "quiet")
    body = synthetic_mkv([good(1000)])
    result = put(server, "quiet", body, finish=False)  # then sends nothing more
    kinds = [a["EventType"] for a in result.acks]
    assert kinds[:3] == ["BUFFERING", "RECEIVED", "PERSISTED"]
    assert kinds[3:] and set(kinds[3:]) == {"IDLE"}
    assert result.acks[-1] == {"EventType": "IDLE"}
