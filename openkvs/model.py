"""Value types shared by every layer: fragment numbers, stream info, fragments.

No I/O here; everything above imports down to this module.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

_TOP = 1 << 156
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, order=True, slots=True)
class FragmentNumber:
    """A KVS fragment number: ``(1<<156) | (seq<<92) | (server_ms<<28) | rand28``.

    The layout matches every number seen from AWS (spec §5): 47 decimal digits,
    increasing with ``seq``, so string and numeric order agree.
    """

    value: int

    @classmethod
    def make(cls, seq: int, server_ms: int, salt: int | None = None) -> FragmentNumber:
        if salt is None:
            salt = secrets.randbits(28)
        return cls(_TOP | (seq & _MASK64) << 92 | (server_ms & _MASK64) << 28 | (salt & 0xFFFFFFF))

    @classmethod
    def parse(cls, text: str) -> FragmentNumber:
        """Parse the decimal form; raise ValueError when it is not one of ours."""
        if not text.isdigit() or len(text) != 47:
            raise ValueError(f"not a fragment number: {text!r}")
        value = int(text)
        if value >> 156 != 1:
            raise ValueError(f"not a fragment number: {text!r}")
        return cls(value)

    @property
    def seq(self) -> int:
        return (self.value >> 92) & _MASK64

    @property
    def server_ms(self) -> int:
        return (self.value >> 28) & _MASK64

    def __str__(self) -> str:
        return str(self.value)


@dataclass(slots=True)
class FragmentMeta:
    """What the index knows about one stored fragment."""

    number: FragmentNumber
    server_ms: int
    producer_ms: int
    duration_ms: int
    size: int

    @property
    def seq(self) -> int:
        return self.number.seq


@dataclass(slots=True)
class Fragment:
    """One fragment as ingested: metadata, the producer header it needs, and its bytes.

    ``header`` is the producer's EBML header plus the Segment-level elements that
    came before the first Cluster; ``body`` is the Cluster as sent plus the
    Segment-level elements that followed it. As ingested, ``body`` is a tuple of
    the elements as they arrived: joining a fragment's frames would copy every
    byte once more, and the store writes them (pwritev) and readers send them
    (one write each) as they are. The embedded store reads one back as a single
    ``bytes``; ``body_parts()`` serves either.
    """

    meta: FragmentMeta
    header: bytes
    body: bytes | tuple[bytes, ...]

    def body_parts(self) -> tuple[bytes, ...]:
        return self.body if isinstance(self.body, tuple) else (self.body,)


@dataclass(slots=True)
class StreamInfo:
    """The control-plane record of a stream (AWS StreamInfo plus our key)."""

    name: str
    arn: str
    creation_ms: int
    version: str
    status: str = "ACTIVE"
    device_name: str | None = None
    media_type: str | None = None
    kms_key_id: str | None = None
    data_retention_hours: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    storage_tier: str = "HOT"

    @property
    def key(self) -> str:
        """A filesystem-safe identity that differs between a stream and its re-creation."""
        return f"{self.name}.{self.creation_ms}"
