"""The storage interface: the one seam between the HTTP layer and where bytes live.

Kept as small as tidwall/wal's API so that the embedded store and a clustered
backend (PostgreSQL + object store) are interchangeable. Every method that
returns after a write returns only once the write is durable (fsynced).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from openkvs.model import Fragment, FragmentMeta, StreamInfo


class StoreError(Exception):
    """The store could not do what was asked (disk full, I/O error, corrupt data)."""


class OutOfOrderError(StoreError):
    """An append whose sequence number is not above the stream's last."""


class FragmentGone(StoreError):
    """The fragment was deleted (retention, stream deletion) before it could be read."""


class Store(Protocol):
    """Durable streams and their fragments."""

    async def open(self) -> list[StreamInfo]:
        """Open (running recovery) and return every stored stream."""

    async def close(self) -> None: ...

    async def save_stream(self, info: StreamInfo) -> None:
        """Create or replace a stream's control-plane record, durably."""

    async def delete_stream(self, key: str) -> None:
        """Forget the stream and all its fragments."""

    async def append(self, key: str, fragment: Fragment) -> None:
        """Store a fragment durably. Its seq must be above the stream's last (gaps are fine)."""

    async def append_batch(self, key: str, fragments: Sequence[Fragment]) -> None:
        """``append`` of several fragments in seq order, all durable when it returns.

        A backend may make them durable together (one fsync); on StoreError any
        of them may be missing, never a later one without an earlier one.
        """

    def index(self, key: str) -> list[FragmentMeta]:
        """The stream's stored fragments, oldest first (a live view: do not mutate)."""

    async def read(self, key: str, meta: FragmentMeta) -> Fragment:
        """Read one stored fragment back; raise FragmentGone if it was deleted."""

    async def read_batch(self, key: str, metas: Sequence[FragmentMeta]) -> list[Fragment]:
        """``read`` of several fragments at once (one trip to the disk thread); FragmentGone
        if any of them is gone."""

    def expired(self, key: str) -> FragmentMeta | None:
        """The newest fragment retention deleted since open: every seq up to its seq is gone.

        GetMedia uses it to tell a reader that fell behind retention from a gap
        left by a fragment that was numbered but never stored.
        """

    async def truncate_before(self, key: str, server_ms: int) -> int:
        """Delete fragments whose server timestamp is older than ``server_ms``.

        Returns how many were deleted. Never blocks appends for long.
        """
