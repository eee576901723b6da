"""AWS quotas, each configurable: rates, connections, fragment limits, bounded memory."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.kvs import create_stream, get_media, numbers, put
from tests.media import cluster, simple_block, synthetic_mkv

MB = 1_000_000

pytestmark = pytest.mark.serial  # wall-clock pacing and latency: run alone


def body_of(fragments: int, size: int, start: int = 0) -> bytes:
    """``fragments`` fragments of about ``size`` bytes, one second apart."""
    half = b"\x07" * (size // 2)
    return synthetic_mkv(
        [
            cluster((start + i) * 1000, [simple_block(1, 0, half), simple_block(1, 500, half)])
            for i in range(fragments)
        ]
    )


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_putmedia_byte_rate_is_throttled_not_refused(make_server) -> None:
    limited = make_server("--putmedia-max-bytes-per-second", str(MB))
    unlimited = make_server("--putmedia-max-bytes-per-second", str(MB), "--no-rate-limits")
    body = body_of(10, 300_000)  # 3 MB: 1 s of burst, then 2 s at 1 MB/s
    for server in (limited, unlimited):
        create_stream(server, "rate")
    started = time.monotonic()
    result = put(limited, "rate", body)
    throttled = time.monotonic() - started
    assert len(result.events("PERSISTED")) == 10 and not result.events("ERROR")
    started = time.monotonic()
    assert len(put(unlimited, "rate", body).events("PERSISTED")) == 10
    assert throttled >= 1.8 > time.monotonic() - started


def test_putmedia_calls_per_second(make_server) -> None:
    server = make_server("--putmedia-calls-per-second", "2")
    create_stream(server, "calls")
    statuses = [put(server, "calls", body_of(1, 1000, start=i)).status for i in range(3)]
    assert statuses == [200, 200, 400]
    refused = put(server, "calls", body_of(1, 1000, start=9))
    assert refused.headers["x-amzn-errortype"].startswith("ClientLimitExceededException")
    time.sleep(1.1)
    assert put(server, "calls", body_of(1, 1000, start=10)).status == 200


def test_getmedia_byte_rate_per_session(make_server) -> None:
    server = make_server(
        "--getmedia-max-bytes-per-second", str(MB), "--getmedia-idle-timeout-s", "0.2"
    )
    create_stream(server, "slow")
    put(server, "slow", body_of(10, 300_000))
    started = time.monotonic()
    payload = get_media(server, "slow", {"StartSelectorType": "EARLIEST"})
    assert len(numbers(payload)) == 10 and len(payload) > 3 * MB
    assert time.monotonic() - started >= 1.8


def test_getmedia_connections_and_calls_are_configurable(make_server) -> None:
    server = make_server(
        "--getmedia-max-connections",
        "1",
        "--getmedia-calls-per-second",
        "3",
        "--getmedia-idle-timeout-s",
        "5",
    )
    create_stream(server, "conf")
    media = server.client("kinesis-video-media")
    selector = {"StartSelectorType": "NOW"}
    first = media.get_media(StreamName="conf", StartSelector=selector)
    with pytest.raises(media.exceptions.ConnectionLimitExceededException) as raised:
        media.get_media(StreamName="conf", StartSelector=selector)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    first["Payload"].close()
    time.sleep(0.5)  # the server notices the hang-up (unobservable without spending calls)
    with pytest.raises(media.exceptions.ClientLimitExceededException):
        for _ in range(3):
            time.sleep(0.05)
            media.get_media(StreamName="conf", StartSelector=selector)["Payload"].close()


def test_a_stalled_reader_does_not_make_the_server_buffer(make_server) -> None:
    """A reader that reads nothing while 60 MB arrive costs the server no 60 MB of memory."""
    server = make_server("--no-rate-limits", "--getmedia-idle-timeout-s", "1")
    create_stream(server, "stall")
    put(server, "stall", body_of(2, 1_000_000))
    media = server.client("kinesis-video-media", read_timeout=30)
    stalled = media.get_media(StreamName="stall", StartSelector={"StartSelectorType": "EARLIEST"})
    assert server.proc is not None
    before = rss_bytes(server.proc.pid)
    peak = before
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes(server.proc.pid))  # type: ignore[union-attr]
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for batch in range(6):
            result = put(server, "stall", body_of(10, 1_000_000, start=2 + batch * 10))
            assert len(result.events("PERSISTED")) == 10
    finally:
        done.set()
        watcher.join()
    assert peak - before < 30 * MB, f"server grew by {(peak - before) / MB:.0f} MB"
    data = stalled["Payload"].read()  # the stalled reader catches up from the store
    assert len(numbers(data)) == 62
