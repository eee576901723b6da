"""The GetMedia chunk builder: one stored fragment -> one self-contained MKV (spec §6.1).

Pure: the fragment's bytes and ``now_ms`` in, the chunk's parts out. The parts
are returned separately so the server can write the (large) body without
copying it into one buffer.
"""

from __future__ import annotations

from openkvs.mkv import ebml
from openkvs.mkv.elements import tags_element
from openkvs.model import Fragment, FragmentNumber

FRAGMENT_NUMBER = "AWS_KINESISVIDEO_FRAGMENT_NUMBER"
SERVER_TIMESTAMP = "AWS_KINESISVIDEO_SERVER_TIMESTAMP"
PRODUCER_TIMESTAMP = "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"
MILLIS_BEHIND_NOW = "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW"
CONTINUATION_TOKEN = "AWS_KINESISVIDEO_CONTINUATION_TOKEN"
ERROR_CODE = "AWS_KINESISVIDEO_ERROR_CODE"
ERROR_ID = "AWS_KINESISVIDEO_ERROR_ID"
# The tags GetMedia writes itself: a producer may not send them (they would be served as ours).
SERVICE_TAGS = frozenset(
    {
        FRAGMENT_NUMBER,
        SERVER_TIMESTAMP,
        PRODUCER_TIMESTAMP,
        MILLIS_BEHIND_NOW,
        CONTINUATION_TOKEN,
        ERROR_CODE,
        ERROR_ID,
    }
)

ERROR_FRAGMENT_NOT_FOUND = 4000
ERROR_INTERNAL = 5000

# A minimal Matroska EBML header for chunks that carry no producer header (errors).
_EBML_HEADER = ebml.element(
    ebml.EBML,
    ebml.uint_element(0x4286, 1)
    + ebml.uint_element(0x42F7, 1)
    + ebml.uint_element(0x42F2, 4)
    + ebml.uint_element(0x42F3, 8)
    + ebml.element(ebml.DOC_TYPE, b"matroska")
    + ebml.uint_element(0x4287, 4)
    + ebml.uint_element(0x4285, 2),
)
_SEGMENT_START = ebml.encode_id(ebml.SEGMENT) + ebml.UNKNOWN_SIZE_8


def seconds(ms: int) -> str:
    """Epoch milliseconds as AWS writes them in tags: seconds with exactly 3 decimals."""
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    return f"{sign}{ms // 1000}.{ms % 1000:03d}"


def chunk_parts(fragment: Fragment, now_ms: int) -> tuple[bytes, ...]:
    """``(head, *body, tail)``: header + AWS tags, the fragment as sent, trailing AWS tags."""
    meta = fragment.meta
    head = chunk_head(fragment.header, str(meta.number), meta.server_ms, meta.producer_ms)
    tail = chunk_tail(str(meta.number), meta.server_ms, now_ms)
    return head, *fragment.body_parts(), tail


def chunk_head(header: bytes, number: str, server_ms: int, producer_ms: int) -> bytes:
    """What a chunk starts with; known as soon as the fragment's first Cluster bytes are."""
    return header + tags_element(
        [
            (FRAGMENT_NUMBER, number),
            (SERVER_TIMESTAMP, seconds(server_ms)),
            (PRODUCER_TIMESTAMP, seconds(producer_ms)),
        ]
    )


def chunk_tail(number: str, server_ms: int, now_ms: int) -> bytes:
    """What a chunk ends with, once the fragment is complete."""
    return tags_element(
        [(MILLIS_BEHIND_NOW, str(max(0, now_ms - server_ms))), (CONTINUATION_TOKEN, number)]
    )


def not_found_chunk(number: FragmentNumber | str) -> bytes:
    """The in-band error for a fragment that does not exist (any more)."""
    return error_chunk(number, ERROR_FRAGMENT_NOT_FOUND, "FRAGMENT_NOT_FOUND")


def error_chunk(number: FragmentNumber | str, error_id: int, error_code: str) -> bytes:
    """An in-band error (spec §6.2): a Segment holding only the error tags, no Cluster."""
    return (
        _EBML_HEADER
        + _SEGMENT_START
        + tags_element(
            [(FRAGMENT_NUMBER, str(number)), (ERROR_ID, str(error_id)), (ERROR_CODE, error_code)]
        )
    )
