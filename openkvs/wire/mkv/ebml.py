"""EBML primitives: element ids, variable-length integers, value decoding and encoding.

Everything here is pure and works on ``bytes``/``memoryview``; ids keep their
length-marker bits (``0x1A45DFA3``), as the Matroska specification writes them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

EBML = 0x1A45DFA3
DOC_TYPE = 0x4282
SEGMENT = 0x18538067
SEEK_HEAD = 0x114D9B74
INFO = 0x1549A966
TIMECODE_SCALE = 0x2AD7B1
TRACKS = 0x1654AE6B
TRACK_ENTRY = 0xAE
TRACK_NUMBER = 0xD7
TRACK_TYPE = 0x83
CODEC_ID = 0x86
CODEC_PRIVATE = 0x63A2
DEFAULT_DURATION = 0x23E383
VIDEO = 0xE0
PIXEL_WIDTH = 0xB0
PIXEL_HEIGHT = 0xBA
AUDIO = 0xE1
SAMPLING_FREQUENCY = 0xB5
CHANNELS = 0x9F
CLUSTER = 0x1F43B675
CLUSTER_TIMECODE = 0xE7
SIMPLE_BLOCK = 0xA3
BLOCK_GROUP = 0xA0
BLOCK = 0xA1
BLOCK_DURATION = 0x9B
POSITION = 0xA7
PREV_SIZE = 0xAB
SILENT_TRACKS = 0x5854
ENCRYPTED_BLOCK = 0xAF
CUES = 0x1C53BB6B
CHAPTERS = 0x1043A770
ATTACHMENTS = 0x1941A469
TAGS = 0x1254C367
TAG = 0x7373
TARGETS = 0x63C0
SIMPLE_TAG = 0x67C8
TAG_NAME = 0x45A3
TAG_STRING = 0x4487
TAG_BINARY = 0x4485
VOID = 0xEC
CRC32 = 0xBF

CLUSTER_CHILDREN = frozenset(
    {
        CLUSTER_TIMECODE,
        SIMPLE_BLOCK,
        BLOCK_GROUP,
        POSITION,
        PREV_SIZE,
        SILENT_TRACKS,
        ENCRYPTED_BLOCK,
        VOID,
        CRC32,
    }
)
SEGMENT_CHILDREN = frozenset(
    {SEEK_HEAD, INFO, TRACKS, CLUSTER, CUES, CHAPTERS, ATTACHMENTS, TAGS, VOID, CRC32}
)

UNKNOWN = -1
"""The size of an element whose size field is all ones (streamed, size not known)."""

UNKNOWN_SIZE_8 = b"\x01\xff\xff\xff\xff\xff\xff\xff"

# vint length from its first byte: the position of the first set bit.
_VINT_LENGTH = bytes([0] + [9 - b.bit_length() for b in range(1, 256)])


class EbmlError(ValueError):
    """Bytes that are not valid EBML."""


def read_id(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int] | None:
    """Return ``(element_id, length)`` at ``pos``, or None when more bytes are needed."""
    if pos >= len(buf):
        return None
    length = _VINT_LENGTH[buf[pos]]
    if length == 0 or length > 4:
        raise EbmlError(f"invalid element id byte 0x{buf[pos]:02x}")
    if pos + length > len(buf):
        return None
    return int.from_bytes(buf[pos : pos + length], "big"), length


def read_size(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int] | None:
    """Return ``(size, length)`` at ``pos`` (``UNKNOWN`` for all-ones), or None for more bytes."""
    if pos >= len(buf):
        return None
    length = _VINT_LENGTH[buf[pos]]
    if length == 0:
        raise EbmlError("invalid size field 0x00")
    if pos + length > len(buf):
        return None
    value = int.from_bytes(buf[pos : pos + length], "big") & ((1 << (7 * length)) - 1)
    if value == (1 << (7 * length)) - 1:
        return UNKNOWN, length
    return value, length


def iter_children(payload: bytes | memoryview) -> Iterator[tuple[int, memoryview]]:
    """Yield ``(id, payload)`` of each child of a fully buffered master element."""
    view = memoryview(payload)
    pos, end = 0, len(view)
    while pos < end:
        got_id = read_id(view, pos)
        got_size = got_id and read_size(view, pos + got_id[1])
        if not got_id or not got_size:
            raise EbmlError("child element header runs past its parent")
        size, size_len = got_size
        start = pos + got_id[1] + size_len
        if size == UNKNOWN or start + size > end:
            raise EbmlError(f"child 0x{got_id[0]:X} runs past its parent")
        yield got_id[0], view[start : start + size]
        pos = start + size


def read_uint(data: bytes | memoryview) -> int:
    if len(data) > 8:
        raise EbmlError("unsigned integer longer than 8 bytes")
    return int.from_bytes(data, "big")


def read_float(data: bytes | memoryview) -> float:
    if len(data) == 4:
        return float(struct.unpack(">f", data)[0])
    if len(data) == 8:
        return float(struct.unpack(">d", data)[0])
    if len(data) == 0:
        return 0.0
    raise EbmlError("float of invalid length")


def read_str(data: bytes | memoryview) -> str:
    return bytes(data).split(b"\0", 1)[0].decode("utf-8", "replace")


def encode_id(element_id: int) -> bytes:
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")


def encode_size(size: int, width: int | None = None) -> bytes:
    """The shortest size vint for ``size``, or one exactly ``width`` bytes long."""
    if width is None:
        width = 1
        while size >= (1 << (7 * width)) - 1:
            width += 1
    if size >= (1 << (7 * width)) - 1 or width > 8:
        raise EbmlError(f"size {size} does not fit in {width} bytes")
    return ((1 << (7 * width)) | size).to_bytes(width, "big")


def element(element_id: int, payload: bytes, width: int | None = None) -> bytes:
    """One complete element: id, size and payload."""
    return encode_id(element_id) + encode_size(len(payload), width) + payload


def uint_element(element_id: int, value: int) -> bytes:
    return element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))
