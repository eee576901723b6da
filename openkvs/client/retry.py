"""botocore's retry rules as data: when to retry, how long to wait (pure: no I/O, no sleeping).

``standard`` (botocore's default; ``adaptive`` behaves like it here) retries
up to 3 attempts with jittered backoff capped at 20 s; ``legacy`` retries up
to 5 attempts with uncapped doubling. Both retry connection errors, 5xx
gateway statuses and throttling codes. botocore's retry quota (a token bucket
shared by a client's calls) is not modelled: each call retries on its own.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ConnectionError, HTTPClientError

STANDARD_MAX_ATTEMPTS = 3
LEGACY_MAX_ATTEMPTS = 5
MAX_BACKOFF_S = 20.0
RETRY_AFTER_EXTRA_S = 5.0

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
TRANSIENT_CODES = frozenset(
    {"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"}
)
LEGACY_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
    }
)
STANDARD_STATUSES = frozenset({429, 500, 502, 503, 504})
LEGACY_STATUSES = frozenset({429, 500, 502, 503, 504, 509})


@dataclass(frozen=True)
class Decision:
    """``delay`` seconds before the next attempt, or None: stop and report."""

    delay: float | None
    max_attempts_reached: bool


@dataclass(frozen=True)
class RetryPolicy:
    mode: str = "standard"
    max_attempts: int = STANDARD_MAX_ATTEMPTS
    random: Callable[[], float] = field(default=random.random, compare=False)

    @classmethod
    def from_config(
        cls, retries: Mapping[str, Any] | None, mode: str | None, max_attempts: int | None
    ) -> RetryPolicy:
        """Client ``Config(retries=…)`` first, then AWS_RETRY_MODE / AWS_MAX_ATTEMPTS.

        ``retries['max_attempts']`` counts retries and ``total_max_attempts``
        counts attempts, as in botocore.
        """
        retries = retries or {}
        mode = retries.get("mode") or mode or "standard"
        if "total_max_attempts" in retries:
            total = int(retries["total_max_attempts"])
        elif "max_attempts" in retries:
            total = int(retries["max_attempts"]) + 1
        elif max_attempts is not None:
            total = int(max_attempts)
        else:
            total = LEGACY_MAX_ATTEMPTS if mode == "legacy" else STANDARD_MAX_ATTEMPTS
        return cls(mode, max(total, 1))

    @property
    def legacy(self) -> bool:
        return self.mode == "legacy"

    def decide(
        self,
        attempt: int,
        *,
        status: int | None = None,
        code: str | None = None,
        error: Exception | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Decision:
        """After ``attempt`` (1-based) ended with a response or an exception."""
        wanted = self._retryable(status, code, error)
        last = attempt >= self.max_attempts
        if not wanted or last:
            reached = last and (wanted or not self.legacy)
            return Decision(None, reached)
        if self.legacy:
            return Decision(self.random() * 2 ** (attempt - 1), False)
        throttled = code in THROTTLING_CODES or status == 429
        delay = self.random() * min(
            (1.0 if throttled else 0.05) * 2 ** (attempt - 1), MAX_BACKOFF_S
        )
        after = _retry_after(headers)
        if after is not None:
            delay = max(delay, min(after, RETRY_AFTER_EXTRA_S + delay))
        return Decision(delay, False)

    def _retryable(self, status: int | None, code: str | None, error: Exception | None) -> bool:
        if error is not None:
            return isinstance(error, ConnectionError | HTTPClientError)
        if self.legacy:
            return status in LEGACY_STATUSES or (status == 400 and code in LEGACY_CODES)
        return status in STANDARD_STATUSES or code in THROTTLING_CODES or code in TRANSIENT_CODES


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    value = (headers or {}).get("x-amz-retry-after")
    try:
        seconds = int(value) / 1000.0 if value is not None else None
    except (ValueError, OverflowError):
        return None
    return seconds if seconds is not None and seconds >= 0 else None
