"""Waiting for a stream's next stored fragment: the optional ``wait_for_fragment`` query.

One process's stores wake waiters when they append; a clustered backend would
wake them from its notification channel (e.g. PostgreSQL LISTEN).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class Watchers:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def wake(self, key: str) -> None:
        event = self._events.pop(key, None)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        for key in list(self._events):
            self.wake(key)

    async def wait(self, key: str, timeout: float, ready: Callable[[], bool]) -> bool:
        """Until ``ready()`` holds or ``timeout`` passes; whether it holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not ready():
            left = deadline - loop.time()
            if left <= 0:
                return False
            event = self._events.setdefault(key, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await event.wait()
        return True
