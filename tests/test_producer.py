"""openkvs.producer against a real server: ACKs, refusals, reconnects, and the ACK parser."""

from __future__ import annotations

import io
import json
import signal
import threading
import time
from pathlib import Path

import pytest

from openkvs.producer import Ack, Producer, ProducerError
from openkvs.wire.acks import AckError, AckParser
from tests.kvs import create_stream, get_media
from tests.media import probe_frames


def stored_frames(server, name: str, tmp_path: Path) -> list[tuple[str, float]]:  # noqa: ANN001
    from openkvs.media import iter_fragments, write_mkv

    out = tmp_path / f"{name}.mkv"
    with open(out, "wb") as file:
        payload = get_media(server, name, {"StartSelectorType": "EARLIEST"})
        write_mkv(iter_fragments(io.BytesIO(payload)), file)
    return probe_frames(out)


def test_ack_parser_handles_split_merged_and_prefixed_acks() -> None:
    acks = [
        {"EventType": "BUFFERING", "FragmentTimecode": 0, "FragmentNumber": "9134"},
        {"EventType": "PERSISTED", "FragmentTimecode": 0, "FragmentNumber": "9134"},
        {"EventType": "ERROR", "FragmentTimecode": 1000, "ErrorId": 4002},
        {"EventType": "IDLE"},
    ]
    stream = b"0\r\n" + b"\n".join(json.dumps(a).encode() for a in acks)
    for cut in range(len(stream)):
        parser = AckParser()
        got = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
        assert [a.event_type for a in got] == ["BUFFERING", "PERSISTED", "ERROR", "IDLE"]
        assert got[2] == Ack("ERROR", 1000, None, 4002)
        assert got[1].fragment_number == "9134"
    for garbage in (b'{"EventType": nope}', b'{"a": 1]', b'{"a": "' + b"x" * 70000):
        with pytest.raises(AckError):
            AckParser().feed(garbage)


def test_a_file_is_stored_whole_and_every_ack_is_seen(make_server, av_clip: Path, tmp_path) -> None:
    server = make_server("--getmedia-idle-timeout-s", "0.5")
    create_stream(server, "prod1")
    acks: list[Ack] = []
    summary = Producer(server.url, "prod1", on_ack=acks.append).put(av_clip)
    assert (summary.fragments_sent, summary.fragments_acknowledged, summary.errors) == (6, 6, [])
    buffering = [a.timecode for a in acks if a.event_type == "BUFFERING"]
    assert len(buffering) == 6 and buffering == sorted(set(buffering))  # type: ignore[type-var]
    for kind in ("RECEIVED", "PERSISTED"):
        assert [a.timecode for a in acks if a.event_type == kind] == buffering
    assert sorted(stored_frames(server, "prod1", tmp_path)) == sorted(probe_frames(av_clip))


def test_a_server_killed_mid_stream_loses_and_repeats_nothing(
    make_server, av_clip: Path, tmp_path
) -> None:
    server = make_server("--getmedia-idle-timeout-s", "0.5")
    create_stream(server, "prod2")
    restarted = threading.Event()

    def restart() -> None:
        server.stop(signal.SIGKILL)
        time.sleep(0.5)
        server.start()
        restarted.set()

    persisted: list[Ack] = []

    def on_ack(ack: Ack) -> None:
        if ack.event_type == "PERSISTED":
            persisted.append(ack)
            if len(persisted) == 3:
                threading.Thread(target=restart).start()

    producer = Producer(server.url, "prod2", realtime=True, retry_delay=0.2, on_ack=on_ack)
    summary = producer.put(av_clip)
    assert restarted.wait(10)
    assert summary.reconnects >= 1 and summary.errors == []
    assert summary.fragments_acknowledged == summary.fragments_sent == 6
    assert sorted(stored_frames(server, "prod2", tmp_path)) == sorted(probe_frames(av_clip))


def test_refused_fragments_are_reported_and_the_rest_are_stored(make_server) -> None:
    from tests.kvs import numbers
    from tests.media import cluster, simple_block, synthetic_mkv

    server = make_server("--max-fragment-duration-ms", "3000", "--getmedia-idle-timeout-s", "0.5")
    create_stream(server, "prod3")
    clusters = [
        cluster(0, [simple_block(1, 0), simple_block(1, 500)]),
        cluster(1000, [simple_block(1, 0), simple_block(1, 4000)]),  # 4 s: too long
        cluster(6000, [simple_block(1, 0), simple_block(1, 500)]),
    ]
    summary = Producer(server.url, "prod3", timecode_type="RELATIVE").put(synthetic_mkv(clusters))
    assert summary.errors == [(1000, 4002)]
    assert summary.fragments_acknowledged == 2 and summary.reconnects == 1
    stored = get_media(server, "prod3", {"StartSelectorType": "EARLIEST"})
    assert len(numbers(stored)) == 2


def test_a_stream_without_retention_settles_on_received(make_server, av_clip: Path) -> None:
    server = make_server()
    create_stream(server, "prod4", retention=0)
    summary = Producer(server.url, "prod4", ack_event="RECEIVED").put(av_clip.read_bytes())
    assert summary.fragments_acknowledged == 6


def test_a_missing_stream_fails_at_once_with_its_code(make_server, av_clip: Path) -> None:
    server = make_server()
    started = time.monotonic()
    with pytest.raises(ProducerError) as raised:
        Producer(server.url, "nobody").put(av_clip)
    assert raised.value.code == "ResourceNotFoundException"
    assert time.monotonic() - started < 5


def test_input_that_is_not_matroska_is_refused_before_sending(make_server) -> None:
    server = make_server()
    create_stream(server, "prod5")
    with pytest.raises(ProducerError) as raised:
        Producer(server.url, "prod5").put(iter([b"not matroska at all" * 10]))
    assert raised.value.code == "InvalidInput" and raised.value.summary.fragments_sent == 0
