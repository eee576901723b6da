"""The GetMedia chunk builder against the layout of real AWS output."""

from __future__ import annotations

import re

from openkvs.server.model import Fragment, FragmentMeta, FragmentNumber
from openkvs.wire.chunk import error_chunk, seconds
from openkvs.wire.fragmenter import FragmentDone, Fragmenter
from tests.conftest import fixture_path
from tests.layout import aws_skeleton, aws_tags, chunk_layouts


def sdk_fragments(sdk_capture: bytes) -> list[Fragment]:
    events = Fragmenter().feed(sdk_capture, now_ms=1_700_000_000_123)
    out = []
    for seq, done in enumerate((e for e in events if isinstance(e, FragmentDone)), start=1):
        number = FragmentNumber.make(seq, done.server_ms)
        meta = FragmentMeta(
            number, done.server_ms, done.producer_ms, done.duration_ms, len(done.body)
        )
        out.append(Fragment(meta, done.header, done.body))
    return out


def test_layout_matches_aws_capture_element_for_element(sdk_capture: bytes) -> None:
    ours = b"".join(b"".join(f.chunk(1_700_000_001_000)) for f in sdk_fragments(sdk_capture))
    theirs = fixture_path("aws-getmedia/output_get_media.mkv").read_bytes()
    our_layouts, aws_layouts = chunk_layouts(ours), chunk_layouts(theirs)
    assert len(our_layouts) == 2
    for layout in our_layouts:
        assert aws_skeleton(layout) == aws_skeleton(aws_layouts[0])
    # producer elements replayed: the SDK's Info and Tracks before the AWS tags, its Tags after
    assert our_layouts[1][2:4] == ["0x1549A966", "0x1654AE6B"]
    assert our_layouts[1][-2] == "0x1254C367"


def test_aws_tags_use_four_byte_sizes_like_aws(sdk_capture: bytes) -> None:
    fragment = sdk_fragments(sdk_capture)[0]
    head, body, tail = fragment.chunk(fragment.meta.server_ms + 910)
    theirs = fixture_path("aws-getmedia/output_get_media.mkv").read_bytes()
    start = theirs.index(bytes.fromhex("1254c3671000"))
    prefix = theirs[start : start + 26]
    ours = head[head.index(bytes.fromhex("1254c3671000")) :][:26]
    # same bytes except the three sizes, which depend on the timestamp lengths
    mask = [i for i in range(26) if i not in (7, 13, 19)]
    assert [ours[i] for i in mask] == [prefix[i] for i in mask]
    tags = aws_tags(head + body + tail)[0]
    assert tags["FRAGMENT_NUMBER"] == tags["CONTINUATION_TOKEN"] == str(fragment.meta.number)
    assert re.fullmatch(r"\d{47}", tags["FRAGMENT_NUMBER"])
    assert tags["SERVER_TIMESTAMP"] == seconds(fragment.meta.server_ms)
    assert tags["PRODUCER_TIMESTAMP"] == "1795571379.696"
    assert tags["MILLIS_BEHIND_NOW"] == "910"


def test_timestamps_have_exactly_three_decimals() -> None:
    assert seconds(1537574915281) == "1537574915.281"
    assert seconds(5000) == "5.000"
    assert seconds(7) == "0.007"


def test_error_chunk_has_error_tags_and_no_server_timestamp() -> None:
    chunk = error_chunk(
        "91343852333713038908964877623801423530396737899", 4000, "FRAGMENT_NOT_FOUND"
    )
    assert chunk_layouts(chunk) == [
        ["EBML", "Segment:01ffffffffffffff", "AWS:FRAGMENT_NUMBER,ERROR_ID,ERROR_CODE"]
    ]
    assert aws_tags(chunk)[0]["ERROR_ID"] == "4000"


def test_fragment_numbers_have_the_aws_shape() -> None:
    number = FragmentNumber.make(seq=7, server_ms=1537574915281, salt=0x123)
    text = str(number)
    assert len(text) == 47 and FragmentNumber.parse(text) == number
    assert (number.seq, number.server_ms) == (7, 1537574915281)
    assert FragmentNumber.make(8, 1) > number
    aws = "91343852333713038908964877623801423530396737899"
    assert FragmentNumber.parse(aws).server_ms == 1537574915281
