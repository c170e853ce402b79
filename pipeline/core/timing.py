"""Timing a call: untimed warm-up calls, then timed ones, summarised as median, p90 and minimum milliseconds.

The one timing loop of the run's latency measurement and of the int8 fallback's comparison, so that their
numbers mean the same thing. A leaf: numpy and the standard library.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def time_calls(call: Callable[[], object], runs: int, warmup: int) -> dict[str, float]:
    """`median_ms`, `p90_ms` and `min_ms` of `runs` timed calls after `warmup` untimed ones (first calls pay for
    allocation and kernel selection, which no later call repeats)."""
    for _ in range(warmup):
        call()
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        timings.append((time.perf_counter() - start) * 1000.0)
    values = np.array(timings)
    return {
        "median_ms": round(float(np.median(values)), 4),
        "p90_ms": round(float(np.percentile(values, 90)), 4),
        "min_ms": round(float(values.min()), 4),
    }
