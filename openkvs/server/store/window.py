"""The range arithmetic every backend's queries share: bisect on seq or on a timestamp.

Seqs increase within a stream, and so do both timestamps of stored fragments
(a fragment that starts before the previous one is refused, 4004), so a time
range is a contiguous run of the index.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from openkvs.server.model import FragmentMeta


def seq_of(meta: FragmentMeta) -> int:
    return meta.seq


def server_ms_of(meta: FragmentMeta) -> int:
    return meta.server_ms


def producer_ms_of(meta: FragmentMeta) -> int:
    return meta.producer_ms


def first_seq_above(metas: Sequence[FragmentMeta], seq: int) -> int:
    """The index of the first fragment whose seq is above ``seq``."""
    return bisect.bisect_right(metas, seq, key=seq_of)


def span(values: Sequence[int], start: int, end: int) -> range:
    """Indexes of the sorted ``values`` in ``[start, end]``."""
    return range(bisect.bisect_left(values, start), bisect.bisect_right(values, end))


def limited(indexes: range, limit: int, newest_first: bool) -> range:
    """At most ``limit`` of ``indexes``, from the oldest or from the newest."""
    if newest_first:
        return indexes[::-1][:limit]
    return indexes[:limit]


def between(
    metas: Sequence[FragmentMeta],
    start_ms: int,
    end_ms: int,
    producer: bool,
    limit: int,
    newest_first: bool,
) -> list[FragmentMeta]:
    key = producer_ms_of if producer else server_ms_of
    rows = range(
        bisect.bisect_left(metas, start_ms, key=key), bisect.bisect_right(metas, end_ms, key=key)
    )
    return [metas[i] for i in limited(rows, limit, newest_first)]
