"""Latency of one runtime on one batch: warm-up calls, then timed calls, median and p90 (`core.timing`).

Knows the Runtime interface only; nothing of recipes or reports.
"""

from __future__ import annotations

import numpy as np

from pipeline.core.timing import time_calls
from pipeline.runtimes.base import Runtime


def measure_latency(runtime: Runtime, feed: dict[str, np.ndarray], runs: int, warmup: int) -> dict[str, float]:
    """Milliseconds per call on `feed` (already keyed by the runtime's input names; a fixed-batch file in its
    chunks)."""
    return time_calls(lambda: runtime.predict_fixed(feed), runs, warmup)


def feed_for(
    runtime: Runtime, batch: dict[str, np.ndarray], input_map: dict[str, str] | None = None
) -> dict[str, np.ndarray]:
    """A batch keyed by the source's input names, re-keyed for this runtime."""
    from pipeline.core.tensors import match_feed

    matches = match_feed(batch, runtime.inputs, f"{runtime.name} inputs", input_map)
    return {matches[name].candidate: array for name, array in batch.items()}
