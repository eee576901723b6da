"""A store that keeps everything in memory: for ``--data-dir :memory:`` and tests.

It answers the same queries with the same errors as the embedded store (the
contract suite runs against both), only nothing survives the process.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from openkvs.server.model import Fragment, FragmentMeta, FragmentNumber, StreamInfo
from openkvs.server.store.base import (
    Fenced,
    Missing,
    OutOfOrderError,
    ReadOutcome,
    StreamExists,
    StreamNotFound,
    VersionConflict,
    WriterClaim,
)
from openkvs.server.store.watch import Watchers
from openkvs.server.store.window import between, first_seq_above, seq_of


@dataclass(eq=False)
class _Stream:
    info: StreamInfo
    metas: list[FragmentMeta] = field(default_factory=list)
    fragments: dict[int, Fragment] = field(default_factory=dict)
    expired: FragmentMeta | None = None
    token: int = 0


class MemoryStore:
    shared = False

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}
        self._watchers = Watchers()

    async def open(self) -> list[StreamInfo]:
        return [s.info for s in self._streams.values()]

    async def close(self) -> None:
        pass

    async def check(self) -> None:
        pass

    async def save_stream(self, info: StreamInfo, expected_version: str | None) -> None:
        stream = self._streams.get(info.key)
        if expected_version is None:
            if stream is not None:
                raise StreamExists(f"stream {info.key} exists")
            self._streams[info.key] = _Stream(replace(info, tags=dict(info.tags)))
            return
        if stream is None:
            raise StreamNotFound(f"no stream {info.key}")
        if stream.info.version != expected_version:
            raise VersionConflict(f"stream {info.key} is at version {stream.info.version}")
        stream.info = replace(info, tags=dict(info.tags))

    async def delete_stream(self, key: str) -> None:
        self._streams.pop(key, None)
        self._watchers.wake(key)

    async def claim_writer(self, key: str) -> WriterClaim:
        stream = self._stream(key)
        stream.token += 1
        next_seq = stream.metas[-1].seq + 1 if stream.metas else 0
        return WriterClaim(key, stream.token, next_seq)

    async def append(self, claim: WriterClaim, fragments: Sequence[Fragment]) -> None:
        stream = self._stream(claim.key)
        if claim.token != stream.token:
            raise Fenced(f"a newer writer claimed stream {claim.key}")
        last = stream.metas[-1].seq if stream.metas else -1
        for fragment in fragments:
            if fragment.meta.seq <= last:
                raise OutOfOrderError(f"seq {fragment.meta.seq} after {last}")
            last = fragment.meta.seq
        for fragment in fragments:
            stream.metas.append(fragment.meta)
            stream.fragments[fragment.meta.seq] = fragment
        self._watchers.wake(claim.key)

    async def fragments_after(self, key: str, seq: int, limit: int) -> list[FragmentMeta]:
        metas = self._metas(key)
        start = first_seq_above(metas, seq)
        return metas[start : start + limit]

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
        return between(self._metas(key), start_ms, end_ms, producer, limit, newest_first)

    async def last_fragment(self, key: str) -> FragmentMeta | None:
        metas = self._metas(key)
        return metas[-1] if metas else None

    async def fragment(self, key: str, number: FragmentNumber) -> FragmentMeta | None:
        metas = self._metas(key)
        i = bisect.bisect_left(metas, number.seq, key=seq_of)
        return metas[i] if i < len(metas) and metas[i].number == number else None

    async def read(self, key: str, metas: Sequence[FragmentMeta]) -> list[ReadOutcome]:
        stream = self._streams.get(key)
        stored = stream.fragments if stream is not None else {}
        out: list[ReadOutcome] = []
        for meta in metas:
            fragment = stored.get(meta.seq)
            ok = fragment is not None and fragment.meta.number == meta.number
            out.append(fragment if ok and fragment is not None else Missing(meta))
        return out

    async def expired(self, key: str) -> FragmentMeta | None:
        stream = self._streams.get(key)
        return stream.expired if stream is not None else None

    async def truncate_before(self, key: str, server_ms: int) -> int:
        stream = self._streams.get(key)
        if stream is None:
            return 0
        cut = bisect.bisect_left(stream.metas, server_ms, key=lambda m: m.server_ms)
        if cut:
            stream.expired = stream.metas[cut - 1]
        for meta in stream.metas[:cut]:
            stream.fragments.pop(meta.seq, None)
        del stream.metas[:cut]
        return cut

    async def wait_for_fragment(self, key: str, after_seq: int, timeout: float) -> bool:
        return await self._watchers.wait(key, timeout, lambda: self._has_after(key, after_seq))

    def _has_after(self, key: str, seq: int) -> bool:
        metas = self._metas(key)
        return bool(metas) and metas[-1].seq > seq

    def _stream(self, key: str) -> _Stream:
        stream = self._streams.get(key)
        if stream is None:
            raise StreamNotFound(f"no stream {key}")
        return stream

    def _metas(self, key: str) -> list[FragmentMeta]:
        stream = self._streams.get(key)
        return stream.metas if stream is not None else []
