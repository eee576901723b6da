"""A store that keeps everything in memory: for ``--data-dir :memory:`` and unit tests."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from openkvs.model import Fragment, FragmentMeta, StreamInfo
from openkvs.store.base import FragmentGone, OutOfOrderError


class MemoryStore:
    def __init__(self) -> None:
        self._streams: dict[str, StreamInfo] = {}
        self._index: dict[str, list[FragmentMeta]] = {}
        self._fragments: dict[str, dict[int, Fragment]] = {}
        self._expired: dict[str, FragmentMeta] = {}

    async def open(self) -> list[StreamInfo]:
        return list(self._streams.values())

    async def close(self) -> None:
        pass

    async def save_stream(self, info: StreamInfo) -> None:
        self._streams[info.key] = info
        self._index.setdefault(info.key, [])
        self._fragments.setdefault(info.key, {})

    async def delete_stream(self, key: str) -> None:
        self._streams.pop(key, None)
        self._index.pop(key, None)
        self._fragments.pop(key, None)
        self._expired.pop(key, None)

    async def append(self, key: str, fragment: Fragment) -> None:
        index = self._index[key]
        if index and fragment.meta.seq <= index[-1].seq:
            raise OutOfOrderError(f"seq {fragment.meta.seq} after {index[-1].seq}")
        index.append(fragment.meta)
        self._fragments[key][fragment.meta.seq] = fragment

    async def append_batch(self, key: str, fragments: Sequence[Fragment]) -> None:
        for fragment in fragments:
            await self.append(key, fragment)

    def index(self, key: str) -> list[FragmentMeta]:
        return self._index.get(key, [])

    async def read(self, key: str, meta: FragmentMeta) -> Fragment:
        try:
            return self._fragments[key][meta.seq]
        except KeyError:
            raise FragmentGone(f"fragment {meta.number} is gone") from None

    async def read_batch(self, key: str, metas: Sequence[FragmentMeta]) -> list[Fragment]:
        return [await self.read(key, meta) for meta in metas]

    def expired(self, key: str) -> FragmentMeta | None:
        return self._expired.get(key)

    async def truncate_before(self, key: str, server_ms: int) -> int:
        index = self._index.get(key, [])
        cut = bisect.bisect_left([m.server_ms for m in index], server_ms)
        if cut:
            self._expired[key] = index[cut - 1]
        for meta in index[:cut]:
            self._fragments[key].pop(meta.seq, None)
        del index[:cut]
        return cut
