"""SIGKILL the server at varied points of ingest, retention and reads; nothing acked is lost.

``KillLoop`` is the machinery; ``stress/kill_loop.py`` runs it for many more
cycles. Each cycle the producer resends what was not yet PERSISTED (as the SDK
does after a reconnect), then new fragments, and the server is killed at one
of ``KILL_POINTS``. After each restart of the same process object (same port,
same data dir) the stored streams are read back over GetMedia and checked:
every PERSISTED fragment is there byte for byte, numbers strictly increase,
and every stored fragment is one complete Cluster that was sent, stored once.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from openkvs.wire.mkv import ebml
from openkvs.wire.mkv.reader import (
    ClusterStart,
    EbmlHeader,
    Element,
    EndOfStream,
    MkvError,
    MkvReader,
)
from tests.conftest import ServerProcess
from tests.kvs import LiveReader, chunks, create_stream, get_media
from tests.layout import aws_tags
from tests.media import cluster, simple_block, synthetic_mkv
from tests.producer import put_media

DURABLE, EXPIRING = "durable", "expiring"
KILL_POINTS = (
    "before_first_ack",
    "mid_fragment",
    "received_not_persisted",
    "during_retention",
    "during_getmedia",
)
RETENTION_UNIT_S = 0.3
SEGMENT_BYTES = 16 << 10
SERVER_FLAGS = (
    "--no-rate-limits",
    "--getmedia-calls-per-second", "1000",
    "--getmedia-idle-timeout-s", "0.15",
    "--retention-interval-s", str(RETENTION_UNIT_S),
    "--retention-unit-s", str(RETENTION_UNIT_S),
    "--segment-bytes", str(SEGMENT_BYTES),
)  # fmt: skip


def make_fragment(timecode: int, payload: bytes) -> bytes:
    """One Cluster of two frames 50 ms apart: unique by its timecode and payload."""
    return cluster(timecode, [simple_block(1, 0, payload), simple_block(1, 50, payload[:99])])


def stored_cluster(chunk: bytes) -> bytes:
    """The fragment as the server stored it: from its Cluster up to the trailing AWS Tags."""
    reader = MkvReader()
    reader.feed(chunk)
    reader.feed_eof()
    start, end = -1, len(chunk)
    while True:
        offset = reader.offset
        event = reader.next_event()
        if event is None or isinstance(event, EndOfStream):
            break
        if isinstance(event, ClusterStart) and start < 0:
            start = offset
        elif isinstance(event, Element) and event.level == 1 and event.id == ebml.TAGS:
            end = offset
    assert start >= 0, "a chunk without a Cluster"
    return chunk[start:end]


def complete_chunks(data: bytes) -> list[bytes]:
    """The chunks of a GetMedia payload cut short by a kill: those the next chunk follows."""
    reader = MkvReader()
    reader.feed(data)
    starts = []
    while True:
        offset = reader.offset
        try:
            event = reader.next_event()
        except MkvError:
            break
        if event is None:
            break
        if isinstance(event, EbmlHeader):
            starts.append(offset)
    return [data[a:b] for a, b in zip(starts, starts[1:], strict=False)]


@dataclass
class StreamLedger:
    """What the producer sent to one stream and what the server acknowledged."""

    name: str
    sent: dict[bytes, int] = field(default_factory=dict)  # cluster -> timecode
    by_timecode: dict[int, bytes] = field(default_factory=dict)
    numbered: dict[str, bytes] = field(default_factory=dict)  # any ack's number -> cluster
    persisted: dict[str, bytes] = field(default_factory=dict)
    pending: list[bytes] = field(default_factory=list)  # sent, not yet PERSISTED, in order
    errors: list[dict] = field(default_factory=list)

    def on_ack(self, ack: dict) -> None:
        number, timecode = ack.get("FragmentNumber"), ack.get("FragmentTimecode")
        if ack["EventType"] == "ERROR":
            self.errors.append(ack)
        if number is None or timecode is None:
            return
        fragment = self.by_timecode[timecode]
        assert self.numbered.setdefault(number, fragment) == fragment, "one number, two fragments"
        if ack["EventType"] == "PERSISTED":
            self.persisted[number] = fragment
            if fragment in self.pending:
                self.pending.remove(fragment)

    def add(self, timecode: int, fragment: bytes) -> None:
        self.sent[fragment] = timecode
        self.by_timecode[timecode] = fragment
        self.pending.append(fragment)


@dataclass
class Cycle:
    """One cycle's outcome, for progress lines and the summary."""

    point: str
    acks: int = 0
    note: str = ""


