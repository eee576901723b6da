"""The results table (Markdown) and chart (PNG, when matplotlib is installed)."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

from bench.common import Row, fmt, top_self

COLUMNS = ("figure", "OpenKVS", "baseline", "ratio", "AWS quota", "target")


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} × {model}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def markdown(rows: list[Row], smoke: bool) -> str:
    lines = [
        "# OpenKVS benchmark results",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}"
        + (" — **smoke run: tiny sizes, figures meaningless**" if smoke else "")
        + f". Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`.",
        "",
        "Ratio = OpenKVS / baseline, both measured in this run (see bench/README.md for what"
        " each baseline is; for times, lag, CPU and memory lower is better).",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in rows:
        ratio = row.ratio
        baseline = fmt(row.baseline, row.unit)
        if row.baseline_name and row.baseline is not None:
            baseline += f" ({row.baseline_name})"
        cells = [
            row.figure,
            fmt(row.value, row.unit),
            baseline,
            "—" if ratio is None else f"{ratio:.2f}×",
            row.quota or "—",
            row.target or "—",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def chart(rows: list[Row], path: Path) -> str:
    """Draw each plot panel (series and their baselines); say what was done."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return "matplotlib is not installed: chart skipped (pip install 'openkvs[bench]')"
    panels: dict[str, dict[str, list[tuple[float, float]]]] = {}
    units: dict[str, str] = {}
    for row in rows:
        if row.plot is None:
            continue
        panel, series, x = row.plot
        units[panel] = row.unit
        panels.setdefault(panel, {}).setdefault(series, []).append((x, row.value))
        if row.baseline is not None:
            name = f"{series}: {row.baseline_name or 'baseline'}"
            panels[panel].setdefault(name, []).append((x, row.baseline))
    if not panels:
        return "no plotted figures: chart skipped"
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (panel, curves) in zip(axes[0], panels.items(), strict=True):
        colors: dict[str, str] = {}
        for name, points in curves.items():
            xs, ys = zip(*sorted(points), strict=True)
            own = name.split(":")[0]
            baseline = own != name
            line = ax.plot(
                xs, ys, "--" if baseline else "-", marker="o", label=name, color=colors.get(own)
            )
            colors.setdefault(own, line[0].get_color())
        ax.set_xscale("log", base=2 if "size" in panel else 10)
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_title(panel)
        ax.set_xlabel("fragment size (KB)" if "size" in panel else "NOW readers")
        ax.set_ylabel(units[panel])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart written to {path}"


def profiles(directory: Path, count: int = 10) -> str:
    """Top self-time frames of each py-spy profile in ``directory``, as Markdown."""
    out = ["# Server profiles (py-spy, self time)", ""]
    for path in sorted(directory.glob("*.txt")):
        out += [f"## {path.stem}", "", "| share | function (file) |", "|---|---|"]
        out += [f"| {share:.1%} | `{name}` |" for name, share in top_self(path, count)]
        out.append("")
    return "\n".join(out)
