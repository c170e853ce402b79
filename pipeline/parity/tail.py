"""The tail of |error| in bounded memory: a fixed log-spaced histogram, whatever the number of samples."""

from __future__ import annotations

import math

import numpy as np

LOW = 1e-12  # errors below this (exact zeros too) share the first bin: float32 cannot resolve less near 1
DECADES = 24  # LOW .. 1e12; larger errors (and inf) land in the last bin, where the quantile is max_abs
PER_DECADE = 100  # bin edges 10**(1/100) apart: a quantile is at most 2.33% above the true value, never below
BINS = DECADES * PER_DECADE + 2  # underflow, the log-spaced bins, overflow: 19 KB of counts a tensor


class ErrorHistogram:
    """Counts of |error| per log-spaced bin; quantiles come back as the upper edge of their bin."""

    def __init__(self) -> None:
        self.counts = np.zeros(BINS, dtype=np.int64)

    def update(self, error: np.ndarray) -> None:
        error = error.reshape(-1)
        index = np.zeros(error.shape, dtype=np.int64)
        above = error >= LOW  # NaN is not: it lands in the underflow bin, and makes every metric NaN anyway
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            scaled = np.floor(np.log10(error[above] / LOW) * PER_DECADE)
        index[above] = np.minimum(scaled, BINS - 2).astype(np.int64) + 1
        self.counts += np.bincount(index, minlength=BINS)

    def merge(self, other: ErrorHistogram) -> None:
        self.counts += other.counts

    def percentile(self, percent: int, max_abs: float) -> float:
        """The nearest-rank `percent`-th percentile (numpy's `inverted_cdf`), from above, capped by the exact max."""
        total = int(self.counts.sum())
        if total == 0:
            return 0.0
        rank = -(-percent * total // 100)  # ceil in integers: 0.99 * 100 is 99.00000000000001 in floats
        found = int(np.searchsorted(np.cumsum(self.counts), rank))
        if found >= BINS - 1:
            return max_abs
        # A hair above the edge, so that rounding in log10 cannot put the answer below the true value.
        upper = LOW * 10 ** ((found + 1e-9) / PER_DECADE)
        return min(upper, max_abs) if math.isfinite(max_abs) else upper
