"""SIGKILL during ingest loses no fragment that was acknowledged PERSISTED."""

from __future__ import annotations

import asyncio
import random
import signal

from tests.kvs import chunks, create_stream, get_media, numbers
from tests.layout import aws_tags
from tests.media import cluster, simple_block, synthetic_mkv
from tests.producer import put_media


def fragment(i: int) -> bytes:
    payload = bytes([i % 251]) * random.randint(2_000, 60_000)
    return cluster(1_000_000 + i * 100, [simple_block(1, 0, payload), simple_block(1, 50, payload)])


def test_sigkill_during_ingest_keeps_every_persisted_fragment(make_server) -> None:
    server = make_server("--getmedia-idle-timeout-s", "0.5")
    create_stream(server, "crash")
    persisted: list[str] = []
    sent: dict[str, bytes] = {}
    start = 0
    for cycle in range(3):
        kill_after = random.randint(3, 12)
        clusters = [fragment(start + i) for i in range(40)]
        by_timecode = {1_000_000 + (start + i) * 100: c for i, c in enumerate(clusters)}
        body = synthetic_mkv(clusters)
        limit = kill_after + len(persisted)

        def on_ack(ack: dict, by_timecode: dict = by_timecode, limit: int = limit) -> None:
            if ack["EventType"] == "PERSISTED":
                persisted.append(ack["FragmentNumber"])
                sent[ack["FragmentNumber"]] = by_timecode[ack["FragmentTimecode"]]
                if len(persisted) >= limit and server.proc:
                    server.proc.send_signal(signal.SIGKILL)

        asyncio.run(put_media(server.url, "crash", body, piece=7000, delay=0.001, on_ack=on_ack))
        server.stop(signal.SIGKILL)
        server.start()
        stored = get_media(server, "crash", {"StartSelectorType": "EARLIEST"})
        got = numbers(stored)
        assert set(persisted) <= set(got), f"cycle {cycle}: lost PERSISTED fragments"
        assert got == sorted(got) and len(got) == len(set(got))
        assert all("SERVER_TIMESTAMP" in t for t in aws_tags(stored))
        for number, chunk in zip(got, chunks(stored), strict=True):
            if number in sent:
                assert sent[number] in chunk, "a PERSISTED fragment came back different"
        start += 40
