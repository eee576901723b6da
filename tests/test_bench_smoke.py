"""The benchmark suite runs end to end at smoke size (figures are not checked: only that
every row is there). Timings are never asserted."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# One row per figure (growth rows for each fragment size, fan-out and latency rows,
# the archived-media rows).
ROWS = [
    *(
        f"{kind}, {size} fragments"
        for kind in ("GetMedia throughput, 1 session", "PutMedia ingest, 1 stream")
        for size in ("64 KB", "256 KB", "1 MB", "4 MB", "8 MB")
    ),
    *(
        f"{who}, {what}"
        for who in ("Fan-out, 10 NOW readers", "Latency, 1 NOW reader")
        for what in ("lag p50", "lag p99", "server CPU")
    ),
    "Memory per idle stream",
    "DescribeStream requests/s",
    "Restart until answering",
    "Index memory per stored fragment",
    "Store append",
    "Store reopen",
    "GetClip, ",
    *(f"GetImages JPEG every 200 ms, 2 s of 640x480 H.264, {p}" for p in ("first", "second")),
    *(
        f"ListFragments of 2,000 stored, 1,000 per call, range {w}"
        for w in ("at the start", "at the end")
    ),
    "ListFragments of 2,000 stored, 1,000 per call, raw HTTP",
    "ListFragments paginator",
    *(
        f"HLS LIVE, 0.5 s fragments: RECEIVED → in media playlist, {p}"  # smoke: 0.5 s only
        for p in ("p50", "p99")
    ),
    "GET /metrics, 20 streams, p50",
    "console stats, 20 streams, p99",
    "GET /health while /metrics is scraped non-stop, p99",
    # the player rows are there, "not measured" (no browser in a smoke run)
    "HLS LIVE in hls.js, 0.5 s fragments: producer frame → player",
    "LL-HLS (LowLatency=1) in hls.js, 0.5 s fragments: producer frame → player",
]


def test_run_all_smoke(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "bench/run_all.py", "--smoke", "--out", str(out), "--dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = (out / "RESULTS.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| figure | OpenKVS | baseline | ratio | AWS quota | target |")
    for row in ROWS:
        assert any(line.startswith(f"| {row}") for line in lines), f"no row {row!r}:\n{table}"
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "chart.png").stat().st_size > 0
    else:
        assert "chart skipped" in done.stdout
