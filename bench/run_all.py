"""Run every OpenKVS benchmark; write bench/results/RESULTS.md and chart.png.

    .venv/bin/python bench/run_all.py [--smoke] [--only NAME ...] [--out DIR] [--profile]

``--smoke`` runs each benchmark at a tiny size (seconds in all); ``--only`` picks
benchmarks by name; ``--profile`` attaches py-spy to the server during GetMedia,
PutMedia and fan-out and writes the top self-time functions to ``PROFILES.md``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import (
    archive,
    cluster,
    fanout,
    getmedia_throughput,
    hls_latency,
    listfragments,
    observe,
    putmedia_ingest,
    restart,
    store,
    streams_scale,
)
from bench.common import Row, Settings, print_rows, work_dir
from bench.report import chart, markdown, profiles

BENCHMARKS: dict[str, Callable[[Settings], list[Row]]] = {
    "getmedia": getmedia_throughput.run,
    "putmedia": putmedia_ingest.run,
    "fanout": fanout.run,
    "latency": fanout.run_latency,
    "streams": streams_scale.run,
    "restart": restart.run,
    "store": store.run,
    "clip": archive.run_clip,
    "images": archive.run_images,
    "listfragments": listfragments.run,
    "hls_latency": hls_latency.run,
    "cluster": cluster.run,
    "observe": observe.run,
}
RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds each")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="repeatable")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default {RESULTS}")
    parser.add_argument("--profile", action="store_true", help="py-spy the server (figures 1-3)")
    parser.add_argument("--dir", help="where data dirs go (default: a temp dir under /tmp)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    profile_dir = args.out / "profiles" if args.profile else None
    rows: list[Row] = []
    with work_dir(args.dir) as work:
        for name in args.only or list(BENCHMARKS):
            print(f"== {name}", flush=True)
            settings = Settings(work / name, args.smoke, profile_dir)
            settings.work.mkdir()
            found = BENCHMARKS[name](settings)
            print_rows(found)
            rows += found
    (args.out / "RESULTS.md").write_text(markdown(rows, args.smoke))
    print(f"table written to {args.out / 'RESULTS.md'}")
    print(chart(rows, args.out / "chart.png"))
    if profile_dir is not None and profile_dir.is_dir():
        (args.out / "PROFILES.md").write_text(profiles(profile_dir))
        print(f"profiles written to {args.out / 'PROFILES.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
