"""The archived-media service: its routes, what its handlers share, and its quotas.

Each operation is a function ``(archive, request, body) -> response`` in a module
named for what it serves; this module finds it by the path the service model
gives, validates the body against the model first, and holds what the handlers
share: the stream table, the runtimes, streaming sessions and per-stream quotas.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from openkvs.server.archive.sessions import Sessions
from openkvs.server.config import Config
from openkvs.server.control.plane import ControlPlane, named_streams
from openkvs.server.errors import (
    ClientLimitExceededException,
    ConnectionLimitExceededException,
    InvalidArgumentException,
    NoDataRetentionException,
)
from openkvs.server.model import StreamInfo
from openkvs.server.runtime.limits import admit
from openkvs.server.runtime.registry import Runtimes
from openkvs.server.runtime.stream import StreamRuntime
from openkvs.server.validate import Validator, parse_timestamp

VALIDATOR = Validator("kinesis-video-archived-media")
MAX_RANGE_MS = 24 * 3600 * 1000

Body = dict[str, Any]
Handler = Callable[["Archive", web.Request, Body], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class TimeRange:
    """A selector's inclusive range, compared to each fragment's start (spec §2.1)."""

    producer: bool
    start_ms: int
    end_ms: int


@dataclass
class Archive:
    control: ControlPlane
    runtimes: Runtimes
    sessions: Sessions = field(default_factory=Sessions)
    calls: dict[tuple[str, str], deque[float]] = field(default_factory=lambda: defaultdict(deque))
    connections: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    shared: dict[str, Any] = field(default_factory=dict)
    """Per-server helpers a handler makes once (the image sampler)."""

    @property
    def config(self) -> Config:
        return self.runtimes.config

    async def info(self, body: Body, retention: bool = True) -> StreamInfo:
        """The stream the body names; NoDataRetentionException where it keeps nothing."""
        info = await self.control.lookup(body.get("StreamName"), body.get("StreamARN"))
        if retention and info.data_retention_hours <= 0:
            raise NoDataRetentionException(
                "The stream does not retain data (its DataRetentionInHours is 0)."
            )
        return info

    async def stream(self, body: Body, retention: bool = True) -> StreamRuntime:
        return await self.runtimes.get(await self.info(body, retention))

    def admit(self, info: StreamInfo, operation: str, per_second: float) -> None:
        """Calls per second per stream for ``operation`` (ClientLimitExceeded beyond)."""
        if not self.config.rate_limits:
            return
        if not admit(self.calls[(info.key, operation)], time.monotonic(), per_second):
            raise ClientLimitExceededException(
                f"{operation} calls per second for this stream exceeded. Retry after a moment."
            )

    @contextmanager
    def connection(self, info: StreamInfo, operation: str, limit: int) -> Iterator[None]:
        """One of at most ``limit`` concurrent ``operation`` responses on the stream."""
        key = (info.key, operation)
        if self.config.rate_limits and self.connections[key] >= limit:
            raise ConnectionLimitExceededException(
                f"At most {limit} concurrent {operation} connections per stream."
            )
        self.connections[key] += 1
        try:
            yield
        finally:
            self.connections[key] -= 1


def time_range(
    selector_type: str, timestamps: Body | None, *, end_required: bool = True
) -> TimeRange:
    """A selector's range in epoch ms; InvalidArgument where it is missing or inverted."""
    if not isinstance(timestamps, dict) or timestamps.get("StartTimestamp") is None:
        raise InvalidArgumentException("TimestampRange.StartTimestamp is required.")
    start = parse_timestamp(timestamps["StartTimestamp"], "StartTimestamp")
    if timestamps.get("EndTimestamp") is None:
        if end_required:
            raise InvalidArgumentException("TimestampRange.EndTimestamp is required.")
        return TimeRange(selector_type == "PRODUCER_TIMESTAMP", start, 1 << 62)
    end = parse_timestamp(timestamps["EndTimestamp"], "EndTimestamp")
    if end < start:
        raise InvalidArgumentException("The EndTimestamp must be after the StartTimestamp.")
    return TimeRange(selector_type == "PRODUCER_TIMESTAMP", start, end)


def page_token(values: Sequence[int]) -> str:
    """An opaque NextToken holding ``values`` (base64 of JSON, as the model's pattern wants)."""
    return base64.b64encode(json.dumps(list(values)).encode()).decode()


def read_page_token(token: str, count: int) -> list[int]:
    """The ``count`` whole numbers ``page_token`` put in ``token``; InvalidArgument otherwise."""
    try:
        values = json.loads(base64.b64decode(token, validate=True))
    except (ValueError, binascii.Error):
        values = None
    if not (
        isinstance(values, list)
        and len(values) == count
        and all(type(value) is int for value in values)
    ):
        raise InvalidArgumentException("The NextToken is not valid.")
    return values


def checked(name: str, body: Body) -> Body:
    """Validate ``body`` for operation ``name`` as the model says; refuse two named streams."""
    VALIDATOR.check(name, body)
    if len(named := named_streams(body)) > 1:
        raise InvalidArgumentException(
            f"The request names more than one stream: {', '.join(sorted(named))}."
        )
    return body
