"""Figure 1 (and half of 7): GetMedia throughput of one session, from stored fragments.

    .venv/bin/python bench/getmedia_throughput.py [--smoke] [--mb 256] [--profile DIR]

Rate limits off. The stream is filled through the store API before the server starts, so
every byte comes from the data dir (page cache warm). One raw-socket reader discards
the bytes, noting when the last chunk ends. Baseline: ``bench.baselines sender``, a raw
asyncio server pushing the very same bytes (chunks, HTTP framing and all) over loopback
to the same reader. Repeated for each growth fragment size; best of ``--rounds``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baselines import write_framed
from bench.common import (
    GROWTH,
    HEADLINE_KB,
    KB,
    SIZES_KB,
    Child,
    Profiler,
    Row,
    Settings,
    baseline_server,
    fragment_count,
    fragments_of,
    getmedia_chunks,
    getmedia_request,
    media_body,
    open_reader,
    openkvs_server,
    profile_path,
    size_label,
    standalone,
    stream_info,
)
from openkvs.server.model import Fragment
from openkvs.server.store.embedded import EmbeddedStore

OPTIONS = {"mb": 256, "rounds": 2}


async def fill(data_dir: Path, streams: dict[str, list[Fragment]]) -> None:
    """Store each stream's fragments in a new data dir, as PutMedia would."""
    store = EmbeddedStore(str(data_dir))
    await store.open()
    try:
        for name, fragments in streams.items():
            info = stream_info(name)
            await store.save_stream(info, None)
            claim = await store.claim_writer(info.key)
            for fragment in fragments:
                await store.append(claim, [fragment])
    finally:
        await store.close()


def read_rate(server: Child, stream: str, count: int) -> float:
    """MB/s of one EARLIEST GetMedia until the last chunk's last byte."""

    async def read() -> float:
        reader = await open_reader(server.port, getmedia_request(stream), count)
        finished = await reader.done
        if len(reader.arrived) < count:
            raise RuntimeError(f"got {len(reader.arrived)} of {count} chunks")
        return reader.total / 1e6 / (finished - reader.started)

    return asyncio.run(read())


def run(settings: Settings) -> list[Row]:
    total_mb = settings.options.get("mb", OPTIONS["mb"])
    rounds = 1 if settings.smoke else settings.options.get("rounds", OPTIONS["rounds"])
    streams = {
        f"bench-{kb}": fragments_of(media_body(kb * KB, fragment_count(settings, kb, total_mb)))
        for kb in SIZES_KB
    }
    data_dir = settings.work / "getmedia"
    asyncio.run(fill(data_dir, streams))
    ours: dict[str, list[float]] = {name: [] for name in streams}
    with openkvs_server(data_dir, "--no-rate-limits", "--getmedia-idle-timeout-s", "1") as server:
        for r in range(rounds):  # the first round, every size, is profiled
            with Profiler(server.pid, profile_path(settings, "getmedia") if r == 0 else None):
                for name, fragments in streams.items():
                    ours[name].append(read_rate(server, name, len(fragments)))
    rows = []
    for kb, (name, fragments) in zip(SIZES_KB, streams.items(), strict=True):
        chunks = settings.work / f"{name}.chunks"
        write_framed(chunks, getmedia_chunks(fragments))
        with baseline_server("sender", "--file", str(chunks)) as sender:
            base = [read_rate(sender, name, len(fragments)) for _ in range(rounds)]
        rows.append(
            Row(
                f"GetMedia throughput, 1 session, {size_label(kb)} fragments",
                max(ours[name]),
                max(base),
                "MB/s",
                quota="25 MB/s per session",
                target="≥ 1,000 MB/s and ≥ 50 % of raw" if kb == HEADLINE_KB else "",
                baseline_name="raw asyncio sender",
                plot=(GROWTH, "GetMedia", kb),
            )
        )
    return rows


if __name__ == "__main__":
    standalone(run, __doc__, OPTIONS)
