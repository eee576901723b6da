"""Per-stream and per-session quotas: calls per second and bytes per second (spec §4, §6)."""

from __future__ import annotations

import asyncio
import time
from collections import deque


def admit(calls: deque[float], now: float, per_second: float) -> bool:
    """Sliding one-second window: may one more call start now?"""
    while calls and now - calls[0] >= 1.0:
        calls.popleft()
    if len(calls) >= per_second:
        return False
    calls.append(now)
    return True


class Pacer:
    """Caps a byte rate with a one-second burst by waiting, so TCP pushes back on the peer.

    GetMedia waits before sending more (25 MB/s per session on AWS); PutMedia
    waits before reading more (12.5 MB/s per stream), which throttles the
    producer without refusing anything it sent.
    """

    def __init__(self, bytes_per_second: float) -> None:
        self.rate = bytes_per_second
        self.started = time.monotonic()
        self.spent = 0

    async def spend(self, count: int) -> None:
        if self.rate <= 0:
            return
        self.spent += count
        ahead = self.spent / self.rate - (time.monotonic() - self.started) - 1.0
        if ahead > 0:
            await asyncio.sleep(ahead)

    def take(self, count: int) -> bool:
        """``spend`` without waiting: False (nothing spent) if sending ``count`` now is too soon."""
        if self.rate <= 0:
            return True
        if (self.spent + count) / self.rate - (time.monotonic() - self.started) > 1.0:
            return False
        self.spent += count
        return True
