"""Which node owns a stream: the seam between one server and a cluster of them.

A stream's ingest and its live edge live on one node, its owner, so that one
process numbers its fragments and its readers see the growing fragment. A
single server owns every stream (``Solo``); cluster nodes hold leases in the
shared database (``openkvs.server.store.cluster.leases``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Protocol


class Ownership(Protocol):
    async def start(self) -> None:
        """Join: announce this node and keep its leases alive until ``stop``."""

    async def stop(self) -> None:
        """Leave: give up every lease at once, so another node need not wait them out."""

    async def acquire(self, key: str) -> str | None:
        """Own the stream (None), or the URL of the live node that owns it now."""

    async def owner_elsewhere(self, key: str) -> str | None:
        """The URL of the live node that owns the stream, if not this one."""

    async def endpoint(self, key: str) -> str:
        """The URL PutMedia and GetMedia of this stream should go to (GetDataEndpoint)."""

    def exclusive(self, job: str) -> contextlib.AbstractAsyncContextManager[bool]:
        """Whether this node runs ``job`` now, no other node running it meanwhile."""


class Solo:
    """One server: it owns every stream and runs every job."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def acquire(self, key: str) -> str | None:
        return None

    async def owner_elsewhere(self, key: str) -> str | None:
        return None

    async def endpoint(self, key: str) -> str:
        return self.url

    @contextlib.asynccontextmanager
    async def exclusive(self, job: str) -> AsyncIterator[bool]:
        yield True
