"""HLS and DASH streaming sessions: what a session token grants, until when.

The session resources (playlists, manifests, MP4 and TS fragments) are plain
GETs that players make without SigV4: the token in the URL is the only
credential, so it is long and random. A stream keeps at most ten active
sessions (AWS's quota); opening an eleventh revokes the oldest.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from openkvs.server.archive.timeline import Timeline
from openkvs.server.errors import SessionExpired

MAX_PER_STREAM = 10
KEEP_EXPIRED = 1000
"""Expired or revoked tokens remembered, to answer them 403 rather than 404."""


@dataclass
class Session:
    kind: str  # "HLS" or "DASH"
    stream_name: str
    stream_key: str
    mode: str  # LIVE, LIVE_REPLAY, ON_DEMAND
    producer: bool
    start_ms: int | None
    end_ms: int | None
    max_results: int
    expires_at: float
    created_ms: int
    container: str = "FRAGMENTED_MP4"
    show_timestamp: bool = False
    show_number: bool = False
    low_latency: bool = False
    discontinuity_asked: bool = False
    """Whether the request chose DiscontinuityMode (LL-HLS otherwise plays without them)."""
    timeline: Timeline = field(default_factory=Timeline)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(48) + "~")
    revoked: bool = False
    complete: bool = False
    served: bool = False
    """A media playlist or manifest went out: the numbering is no longer the session's to change."""
    origin_ms: int | None = None
    """DASH LIVE_REPLAY: the wall-clock time of media time 0 (set by the first manifest)."""
    announced: tuple[int, int] | None = None
    """LL-HLS: the media sequence number whose parts were announced, and that fragment's seq."""
    """LIVE_REPLAY: every fragment of the range has been shown."""


class Sessions:
    def __init__(
        self, per_stream: int = MAX_PER_STREAM, clock: Callable[[], float] = time.time
    ) -> None:
        self.per_stream, self.clock = per_stream, clock
        self._live: OrderedDict[str, Session] = OrderedDict()  # oldest first
        self._ended: OrderedDict[str, str] = OrderedDict()  # token -> why

    def open(self, session: Session) -> Session:
        """Start ``session``; the stream's oldest beyond ``per_stream`` are revoked."""
        self._expire()
        same = [s for s in self._live.values() if s.stream_key == session.stream_key]
        for old in same[: max(0, len(same) + 1 - self.per_stream)]:
            self._end(old.token, "revoked: the stream has too many active sessions")
        self._live[session.token] = session
        return session

    def get(self, token: str | None) -> Session:
        """The active session of ``token``; SessionExpired (403) otherwise."""
        self._expire()
        session = self._live.get(token or "")
        if session is not None:
            return session
        why = self._ended.get(token or "")
        if why is None:
            raise SessionExpired("The streaming session token is not valid.")
        raise SessionExpired(f"Streaming session token is {why}.")

    def close_stream(self, stream_key: str) -> None:
        """End the sessions of a deleted stream."""
        for token in [t for t, s in self._live.items() if s.stream_key == stream_key]:
            self._end(token, "revoked: the stream was deleted")

    def open_by_kind(self) -> dict[str, int]:
        """How many sessions are open now, by protocol ("hls", "dash"; for metrics)."""
        self._expire()
        counts = {"hls": 0, "dash": 0}
        for session in self._live.values():
            counts[session.kind.lower()] += 1
        return counts

    def _expire(self) -> None:
        now = self.clock()
        for token in [t for t, s in self._live.items() if s.expires_at <= now]:
            self._end(token, "expired")

    def _end(self, token: str, why: str) -> None:
        session = self._live.pop(token, None)
        if session is not None:
            session.revoked = True
        self._ended[token] = why
        while len(self._ended) > KEEP_EXPIRED:
            self._ended.popitem(last=False)

    def __len__(self) -> int:
        return len(self._live)
