"""Box framing: size, type, payload."""

from __future__ import annotations

import struct

MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def header(kind: bytes, payload_size: int) -> bytes:
    """The 8-byte head of a box whose payload is written separately (an ``mdat``)."""
    return struct.pack(">I4s", 8 + payload_size, kind)
