"""Long-running fuzzing of the MKV parsers (issue 4): tests/test_fuzz_mkv.py's checks, for minutes.

    .venv/bin/python stress/fuzz_mkv.py --seconds 300            # all three parsers
    .venv/bin/python stress/fuzz_mkv.py --seconds 60 --check reader

Random (not derandomized) batches until the time is up; the first failure stops
the run and Hypothesis prints the shrunk input and a ``@reproduce_failure`` blob.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.test_fuzz_mkv import CHECKS, fragment, hostile_with_cuts  # noqa: E402


def run_for(
    strategy: st.SearchStrategy[Any],
    check: Callable[[Any], object],
    seconds: float,
    outcomes: Counter[str],
    batch: int = 500,
) -> None:
    """Run ``check`` on fresh random examples until ``seconds`` pass, tallying what it returns.

    Raises on the first failing example (after Hypothesis has shrunk it).
    """
    deadline = time.monotonic() + seconds

    @settings(
        max_examples=batch,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(example=strategy)
    def one_batch(example: Any) -> None:
        outcomes[str(check(example))] += 1

    while time.monotonic() < deadline:
        one_batch()


def _fragmenter_outcome(case: tuple[bytes, list[int]]) -> str:
    CHECKS["fragmenter"](*case)
    _, error_id = fragment(case[0], [])
    return f"ErrorId {error_id}" if error_id else "accepted"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="total run time")
    parser.add_argument("--check", choices=sorted(CHECKS), action="append", help="default: all")
    args = parser.parse_args(argv)
    checks = args.check or sorted(CHECKS)
    for name in checks:
        outcomes: Counter[str] = Counter()
        check: Callable[[Any], object] = (
            _fragmenter_outcome if name == "fragmenter" else (lambda case, n=name: CHECKS[n](*case))
        )
        began = time.monotonic()
        run_for(hostile_with_cuts(), check, args.seconds / len(checks), outcomes)
        total = sum(outcomes.values())
        print(f"{name}: {total} inputs in {time.monotonic() - began:.0f} s, no failure")
        for outcome, count in outcomes.most_common(12):
            if outcome != "None":
                print(f"    {count:7d}  {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