class KillLoop:
    """Ingest, kill with SIGKILL at a chosen point, restart, verify; one cycle per call."""

    def __init__(self, server: ServerProcess, rng: random.Random) -> None:
        self.server, self.rng = server, rng
        self.streams = {DURABLE: StreamLedger(DURABLE), EXPIRING: StreamLedger(EXPIRING)}
        self.timecode = 1_700_000_000_000
        self.kills = 0

    def setup(self) -> None:
        create_stream(self.server, DURABLE, retention=87600)
        create_stream(self.server, EXPIRING, retention=1)

    def kill(self) -> None:
        proc = self.server.proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def new_fragments(self, ledger: StreamLedger, count: int) -> list[bytes]:
        out = []
        for _ in range(count):
            self.timecode += 100
            fragment = make_fragment(
                self.timecode, self.rng.randbytes(self.rng.randint(500, 12_000))
            )
            ledger.add(self.timecode, fragment)
            out.append(fragment)
        return out

    def send(
        self,
        ledger: StreamLedger,
        fragments: list[bytes],
        kill_at: int | None = None,
        on_ack: Callable[[dict], None] | None = None,
    ) -> int:
        """PutMedia ``fragments``; SIGKILL once ``kill_at`` bytes of the body are sent."""
        body = synthetic_mkv(fragments)

        def pieces() -> Iterator[bytes]:
            cut = len(body) if kill_at is None else kill_at
            for i in range(0, cut, 4096):
                yield body[i : min(i + 4096, cut)]
            if kill_at is not None:
                self.kill()
                yield body[cut:]

        def acked(ack: dict) -> None:
            ledger.on_ack(ack)
            if on_ack is not None:
                on_ack(ack)

        result = asyncio.run(
            put_media(self.server.url, ledger.name, pieces(), delay=0.0005, on_ack=acked)
        )
        return len(result.acks)

    def cycle(self, point: str) -> Cycle:
        """Run one cycle: ingest, kill at ``point``, restart, verify."""
        durable = self.streams[DURABLE]
        outcome = Cycle(point)
        fragments = list(durable.pending) + self.new_fragments(durable, self.rng.randint(2, 6))
        if point == "before_first_ack":
            header = len(synthetic_mkv([]))
            outcome.acks = self.send(durable, fragments, kill_at=self.rng.randint(0, header))
            assert outcome.acks == 0, "an ack arrived before any Cluster byte was sent"
        elif point == "mid_fragment":
            sizes = [len(synthetic_mkv([]))] + [len(f) for f in fragments]
            k = self.rng.randrange(1, len(sizes))
            start = sum(sizes[:k])
            outcome.acks = self.send(
                durable, fragments, kill_at=start + self.rng.randrange(sizes[k])
            )
        elif point == "received_not_persisted":
            target = self.rng.choice(fragments)

            def on_ack(ack: dict) -> None:
                if (
                    ack["EventType"] == "RECEIVED"
                    and durable.by_timecode.get(ack["FragmentTimecode"]) == target
                ):
                    self.kill()

            outcome.acks = self.send(durable, fragments, on_ack=on_ack)
        elif point == "during_retention":
            outcome.acks = self.send(durable, fragments)
            outcome.note = self.kill_during_retention()
        elif point == "during_getmedia":
            outcome.acks = self.send(durable, fragments)
            outcome.note = self.kill_during_getmedia()
        else:
            raise ValueError(point)
        self.kill()
        self.server.stop()
        self.kills += 1
        self.server.start()
        self.verify()
        return outcome

    def kill_during_retention(self) -> str:
        """Fill the expiring stream (one fragment per segment), kill while retention deletes."""
        ledger = self.streams[EXPIRING]
        count = self.rng.randint(8, 24)
        self.send(ledger, list(ledger.pending) + self.new_fragments(ledger, count))
        directory = stream_dir(self.server, EXPIRING)
        before = len(segments(directory))
        deadline = time.monotonic() + 4 * RETENTION_UNIT_S + 2
        while time.monotonic() < deadline:
            left = len(segments(directory))
            if left < before:
                self.kill()
                return "mid-pass" if left else "after-pass"
            time.sleep(0.001)  # a core for the other test worker
        raise AssertionError(f"retention deleted none of {before} segments")

    def kill_during_getmedia(self) -> str:
        """Read the durable stream from EARLIEST; kill after a random number of bytes."""
        reader = LiveReader(self.server, DURABLE, {"StartSelectorType": "EARLIEST"})
        total = sum(len(f) for f in self.streams[DURABLE].persisted.values())
        threshold = self.rng.randint(0, total)
        deadline = time.monotonic() + 5
        while len(reader.data) < threshold and reader.is_alive() and time.monotonic() < deadline:
            time.sleep(0.0002)
        self.kill()
        reader.join(5)
        data = bytes(reader.data)
        for chunk in complete_chunks(data):
            assert stored_cluster(chunk) in self.streams[DURABLE].sent
        return f"read {len(data)}/{total} bytes"

    def verify(self) -> None:
        """Read each stream back from EARLIEST and check it against the ledger."""
        for ledger in self.streams.values():
            payload = get_media(self.server, ledger.name, {"StartSelectorType": "EARLIEST"})
            check_stream(ledger, payload, expiring=ledger.name == EXPIRING)


