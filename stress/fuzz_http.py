"""Long-running fuzzing of a real server (issue 4): tests/test_hostile.py's checks, for minutes.

    .venv/bin/python stress/fuzz_http.py --seconds 300

Starts ``openkvs serve`` on a free port with a temporary data dir, stores a
stream, then sends random hostile JSON to every control-plane operation and
GetMedia, hostile MKV bodies to PutMedia and hostile PutMedia headers. Every
answer must be a modelled AWS error or a media ERROR ack; at the end the server
must be alive, its memory bounded, and the stored stream must read back as
before. Prints what each kind of input got.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stress.fuzz_mkv import run_for  # noqa: E402
from tests.test_fuzz_mkv import hostile_media  # noqa: E402
from tests.test_hostile import (  # noqa: E402
    check_json_request,
    check_putmedia_body,
    check_putmedia_headers,
    json_requests,
    putmedia_headers,
    rss,
    start_target,
)

SHARE = {"json": 0.4, "putmedia-body": 0.4, "putmedia-headers": 0.2}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="total run time")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="openkvs-fuzz-") as data_dir:
        target = start_target(Path(data_dir))
        server = target.server
        runs = {
            "json": (json_requests, lambda r: check_json_request(server, *r)),
            "putmedia-body": (hostile_media, lambda body: check_putmedia_body(server, body)),
            "putmedia-headers": (putmedia_headers, lambda h: check_putmedia_headers(server, *h)),
        }
        try:
            for name, (strategy, check) in runs.items():
                outcomes: Counter[str] = Counter()
                began = time.monotonic()
                run_for(strategy, check, args.seconds * SHARE[name], outcomes, batch=100)
                print(
                    f"{name}: {sum(outcomes.values())} requests in {time.monotonic() - began:.0f} s"
                )
                for outcome, count in outcomes.most_common(15):
                    print(f"    {count:7d}  {outcome}")
            target.check_intact()
            growth = (rss(server) - target.rss_before) / 2**20
            print(f"server alive, stored stream intact, RSS grew {growth:.1f} MiB")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
