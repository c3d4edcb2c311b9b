"""Shared pieces of the benchmark parts: result files, statistics, markdown, machine facts.

Every part writes ``bench/results/<part>.json`` (the figures) and ``bench/results/<part>.md``
(its table), so ``python -m bench`` can run the parts in separate processes (a clean peak RSS
for each) and still assemble one ``latest.md``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

#: Where results go; only ``baseline*.json`` files in it are committed (see ``.gitignore``).
RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: The repository root (workers are started there so ``-A tasks`` and ``bench.*`` import).
REPO_ROOT = Path(__file__).resolve().parents[1]


def default_json_path(part: str) -> Path:
    """``bench/results/<part>.json``."""
    return RESULTS_DIR / f"{part}.json"


def write_results(part: str, data: dict[str, Any], markdown: str, json_path: Path | None = None) -> Path:
    """Write the part's JSON and, next to it, its markdown (same name, ``.md``).

    By default both go to ``bench/results/<part>.json|md``, where ``python -m bench`` reads the
    markdown back to build ``latest.md`` (each part runs in its own process). An explicit
    ``json_path`` keeps both out of ``bench/results/``, so a test run never overwrites results.
    """
    path = json_path or default_json_path(part)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    path.with_suffix(".md").write_text(markdown.rstrip() + "\n", encoding="utf-8")
    return path


def report(
    part: str, data: dict[str, Any], markdown: Callable[[dict[str, Any]], str], json_path: Path | None
) -> dict[str, Any]:
    """End of a part's ``main``: render its markdown, write both files, print the table; the data."""
    text = markdown(data)
    write_results(part, data, text, json_path)
    print(text)
    return data


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in [0, 1]); 0.0 for no values.

    Nearest rank rather than interpolation: a p99 is then a latency that really occurred.
    """
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


def median(values: Iterable[float]) -> float:
    """Median, 0.0 for no values."""
    data = list(values)
    return float(statistics.median(data)) if data else 0.0


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean, 0.0 for no values."""
    return float(sum(values) / len(values)) if values else 0.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process (``ru_maxrss`` is in KiB on Linux)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / (1024 * 1024)


def load_average() -> list[float]:
    """``os.getloadavg()``, rounded: a busy machine makes every figure here smaller."""
    return [round(value, 2) for value in os.getloadavg()]


def calibration_us(repeat: int = 5, number: int = 2000) -> float:
    """Best-of time of ``sum(range(1000))`` in µs: how fast this machine is now, to compare two runs."""
    best = min(timeit.repeat("sum(range(1000))", repeat=repeat, number=number))
    return best / number * 1e6


def machine() -> dict[str, Any]:
    """Facts printed with every result: they decide whether two runs can be compared."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": load_average(),
        "calibration_sum_range_1000_us": round(calibration_us(), 2),
        "git_commit": git_commit(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def git_commit() -> str:
    """Short commit of the tree being measured, with ``+dirty`` when it has local changes."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats get a sensible number of digits."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(cell) for cell in row) + " |")
    return "\n".join(lines)


def fmt(value: Any) -> str:
    """Format one table cell: thousands separators, 3 significant-ish digits for small floats."""
    if isinstance(value, bool):
        return "pass" if value else "**FAIL**"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine_line(facts: dict[str, Any]) -> str:
    """One line under each table: load, calibration, commit."""
    load = ", ".join(f"{value:.2f}" for value in facts["load_average"])
    return (
        f"_Load average {load}; {facts['cpus']} CPUs; Python {facts['python']}; "
        f"`sum(range(1000))` = {facts['calibration_sum_range_1000_us']:.1f} µs (calibration); "
        f"commit {facts['git_commit']}; {facts['at']}._"
    )
