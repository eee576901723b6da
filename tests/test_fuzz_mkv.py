"""Hostile Matroska for the sans-I/O parsers: only our errors escape, memory stays bounded.

Inputs are real media (the shared captures, synthetic producer bodies) cut,
spliced and overwritten with the EBML values that hurt (unknown and huge sizes,
ids where they do not belong), plus generated element trees with sizes that lie
and nest deep. Every parser must, for every input and every way of cutting it
into pieces:

* raise only its own error: MkvError from MkvReader, FragmentError from the
  Fragmenter, MkvError/EbmlError/GetMediaError from the GetMedia FragmentReader;
* give the same result whole and in pieces;
* never hold more than one element (``max_element_size`` plus a 12-byte header)
  unread, nor a buffer larger than that plus 64 KiB and the last feed;
* finish: a bounded number of events per input byte.

The property functions take plain bytes, so ``stress/fuzz_mkv.py`` runs the
same checks with many more examples (and atheris, where installed).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openkvs.media.reader import FragmentReader, GetMediaError, MediaFragment
from openkvs.wire import error_ids
from openkvs.wire.chunk import (
    CONTINUATION_TOKEN,
    ERROR_CODE,
    ERROR_ID,
    FRAGMENT_NUMBER,
    MILLIS_BEHIND_NOW,
    SERVER_TIMESTAMP,
)
from openkvs.wire.fragmenter import (
    FragmentDone,
    Fragmenter,
    FragmenterEvent,
    FragmentError,
)
from openkvs.wire.mkv import ebml
from openkvs.wire.mkv.elements import MAX_SIMPLE_TAG_DEPTH, parse_simple_tags, tags_element
from openkvs.wire.mkv.reader import Event, MkvError, MkvReader
from tests.conftest import FIXTURES
from tests.media import cluster, end_of_fragment, simple_block, synthetic_mkv

MAX_HEADER = 12  # a 4-byte id and an 8-byte size
COMPACT_SLACK = 1 << 16  # MkvReader drops consumed bytes once 64 KiB have piled up
SEED_PREFIX = 256 << 10  # the first 256 KiB of each capture: clusters, tags, every header
# ErrorIds the fragmenter may answer bad media with (spec §4); never 5000/5001.
MEDIA_ERROR_IDS = frozenset({4001, 4002, 4006, 4007, 4010, 4012})

# Bounded and deterministic for CI; stress/fuzz_mkv.py reuses the checks with more examples.
BOUNDED = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---- seeds: real and synthetic media ---------------------------------------------------------


def synthetic_seeds() -> list[bytes]:
    two = [simple_block(1, 0), simple_block(1, 40), simple_block(2, 20, b"audio")]
    return [
        synthetic_mkv([cluster(1000, two) + end_of_fragment(), cluster(2000, two)], tracks=(1, 2)),
        synthetic_mkv([cluster(1000, two[:2], known_size=True), cluster(2000, two[:2])]),
        synthetic_mkv(
            [cluster(5000, two[:1]) + tags_element([("PRODUCER_TAG", "v")], width=1)],
            pre_cluster=tags_element([("TITLE", "t")], width=1),
        ),
    ]


def capture_seeds(fixtures: Path = FIXTURES) -> list[bytes]:
    """Prefixes of the shared captures, where present (CI has them; a bare checkout not)."""
    paths = sorted(fixtures.glob("producer-sdk/*.mkv")) + sorted(
        fixtures.glob("aws-getmedia/*.mkv")
    )
    return [path.read_bytes()[:SEED_PREFIX] for path in paths]


def chunk_bytes(done: FragmentDone, number: str = "1") -> bytes:
    """A stored fragment as GetMedia serves it (spec §6.1)."""
    head = tags_element([(FRAGMENT_NUMBER, number)])
    tail = tags_element([(MILLIS_BEHIND_NOW, "0"), (CONTINUATION_TOKEN, number)])
    return done.header + head + done.body + tail


def getmedia_seed(bodies: list[bytes]) -> bytes:
    """The GetMedia payload a server would send for these PutMedia bodies."""
    done = []
    for body in bodies:
        fragmenter = Fragmenter()
        events = fragmenter.feed(body, 0) + fragmenter.feed_eof(1)
        done += [event for event in events if isinstance(event, FragmentDone)]
    return b"".join(chunk_bytes(event, str(i + 1)) for i, event in enumerate(done))


def boundaries(data: bytes) -> list[int]:
    """Offsets where MkvReader saw an element start or end: where splices hurt most."""
    reader = MkvReader()
    reader.feed(data)
    reader.feed_eof()
    offsets = [0]
    try:
        while reader.next_event() is not None:
            offsets.append(reader.offset)
    except MkvError:
        pass
    return offsets


SEEDS = synthetic_seeds()
SEEDS += [getmedia_seed(SEEDS)] + capture_seeds()
SEED_BOUNDARIES = [boundaries(seed) for seed in SEEDS]

# Byte strings that break parsers when they land in an id or size field.
HOSTILE_TOKENS = [
    b"\xff",  # 1-byte unknown size
    ebml.UNKNOWN_SIZE_8,  # 8-byte unknown size
    b"\x01\x00\x00\x00\x00\x00\x00\x00",  # size 0, 8 bytes wide
    b"\x01\x00\xff\xff\xff\xff\xff\xfe",  # a huge declared size
    b"\x08\x00\x00\x00\x10",  # a 5-byte size
    b"\x00",  # not a vint
    b"\x80",  # size 0
    b"\x10\x00\x00\x00",  # a 4-byte id prefix with nothing after
    ebml.encode_id(ebml.EBML) + b"\xff",  # unknown-size EBML header
    ebml.encode_id(ebml.SEGMENT) + b"\xff",  # a second Segment
    ebml.encode_id(ebml.CLUSTER) + b"\xff",  # an unknown-size Cluster
    ebml.encode_id(ebml.INFO) + b"\xff",  # an unknown-size level-1 element
    ebml.encode_id(ebml.TAGS) + ebml.UNKNOWN_SIZE_8,
    ebml.encode_id(ebml.SIMPLE_BLOCK) + b"\x01\x00\x00\x00\x00\x10\x00\x00",  # 1 MiB block
    ebml.encode_id(ebml.CLUSTER_TIMECODE) + b"\x88" + b"\xff" * 8,  # timecode 2^64-1
    ebml.encode_id(ebml.TIMECODE_SCALE) + b"\x88" + b"\xff" * 8,
    ebml.element(ebml.TRACK_NUMBER, b"\x01" * 9),  # a 9-byte uint
    end_of_fragment(),
    tags_element([(SERVER_TIMESTAMP, "soon"), (MILLIS_BEHIND_NOW, "9" * 5000)]),
    tags_element([(FRAGMENT_NUMBER, "1"), (ERROR_ID, "x"), (ERROR_CODE, "")]),
]


MUTATIONS = ["token", "token", "token", "overwrite", "flip", "delete", "duplicate", "cut"]


@st.composite
def mutated_media(draw: st.DrawFn) -> bytes:
    """A seed with 1-4 byte-level mutations: flips, splices, cuts and hostile tokens."""
    seed = draw(st.integers(0, len(SEEDS) - 1))
    data = bytearray(SEEDS[seed])
    for _ in range(draw(st.integers(1, 4))):
        at_boundary = st.sampled_from(SEED_BOUNDARIES[seed]).map(lambda pos: min(pos, len(data)))
        pos = draw(st.integers(0, len(data)) | at_boundary)
        kind = draw(st.sampled_from(MUTATIONS))
        if kind == "flip" and pos < len(data):
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "token":
            data[pos:pos] = draw(st.sampled_from(HOSTILE_TOKENS))
        elif kind == "overwrite":
            token = draw(st.sampled_from(HOSTILE_TOKENS) | st.binary(min_size=1, max_size=8))
            data[pos : pos + len(token)] = token
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif kind == "duplicate":
            start = draw(st.integers(0, len(data)))
            data[pos:pos] = data[start : start + draw(st.integers(1, 4096))]
        elif kind == "cut":
            del data[pos:]
    return bytes(data)


KNOWN_IDS = [
    ebml.EBML,
    ebml.SEGMENT,
    ebml.INFO,
    ebml.TIMECODE_SCALE,
    ebml.TRACKS,
    ebml.TRACK_ENTRY,
    ebml.TRACK_NUMBER,
    ebml.CLUSTER,
    ebml.CLUSTER_TIMECODE,
    ebml.SIMPLE_BLOCK,
    ebml.BLOCK_GROUP,
    ebml.BLOCK,
    ebml.TAGS,
    ebml.TAG,
    ebml.SIMPLE_TAG,
    ebml.TAG_NAME,
    ebml.TAG_STRING,
    ebml.VOID,
    ebml.CUES,
]


@st.composite
def _sized(draw: st.DrawFn, payload: bytes) -> bytes:
    """An element around ``payload`` whose size may be exact, wide, unknown or a lie."""
    element_id = draw(st.sampled_from(KNOWN_IDS) | st.integers(0x81, 0xFE))
    mode = draw(st.sampled_from(["exact", "exact", "wide", "unknown", "short", "long", "huge"]))
    size = {
        "short": max(0, len(payload) - draw(st.integers(1, 16))),
        "long": len(payload) + draw(st.integers(1, 16)),
        "huge": draw(st.integers(1 << 20, (1 << 56) - 2)),
    }.get(mode, len(payload))
    if mode == "unknown":
        head = draw(st.sampled_from([b"\xff", ebml.UNKNOWN_SIZE_8]))
    else:
        head = ebml.encode_size(size, 8 if mode == "wide" else None)
    return ebml.encode_id(element_id) + head + payload


def element_trees() -> st.SearchStrategy[bytes]:
    """Generated EBML: known ids nested any way, sizes that lie, unknown sizes anywhere."""
    leaves = st.binary(max_size=24).flatmap(_sized)
    return st.recursive(
        leaves, lambda kids: st.lists(kids, max_size=4).map(b"".join).flatmap(_sized), max_leaves=20
    )


def nested_simple_tags(depth: int) -> bytes:
    """A Tags element whose SimpleTags nest ``depth`` deep (a stack bomb for recursive parsers).

    Built outside-in with 8-byte sizes, so a deep nest costs linear time to make.
    """
    name = ebml.element(ebml.TAG_NAME, b"N")
    level = len(ebml.encode_id(ebml.SIMPLE_TAG)) + 8 + len(name)
    heads = [
        ebml.encode_id(ebml.SIMPLE_TAG)
        + ebml.encode_size(len(name) + (depth - 1 - i) * level, 8)
        + name
        for i in range(depth)
    ]
    return ebml.element(ebml.TAGS, ebml.element(ebml.TAG, b"".join(heads)))


VALID_PREFIX = synthetic_mkv([])  # EBML header, Segment, Info, Tracks: then anything


@st.composite
def generated_media(draw: st.DrawFn) -> bytes:
    """Element trees, after a valid header half the time so they reach the fragmenter."""
    prefix = draw(st.sampled_from([b"", VALID_PREFIX]))
    return prefix + b"".join(draw(st.lists(element_trees(), min_size=1, max_size=6)))


hostile_media = st.one_of(mutated_media(), generated_media())


@st.composite
def cuts(draw: st.DrawFn, length: int) -> list[int]:
    """Where to cut ``length`` bytes into pieces: a few random points (sorted)."""
    return sorted(draw(st.lists(st.integers(0, length), max_size=12)))


def pieces(data: bytes, points: list[int]) -> Iterator[bytes]:
    start = 0
    for point in [*points, len(data)]:
        yield data[start:point]
        start = point


# ---- the properties --------------------------------------------------------------------------


def read_events(data: bytes, points: list[int], max_element: int) -> tuple[list[Event], int | None]:
    """MkvReader's events and ErrorId for ``data`` fed in pieces; asserts the bounds as it goes."""
    reader = MkvReader(max_element_size=max_element)
    out: list[Event] = []
    budget = 2 * len(data) + 8  # each event consumes bytes or closes an element it opened
    try:
        for piece in pieces(data, points):
            reader.feed(piece)
            while (event := reader.next_event()) is not None:
                out.append(event)
                assert len(out) <= budget, "the reader is not making progress"
            assert reader.buffered <= max_element + MAX_HEADER
            assert len(reader._buf) <= max_element + MAX_HEADER + COMPACT_SLACK + len(piece)
        reader.feed_eof()
        while (event := reader.next_event()) is not None:
            out.append(event)
            assert len(out) <= budget, "the reader is not making progress"
    except MkvError as exc:
        return out, exc.error_id
    return out, None


