"""Shared timing helpers for the benchmark scripts.

Every figure is the median of ``repeats`` timed calls after ``warmup`` untimed ones,
so a first call's compilation (Numba) or allocation never counts; compile time is
measured on its own, in a fresh process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable


def positive_int(text: str) -> int:
    """An argparse type for a count (--repeats, --rounds, --epochs): 0 would time nothing."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_note() -> str:
    """The 1-minute load average, to record next to the figures (others may be running)."""
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, ready to paste into benchmarks/README.md."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
