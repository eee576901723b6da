"""Health checks for load balancers and orchestrators, exempt from SigV4.

``GET /health`` says the process answers (liveness). ``GET /ready`` says it can take
writes now: its store opens, writes and syncs (the data dir is writable and has room),
or, for a cluster node, its database and object store answer (readiness). A node that is
not ready answers 503 with the reason, so a load balancer stops sending it producers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from openkvs.server.store.base import Store, StoreError

PROBE_PATHS = frozenset(("/health", "/ready", "/metrics"))
"""Unsigned: load balancers and Prometheus scrapers hold no keys."""
READY_TIMEOUT_S = 5.0


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def ready(store: Store) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def check(request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await store.check()
        except TimeoutError:
            reason = f"the store did not answer within {READY_TIMEOUT_S:g} s"
        except StoreError as exc:
            reason = str(exc)
        else:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "unavailable", "reason": reason}, status=503)

    return check