def check_reader(data: bytes, points: list[int], max_element: int = 1 << 16) -> None:
    """Only MkvError escapes, memory stays bounded, and pieces change nothing."""
    assert read_events(data, points, max_element) == read_events(data, [], max_element)


def fragment(data: bytes, points: list[int]) -> tuple[list[FragmenterEvent], int | None]:
    """What the Fragmenter makes of ``data`` fed in pieces, as PutMedia feeds it."""
    fragmenter = Fragmenter(max_fragment_bytes=1 << 20, relative=True, producer_start_ms=10**12)
    events: list[FragmenterEvent] = []
    for now, piece in enumerate(pieces(data, points)):
        events += fragmenter.feed(piece, now)
        if fragmenter.error is not None:
            break
    else:
        events += fragmenter.feed_eof(len(points) + 1)
    error = fragmenter.error
    return events, None if error is None else error.error_id


def _comparable(events: list[FragmenterEvent]) -> list[tuple[object, ...]]:
    """Events without the server clock (which follows the pieces)."""
    return [
        (e.timecode, e.frames, e.header, e.body) if isinstance(e, FragmentDone) else (e.timecode,)
        for e in events
    ]


def check_fragmenter(data: bytes, points: list[int]) -> None:
    """Only FragmentError (as ``error``) with a media ErrorId; whole equals pieces; and every
    fragment it accepts reads back through the GetMedia FragmentReader frame for frame."""
    events, error_id = fragment(data, points)
    whole, whole_error = fragment(data, [])
    assert (_comparable(events), error_id) == (_comparable(whole), whole_error)
    assert error_id is None or error_id in MEDIA_ERROR_IDS
    for event in events:
        if isinstance(event, FragmentDone):
            (got,) = read_chunk(event)
            assert len(got.frames) == event.frames and got.number == "1"


