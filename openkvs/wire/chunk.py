"""GetMedia chunks (spec §6.1, §6.2): the AWS tags around each fragment, built and parsed.

Pure: a fragment's bytes and ``now_ms`` in, the chunk's parts out; the parts
are returned separately so the server can write the (large) body without
copying it into one buffer. ``ChunkTags.parse`` reads the same tags back for
the client toolkit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from openkvs.wire import error_ids
from openkvs.wire.fragment_number import FragmentNumber
from openkvs.wire.mkv import ebml
from openkvs.wire.mkv.elements import tags_element
from openkvs.wire.mkv.reader import MkvError

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

AWS_PREFIX = "AWS_KINESISVIDEO_"

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


def parse_seconds(text: str, name: str = "timestamp") -> int:
    """AWS tag seconds (``1537574915.281``) back to epoch milliseconds."""
    whole, _, frac = text.partition(".")
    sign = -1 if whole.startswith("-") else 1
    return _int(whole, name) * 1000 + sign * _int((frac + "000")[:3], name)


def _int(text: str, name: str) -> int:
    """A decimal AWS tag value; anything else is an MkvError, not a bare ValueError."""
    try:
        return int(text)
    except ValueError:
        raise MkvError(f"{name} is not a number: {text[:40]!r}") from None


def chunk_parts(
    header: bytes,
    number: str,
    server_ms: int,
    producer_ms: int,
    body: Sequence[bytes],
    now_ms: int,
) -> tuple[bytes, ...]:
    """``(head, *body, tail)``: header + AWS tags, the fragment as sent, trailing AWS tags."""
    head = chunk_head(header, number, server_ms, producer_ms)
    return head, *body, chunk_tail(number, server_ms, now_ms)


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
    """The in-band error for a fragment that does not exist (any more) or cannot be read."""
    return error_chunk(number, error_ids.READ_ERROR)


def error_chunk(
    number: FragmentNumber | str, error_id: int, error_code: str | None = None
) -> bytes:
    """An in-band error (spec §6.2): a Segment holding only the error tags, no Cluster."""
    if error_code is None:
        error_code = error_ids.ERROR_CODES.get(error_id, "INTERNAL_ERROR")
    return (
        _EBML_HEADER
        + _SEGMENT_START
        + tags_element(
            [(FRAGMENT_NUMBER, str(number)), (ERROR_ID, str(error_id)), (ERROR_CODE, error_code)]
        )
    )


@dataclass(slots=True)
class ChunkTags:
    """What one Tags element of a GetMedia chunk says: AWS values and producer tags.

    The head of a chunk sets the number and timestamps, its tail MILLIS_BEHIND_NOW
    and the continuation token; an error chunk has ERROR_ID (and no SERVER_TIMESTAMP).
    """

    fragment_number: str | None = None
    server_ms: int | None = None
    producer_ms: int | None = None
    millis_behind_now: int | None = None
    continuation_token: str | None = None
    error_id: int | None = None
    error_code: str | None = None
    producer_tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, pairs: Iterable[tuple[str, str]]) -> ChunkTags:
        """From (TagName, TagString) pairs; malformed AWS values are an MkvError."""
        tags = cls()
        for name, value in pairs:
            if name == FRAGMENT_NUMBER:
                tags.fragment_number = value
            elif name == SERVER_TIMESTAMP:
                tags.server_ms = parse_seconds(value, name)
            elif name == PRODUCER_TIMESTAMP:
                tags.producer_ms = parse_seconds(value, name)
            elif name == MILLIS_BEHIND_NOW:
                tags.millis_behind_now = _int(value, name)
            elif name == CONTINUATION_TOKEN:
                tags.continuation_token = value
            elif name == ERROR_ID:
                tags.error_id = _int(value or "0", name)
            elif name == ERROR_CODE:
                tags.error_code = value
            elif not name.startswith(AWS_PREFIX):
                tags.producer_tags[name] = value
        return tags