def stream_dir(server: ServerProcess, name: str) -> Path:
    """Where the embedded store keeps stream ``name`` (its key is ``name.creation_ms``)."""
    (found,) = (server.data_dir / "streams").glob(name + ".*")
    return found


def segments(directory: Path) -> list[str]:
    return [n for n in os.listdir(directory) if n.endswith(".seg")]


def check_stream(ledger: StreamLedger, payload: bytes, expiring: bool) -> None:
    """Every chunk is a whole sent Cluster, once, in increasing number order; nothing acked lost.

    Retention may run while the expiring stream is read, so there (only) a
    4000 error chunk for a fragment deleted under the reader is allowed.
    """
    stored: dict[str, bytes] = {}
    last = -1
    pieces = chunks(payload)
    for tags, chunk in zip(aws_tags(payload), pieces, strict=True):
        if expiring and tags.get("ERROR_ID") == "4000":
            continue
        assert "SERVER_TIMESTAMP" in tags, f"{ledger.name}: unexpected chunk {tags}"
        number = tags["FRAGMENT_NUMBER"]
        assert int(number) > last, f"{ledger.name}: fragment numbers do not increase"
        last = int(number)
        body = stored_cluster(chunk)
        assert body in ledger.sent, f"{ledger.name}: {number} is not a Cluster that was sent"
        assert ledger.numbered.get(number, body) == body, f"{number} holds another fragment"
        stored[number] = body
    assert len(set(stored.values())) == len(stored), f"{ledger.name}: a fragment stored twice"
    assert not ledger.errors, f"{ledger.name}: ERROR acks {ledger.errors}"
    if expiring:
        return
    lost = [n for n in ledger.persisted if n not in stored]
    assert not lost, f"{ledger.name}: lost PERSISTED fragments {lost}"
    changed = [n for n, body in ledger.persisted.items() if stored[n] != body]
    assert not changed, f"{ledger.name}: PERSISTED fragments came back different {changed}"


def start_kill_loop(server_factory: Callable[..., ServerProcess], seed: int) -> KillLoop:
    """A server with fast retention and small segments, its streams created."""
    loop = KillLoop(server_factory(*SERVER_FLAGS), random.Random(seed))
    loop.setup()
    return loop


def test_sigkill_at_varied_points_never_loses_or_half_stores_a_fragment(make_server) -> None:
    seed = random.randrange(1 << 32)
    loop = start_kill_loop(make_server, seed)
    cycles = 6 * len(KILL_POINTS)  # a bounded run; stress/kill_loop.py does a thousand
    outcomes = [loop.cycle(KILL_POINTS[i % len(KILL_POINTS)]) for i in range(cycles)]
    durable = loop.streams[DURABLE]
    assert loop.kills == cycles
    assert len(durable.persisted) >= cycles, f"seed {seed}: too little was acknowledged"
    assert sum(o.acks == 0 for o in outcomes) >= 6, f"seed {seed}: no kill before an ack"
    assert any(o.note == "mid-pass" for o in outcomes), f"seed {seed}: never killed mid-pass"