def read_chunk(done: FragmentDone) -> list[MediaFragment]:
    """A stored fragment as GetMedia serves it, read back by a client."""
    reader = FragmentReader()
    return reader.feed(chunk_bytes(done)) + reader.feed_eof()


def check_media_reader(data: bytes, points: list[int]) -> None:
    """The client-side GetMedia parser raises only MkvError, EbmlError or GetMediaError."""
    reader = FragmentReader()
    try:
        for piece in pieces(data, points):
            reader.feed(piece)
        reader.feed_eof()
    except (MkvError, ebml.EbmlError, GetMediaError):
        pass


CHECKS: dict[str, Callable[[bytes, list[int]], None]] = {
    "reader": check_reader,
    "fragmenter": check_fragmenter,
    "media_reader": check_media_reader,
}


# ---- the bounded runs --------------------------------------------------------------------------


def hostile_with_cuts() -> st.SearchStrategy[tuple[bytes, list[int]]]:
    return hostile_media.flatmap(lambda data: st.tuples(st.just(data), cuts(len(data))))


@pytest.mark.parametrize("check", list(CHECKS))
@BOUNDED
@given(case=hostile_with_cuts())
def test_hostile_media(check: str, case: tuple[bytes, list[int]]) -> None:
    CHECKS[check](*case)


