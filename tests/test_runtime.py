"""The pure tables and the stream runtime, driven directly: no sockets, no server.

The PutMedia ACK table and the GetMedia step table are plain functions of what
happened; the runtime is exercised with a real memory store, and hypothesis
races publishers against each other in random interleavings.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openkvs.server.ingest.session import IngestSession, Phase, SessionError
from openkvs.server.model import FragmentMeta, FragmentNumber, StreamInfo
from openkvs.server.runtime.buffers import LiveBuffers
from openkvs.server.runtime.stream import BufferLimits, Refused, Replaced, StreamRuntime
from openkvs.server.serve.reader import (
    End,
    Forward,
    Live,
    Serve,
    SkipExpired,
    Wait,
    live_step,
    next_step,
)
from openkvs.server.store.memory import MemoryStore
from openkvs.wire import error_ids
from openkvs.wire.fragmenter import FragmentBegun, FragmentDone

# ---- the PutMedia ACK table -----------------------------------------------------------------


def test_acks_follow_the_table_and_nothing_follows_an_error() -> None:
    session = IngestSession(persistent=True)
    assert session.idle() is not None and session.phase is Phase.WAITING
    session.turn()
    assert bytes(session.begun(10, "1", replay=False)).startswith(b'{"EventType":"BUFFERING"')
    with pytest.raises(SessionError):
        session.begun(20, "2", replay=False)  # a fragment cannot begin inside another
    session.received(10, "1")
    session.begun(20, "2", replay=True)
    session.received(20, "2")
    session.body_ended()
    assert not session.finished()  # two fragments still to be stored
    assert session.persisted(10, "1") is not None
    assert session.persisted(20, "2") is not None
    assert session.finished()
    assert session.refused(5001, 30, "3") is None  # the conversation is over


def test_an_error_is_said_once() -> None:
    session = IngestSession(persistent=False)
    session.turn()
    session.begun(10, "1", replay=False)
    error = session.refused(error_ids.INVALID_MKV, 10, "1")
    assert error is not None and error.error_id == 4006
    assert session.refused(error_ids.INVALID_MKV, 10, "1") is None
    assert session.idle() is None and session.persisted(10, "1") is None


# ---- the GetMedia step table ----------------------------------------------------------------


def meta(seq: int) -> FragmentMeta:
    return FragmentMeta(FragmentNumber.make(seq, 1000, salt=seq), 1000 + seq, seq, 10, 1)


@pytest.mark.parametrize(
    ("cursor", "completed", "growing", "expired", "closed", "idle", "expected"),
    [
        (5, None, None, None, True, False, End()),
        (5, meta(7), None, meta(6), False, False, SkipExpired(meta(6))),
        (5, meta(5), 9, None, False, False, Serve(meta(5))),
        (5, None, 9, None, False, False, Forward(9)),  # 5..8 are a gap: skip to 9
        (5, None, None, None, False, False, Wait()),
        (5, None, None, None, False, True, End()),
        (5, meta(9), 9, None, False, False, Forward(9)),  # 9 is growing, not completed
    ],
)
def test_where_a_read_goes_next(
    cursor, completed, growing, expired, closed, idle, expected
) -> None:  # type: ignore[no-untyped-def]
    assert next_step(cursor, completed, growing, expired, closed, idle) == expected


def test_a_follower_passes_a_gap_and_hands_completed_fragments_back() -> None:
    assert live_step(5, 4, 9, idle=False) is Live.FORWARD
    assert live_step(5, 5, 9, idle=False) is Live.SERVE
    assert live_step(5, 4, None, idle=False) is Live.WAIT
    assert live_step(5, 4, None, idle=True) is Live.END


# ---- the runtime ----------------------------------------------------------------------------

INFO = StreamInfo(name="s", arn="arn:s", creation_ms=1, version="v", data_retention_hours=1)


async def runtime(store: MemoryStore | None = None, info: StreamInfo = INFO) -> StreamRuntime:
    store = store or MemoryStore()
    if not await store.open():
        await store.save_stream(info, None)
    stream = StreamRuntime(info, store, LiveBuffers(1 << 30), BufferLimits())
    await stream.load()
    return stream


def begun(start_ms: int) -> FragmentBegun:
    return FragmentBegun(start_ms, start_ms, 5_000 + start_ms, b"header", [b"cluster"])


def done(start_ms: int) -> FragmentDone:
    return FragmentDone(
        start_ms, start_ms, 5_000 + start_ms, 100, 1, True, (), b"header", (b"cluster",), 7
    )


async def test_fragments_may_overlap_the_last_one_but_not_start_before_it() -> None:
    stream = await runtime()
    me = stream.claim_publisher(lambda _: None)
    await stream.take_turn(me, 1)
    first = await stream.begin_fragment(me, begun(1000))
    stream.complete_fragment(me, first.number, done(1000))  # its frames run to 1100
    second = await stream.begin_fragment(me, begun(1050))  # starts inside the first: fine
    assert second.original is None
    stream.complete_fragment(me, second.number, done(1050))
    with pytest.raises(Refused) as refused:
        await stream.begin_fragment(me, begun(1020))
    assert refused.value.error_id == error_ids.TIMECODE_LESSER_THAN_PREVIOUS
    replay = await stream.begin_fragment(me, begun(1000))
    assert replay.original is not None and replay.number == first.number
    assert replay.durable is not None and not replay.durable.done()  # not stored yet
    stream.store_failed([f for f in stream.live_fragments() if f.meta.number == first.number])
    assert replay.durable.result() is False


async def test_a_replaced_publisher_changes_nothing() -> None:
    stream = await runtime()
    kicked: list[int | None] = []
    old = stream.claim_publisher(kicked.append)
    await stream.take_turn(old, 1)
    new = stream.claim_publisher(kicked.append)
    assert kicked == [None] and not stream.is_current(old)
    with pytest.raises(Replaced):
        await stream.begin_fragment(old, begun(1000))
    stream.release_publisher(old)
    await stream.take_turn(new, 1)
    assert stream.growing is None
    fragment = await stream.begin_fragment(new, begun(1000))
    assert stream.growing is not None and stream.growing.number == str(fragment.number)


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    moves=st.lists(
        st.tuples(st.sampled_from(["claim", "fragment", "release"]), st.integers(0, 3)),
        min_size=1,
        max_size=40,
    )
)
def test_two_publishers_racing_never_ingest_at_once(moves: list[tuple[str, int]]) -> None:
    """Publishers claim, send and leave in any interleaving (each move runs as its own
    task, so awaits inside them interleave too): only the newest claim's fragments are
    taken, numbers only rise, and at most one publisher is current."""

    async def scenario() -> None:
        stream = await runtime()
        publishers: dict[int, object] = {}
        taken: list[tuple[int, int]] = []  # (generation, seq)
        clock = iter(range(1000, 10**9, 1000))

        async def act(move: str, who: int) -> None:
            if move == "claim":
                publisher = stream.claim_publisher(lambda _: None)
                publishers[who] = publisher
                try:
                    await stream.take_turn(publisher, 0.05)
                except Replaced:
                    pass
            elif move == "release" and who in publishers:
                stream.release_publisher(publishers.pop(who))  # type: ignore[arg-type]
            elif move == "fragment" and who in publishers:
                publisher = publishers[who]
                start = next(clock)
                try:
                    begin = await stream.begin_fragment(publisher, begun(start))  # type: ignore[arg-type]
                    await asyncio.sleep(0)
                    stream.complete_fragment(publisher, begin.number, done(start))  # type: ignore[arg-type]
                except Replaced:
                    return
                taken.append((publisher.generation, begin.number.seq))  # type: ignore[attr-defined]

        await asyncio.gather(*(act(move, who) for move, who in moves))
        current = [p for p in publishers.values() if stream.is_current(p)]  # type: ignore[arg-type]
        assert len(current) <= 1
        generations = [g for g, _ in taken]
        assert generations == sorted(generations), "an older publisher took a fragment late"
        seqs = [s for _, s in taken]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    asyncio.run(scenario())


class Holder:
    def __init__(self) -> None:
        self.evicted: list[object] = []

    def evict(self, fragment: object) -> bool:
        self.evicted.append(fragment)
        return True


def test_live_buffers_evict_oldest_first_and_forget_what_holders_drop() -> None:
    from openkvs.server.model import Fragment

    def held(seq: int, size: int = 10) -> Fragment:
        m = FragmentMeta(FragmentNumber.make(seq, 1, salt=1), seq, seq, 1, size)
        return Fragment(m, b"", b"x" * size)

    buffers, a, b = LiveBuffers(30), Holder(), Holder()
    first, second = held(1), held(2)
    buffers.count(a, first)
    buffers.count(b, second)
    buffers.count(b, held(3))
    buffers.count(a, held(4))  # 40 bytes: the oldest goes, whoever holds it
    assert a.evicted == [first] and b.evicted == [] and buffers.bytes == 30
    # A held fragment at the front must not keep the bytes of those released after it.
    big, front = LiveBuffers(1 << 30), held(1)
    big.count(a, front)
    for seq in range(5, 3005):
        fragment = held(seq, 1000)
        big.count(b, fragment)
        big.released(fragment)
    assert [e.fragment for e in big._order if e.fragment is not None] == [front]
    assert len(big._order) < 2100 and big.bytes == 10


async def test_a_takeover_fails_the_fragment_the_old_publisher_was_receiving() -> None:
    """Readers following it must not wait for a fragment nobody will finish."""
    stream = await runtime()
    old = stream.claim_publisher(lambda _: None)
    await stream.take_turn(old, 1)
    await stream.begin_fragment(old, begun(1000))
    growing = stream.growing
    assert growing is not None
    stream.claim_publisher(lambda _: None)
    assert growing.failed and stream.growing is None
