"""The server's value types: stream info, fragment metadata, fragments (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field

from openkvs.wire.chunk import chunk_parts
from openkvs.wire.fragment_number import FragmentNumber
from openkvs.wire.mkv.elements import TrackEntry

TrackSet = tuple[TrackEntry, ...]
"""A fragment's tracks (codec ids and private data): shared by every fragment until it changes."""


@dataclass(slots=True)
class FragmentMeta:
    """What the index knows about one fragment: what GetMedia and archived media query.

    ``keyframe`` says whether its first frame is one; ``tracks`` is the same object
    for every fragment of a run with unchanged Tracks, so a store keeps it once per change.
    """

    number: FragmentNumber
    server_ms: int
    producer_ms: int
    duration_ms: int
    size: int
    keyframe: bool = False
    tracks: TrackSet = ()

    @property
    def seq(self) -> int:
        return self.number.seq

    def start_ms(self, producer: bool) -> int:
        """When it starts by the producer's clock or the server's: what selectors compare."""
        return self.producer_ms if producer else self.server_ms


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

    def chunk(self, now_ms: int) -> tuple[bytes, ...]:
        """This fragment as a GetMedia chunk's parts: head, body as stored, tail."""
        meta = self.meta
        return chunk_parts(
            self.header,
            str(meta.number),
            meta.server_ms,
            meta.producer_ms,
            self.body_parts(),
            now_ms,
        )


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