def _in_cluster(*children: bytes) -> bytes:
    return VALID_PREFIX + cluster(1000, list(children))


# Bad media by name -> the ErrorId PutMedia must answer it with (test_hostile.py reuses these).
NAMED_BAD_MEDIA: dict[str, tuple[bytes, int]] = {
    "simple-tags-10000-deep": (_in_cluster(simple_block(1, 0)) + nested_simple_tags(10_000), 4006),
    "truncated-mid-element": (_in_cluster(simple_block(1, 0))[:-3], 4006),
    "unknown-size-level-1": (VALID_PREFIX + ebml.encode_id(ebml.CUES) + b"\xff", 4006),
    "unknown-size-block": (_in_cluster(ebml.encode_id(ebml.SIMPLE_BLOCK) + b"\xff"), 4006),
    "unknown-size-ebml-header": (ebml.encode_id(ebml.EBML) + b"\xff", 4006),
    "huge-declared-size": (
        _in_cluster(ebml.encode_id(ebml.SIMPLE_BLOCK) + b"\x01" + b"\xee" * 7),
        4001,
    ),
    "child-past-its-parent": (
        VALID_PREFIX + ebml.encode_id(ebml.CLUSTER) + b"\x85" + simple_block(1, 0),
        4006,
    ),
    "segment-in-segment": (VALID_PREFIX + ebml.encode_id(ebml.SEGMENT) + b"\xff", 4006),
    "second-ebml-header": (
        synthetic_mkv([cluster(1, [simple_block(1, 0)])]) + synthetic_mkv([]),
        4006,
    ),
    "timecode-past-int64-ms": (VALID_PREFIX + cluster(2**62, [simple_block(1, 0)]), 4007),
    "forged-service-tag": (
        _in_cluster(simple_block(1, 0)) + tags_element([(ERROR_ID, "4000")]),
        4006,
    ),
    "forged-header-tag": (
        synthetic_mkv(
            [cluster(1, [simple_block(1, 0)])], pre_cluster=tags_element([(SERVER_TIMESTAMP, "x")])
        ),
        4006,
    ),
    "zeros": (b"\x00" * 64, 4006),
    "http-request": (b"GET / HTTP/1.1\r\n\r\n", 4006),
}


