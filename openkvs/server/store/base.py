"""The storage interface: the one seam between the server and where streams and bytes live.

It is shaped by the questions the server asks (fragments after a seq, within a
time range, by number, the last one) rather than by one backend's data
structure, so that the embedded store, the in-memory store and a clustered
backend (PostgreSQL + object store) are interchangeable. Every method is async;
every write returns only once it is durable. All backends raise the same typed
errors, and a read answers per fragment: one bad record never fails its neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from openkvs.server.model import Fragment, FragmentMeta, FragmentNumber, StreamInfo


class StoreError(Exception):
    """The store could not do what was asked (disk full, I/O error): the caller may retry."""


class StreamNotFound(StoreError):
    """The stream was never saved, or has been deleted."""


class StreamExists(StoreError):
    """``save_stream(..., expected_version=None)`` of a stream that already exists."""


class VersionConflict(StoreError):
    """``save_stream`` expected another version than the one stored."""


class Fenced(StoreError):
    """An append under a writer claim that a newer claim has superseded."""


class OutOfOrderError(StoreError):
    """An append whose seq is not above the stream's last."""


@dataclass(frozen=True, slots=True)
class WriterClaim:
    """The right to append to one stream, until a newer claim fences it.

    ``next_seq`` is the lowest seq the holder may number its next fragment with.
    """

    key: str
    token: int
    next_seq: int


@dataclass(frozen=True, slots=True)
class Missing:
    """A read of a fragment that is not stored (any more): retention or deletion took it."""

    meta: FragmentMeta


@dataclass(frozen=True, slots=True)
class Corrupt:
    """A read of a fragment whose stored bytes fail their check; ``where`` names the spot."""

    meta: FragmentMeta
    where: str


ReadOutcome = Fragment | Missing | Corrupt


class Store(Protocol):
    """Durable streams and their fragments. Seqs increase per stream, with gaps."""

    shared: bool
    """Other nodes write to it too (a ``SharedStore``): stream records are re-read from it."""

    async def open(self) -> list[StreamInfo]:
        """Open (running recovery) and return every stored stream."""

    async def close(self) -> None: ...

    async def check(self) -> None:
        """StoreError, saying why, unless the store can take writes now (``GET /ready``)."""

    async def save_stream(self, info: StreamInfo, expected_version: str | None) -> None:
        """Create (``expected_version`` None) or replace a stream's record, durably.

        StreamExists when creating one that exists; VersionConflict when the stored
        record's version is not ``expected_version``; StreamNotFound when it is gone.
        """

    async def delete_stream(self, key: str) -> None:
        """Forget the stream and all its fragments (nothing if it is unknown)."""

    async def claim_writer(self, key: str) -> WriterClaim:
        """Become the stream's only writer; earlier claims are fenced from now on."""

    async def append(self, claim: WriterClaim, fragments: Sequence[Fragment]) -> None:
        """Store fragments in seq order, all durable when it returns (one group commit).

        Seqs must be above the stream's last (OutOfOrderError). Fenced if the claim
        was superseded, StreamNotFound if the stream is gone. On StoreError any of
        them may be missing, never a later one without an earlier one.
        """

    async def fragments_after(self, key: str, seq: int, limit: int) -> list[FragmentMeta]:
        """Up to ``limit`` stored fragments whose seq is above ``seq``, oldest first."""

    async def fragments_between(
        self,
        key: str,
        start_ms: int,
        end_ms: int,
        *,
        producer: bool,
        limit: int,
        newest_first: bool = False,
    ) -> list[FragmentMeta]:
        """Up to ``limit`` fragments whose start (producer or server timestamp) is in
        ``[start_ms, end_ms]``, oldest first (or newest first)."""

    async def last_fragment(self, key: str) -> FragmentMeta | None:
        """The stored fragment with the highest seq."""

    async def fragment(self, key: str, number: FragmentNumber) -> FragmentMeta | None:
        """The stored fragment with this number."""

    async def read(self, key: str, metas: Sequence[FragmentMeta]) -> list[ReadOutcome]:
        """Each fragment's bytes, or why it cannot be had, in the order asked."""

    async def expired(self, key: str) -> FragmentMeta | None:
        """The newest fragment retention deleted: every seq up to its seq is gone.

        GetMedia tells a reader that fell behind retention (an in-band 4000) from a
        gap left by a fragment that was numbered but never stored (nothing to say).
        """

    async def truncate_before(self, key: str, server_ms: int) -> int:
        """Delete fragments whose server timestamp is older than ``server_ms``; how many.

        Never blocks appends for long.
        """

    async def wait_for_fragment(self, key: str, after_seq: int, timeout: float) -> bool:
        """Optional (a backend may return False at once): wait until a fragment above
        ``after_seq`` is stored, by any writer; whether one was."""


class SharedStore(Store, Protocol):
    """A store many nodes share: the stream records any of them changed, by name."""

    async def find_stream(self, name: str) -> StreamInfo | None:
        """The stream record named ``name`` as stored now."""

    async def list_streams(self, after: str, prefix: str, limit: int) -> list[StreamInfo]:
        """Up to ``limit`` stream records whose names start with ``prefix``, sorted by name,
        from the first name above ``after``."""
