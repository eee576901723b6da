"""SIGKILL the server over and over while it ingests, deletes and serves; check nothing is lost.

    .venv/bin/python stress/kill_loop.py [--cycles 1000] [--seed N] [--data-dir DIR]

The same cycles as tests/test_crash.py (kill before the first ack, mid-fragment,
between RECEIVED and PERSISTED, during a retention pass, during a GetMedia
read), each followed by a restart and a full read-back check. Prints a line
per cycle and a summary; exits 1 at the first broken promise, naming the seed
and cycle so the run can be replayed.
"""

from __future__ import annotations

import argparse
import collections
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import ServerProcess  # noqa: E402
from tests.test_crash import (  # noqa: E402
    DURABLE,
    KILL_POINTS,
    SERVER_FLAGS,
    start_kill_loop,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None, help="replay a run (default: random)")
    parser.add_argument("--data-dir", help="default: a fresh temporary directory")
    args = parser.parse_args()
    seed = random.randrange(1 << 32) if args.seed is None else args.seed
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="openkvs-kill-"))
    servers: list[ServerProcess] = []

    def factory(*flags: str) -> ServerProcess:
        servers.append(ServerProcess(data_dir, extra=list(flags)))
        return servers[-1].start()

    print(f"seed {seed}, data dir {data_dir}, flags {' '.join(SERVER_FLAGS)}", flush=True)
    started = time.monotonic()
    points: collections.Counter[str] = collections.Counter()
    notes: collections.Counter[str] = collections.Counter()
    cycle = 0
    try:
        loop = start_kill_loop(factory, seed)
        for cycle in range(1, args.cycles + 1):
            point = loop.rng.choice(KILL_POINTS)
            outcome = loop.cycle(point)
            points[point] += 1
            if outcome.note in ("mid-pass", "after-pass"):
                notes[outcome.note] += 1
            durable = loop.streams[DURABLE]
            print(
                f"cycle {cycle:5d} {point:24s} acks {outcome.acks:3d} "
                f"persisted {len(durable.persisted):6d} {outcome.note}",
                flush=True,
            )
    except (AssertionError, RuntimeError):
        traceback.print_exc()
        print(f"FAILED at cycle {cycle} (seed {seed}); data dir kept: {data_dir}", flush=True)
        return 1
    finally:
        for server in servers:
            server.stop()
    elapsed = time.monotonic() - started
    if args.data_dir is None:
        shutil.rmtree(data_dir, ignore_errors=True)
    durable = loop.streams[DURABLE]
    print(
        f"OK: {loop.kills} SIGKILLs in {elapsed:.0f} s, {len(durable.persisted)} PERSISTED "
        f"fragments all intact; kill points {dict(points)}; retention kills {dict(notes)}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