@pytest.mark.parametrize("name", list(NAMED_BAD_MEDIA))
def test_named_bad_media_gets_its_error_id(name: str) -> None:
    data, error_id = NAMED_BAD_MEDIA[name]
    _, whole = fragment(data, [])
    assert whole == error_id
    check_fragmenter(data, [len(data) // 3, len(data) // 2])


def _payload(element: bytes) -> memoryview:
    ((_, payload),) = ebml.iter_children(element)
    return payload


def test_nesting_at_the_limit_is_read_and_one_deeper_is_refused() -> None:
    assert len(parse_simple_tags(_payload(nested_simple_tags(MAX_SIMPLE_TAG_DEPTH)))) == (
        MAX_SIMPLE_TAG_DEPTH
    )
    with pytest.raises(ebml.EbmlError, match="nested"):
        parse_simple_tags(_payload(nested_simple_tags(MAX_SIMPLE_TAG_DEPTH + 1)))


def test_the_reader_holds_one_element_however_it_is_fed() -> None:
    """A big element next to a partial bigger one: the buffer may not hold both."""
    limit = 200_000
    big = ebml.element(ebml.VOID, bytes(190_000))
    bigger = ebml.element(ebml.VOID, bytes(199_000))
    data = big + bigger
    for points in ([len(big) + 195_000], list(range(1000, len(data), 1000)), [70_000, 300_000]):
        events, error = read_events(data, points, limit)  # asserts the bounds as it reads
        assert (len(events), error) == (3, None)  # two Voids and the end


def test_a_tags_bomb_is_scanned_in_constant_memory() -> None:
    """A Tags element of 50000 empty SimpleTags after a Cluster: the fragmenter
    needs only the names, and may not build a list of them (about 3 MB)."""
    bomb = ebml.element(
        ebml.TAGS, ebml.element(ebml.TAG, ebml.element(ebml.SIMPLE_TAG, b"") * 50_000)
    )
    data = VALID_PREFIX + cluster(1000, [simple_block(1, 0)]) + bomb + end_of_fragment()
    fragmenter = Fragmenter(max_fragment_bytes=8 << 20)
    tracemalloc.start()
    try:
        events = fragmenter.feed(data, 0) + fragmenter.feed_eof(1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fragmenter.error is None and isinstance(events[-1], FragmentDone)
    assert peak < 4 * len(data), f"peak {peak} bytes for a {len(data)}-byte body"


def test_errors_are_typed_even_for_the_fragmenter_after_an_error() -> None:
    fragmenter = Fragmenter()
    fragmenter.feed(b"\x00garbage", 0)
    assert fragmenter.error is not None and fragmenter.error.error_id == error_ids.INVALID_MKV
    with pytest.raises(FragmentError):
        fragmenter.feed(b"more", 1)


@pytest.mark.parametrize(
    "pairs",
    [[(SERVER_TIMESTAMP, "soon")], [(MILLIS_BEHIND_NOW, "9" * 5000)], [(ERROR_ID, "x")]],
    ids=["timestamp-word", "5000-digits", "error-id-word"],
)
def test_malformed_aws_tag_values_are_mkv_errors(pairs: list[tuple[str, str]]) -> None:
    payload = getmedia_seed(synthetic_seeds()[:1])
    cut = boundaries(payload)[3]  # just after the Segment start
    reader = FragmentReader()
    with pytest.raises(MkvError, match="not a number"):
        reader.feed(payload[:cut] + tags_element(pairs) + payload[cut:])
        reader.feed_eof()
