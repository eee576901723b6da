"""A writer for the SIGKILL test: appends deterministic fragments, printing each acked seq.

Run as ``python tests/store_child.py DATA_DIR SEGMENT_BYTES``; it continues the
stream where the last run stopped and loops until killed.
"""

from __future__ import annotations

import asyncio
import sys

from openkvs.server.model import Fragment, FragmentMeta, FragmentNumber, StreamInfo
from openkvs.server.store.embedded import EmbeddedStore

CRASH_STREAM = StreamInfo(name="crash", arn="arn:crash", creation_ms=1, version="1")


def crash_fragment(seq: int) -> Fragment:
    """Fragment ``seq`` as the child writes it, so the parent can check it byte for byte."""
    server_ms = 1_000_000 + seq * 100
    size = 1 + (seq * 7919) % 40_000
    body = (seq.to_bytes(8, "big") * (size // 8 + 1))[:size]
    header = b"EBML-header-of-session-%d;" % (seq // 5) * 40
    meta = FragmentMeta(
        FragmentNumber.make(seq, server_ms, salt=seq), server_ms, seq * 100, 100, size
    )
    return Fragment(meta, header, body)


async def main(data_dir: str, segment_bytes: int) -> None:
    store = EmbeddedStore(data_dir, segment_bytes=segment_bytes)
    key = CRASH_STREAM.key
    if not any(info.key == key for info in await store.open()):
        await store.save_stream(CRASH_STREAM, None)
    claim = await store.claim_writer(key)
    last = await store.last_fragment(key)
    seq = last.seq + 1 if last else 1
    while True:
        await store.append(claim, [crash_fragment(seq)])
        sys.stdout.write(f"{seq}\n")
        sys.stdout.flush()
        seq += 1


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
