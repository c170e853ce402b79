"""The tail of |error| in bounded memory: a fixed log-spaced histogram, whatever the number of samples."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

LOW = 1e-12  # errors below this (exact zeros too) share the first bin: float32 cannot resolve less near 1
DECADES = 24  # LOW .. 1e12; larger errors (and inf) land in the last bin, where the quantile is max_abs
PER_DECADE = 100  # bin edges 10**(1/100) apart: a quantile is at most 2.33% above the true value, never below
BINS = DECADES * PER_DECADE + 2  # underflow, the log-spaced bins, overflow: 19 KB of counts a tensor


# A float64's bit pattern, read as an int64, grows with the value; its top bits (sign, exponent, 6 bits of the
# mantissa) name a cell at most 2**-6 = 1.6% wide, narrower than a bin (2.33%): a cell holds one bin edge at
# most, and a value's bin is its cell's first bin, plus one from that edge on. Two look-ups in tables of every
# cell (2 MB) and a compare a value: 0.4 ms for 82k values, where the log10 formula took 0.65 ms.
_SHIFT = 52 - 6
_CELLS = 1 << (63 - _SHIFT)  # of the non-negative patterns; a negative one (a negative value) looks up cell 0
_NO_EDGE = np.iinfo(np.int64).max
_BEYOND = BINS  # the look-up's bin past the last edge's cell: large, inf and NaN values, binned by the formula


class ErrorHistogram:
    """Counts of |error| per log-spaced bin; quantiles come back as the upper edge of their bin."""

    def __init__(self) -> None:
        self.counts = np.zeros(BINS, dtype=np.int64)

    def update(
        self, error: np.ndarray, work: tuple[np.ndarray, np.ndarray] | None = None, largest: float | None = None
    ) -> None:
        """Count |errors|. `work`: two arrays of error's size and itemsize that the look-up may overwrite (the
        caller's spent chunk copies: a fresh array costs more than the look-up, pipeline.parity.scratch).
        `largest`: the errors' max, where the caller has it (NaN if any is)."""
        error = np.ascontiguousarray(error).reshape(-1)
        if error.dtype != np.float64:
            self.counts += np.bincount(_formula_bins(error), minlength=BINS)
            return
        top = error.max(initial=0.0) if largest is None else largest
        if top < LOW:  # identical outputs, most often (a NaN is not below: it takes the look-up)
            self.counts[0] += error.size
            return
        table = _table()
        bits = error.view(np.int64)
        cells, index = (
            (np.empty_like(bits), np.empty_like(bits)) if work is None else (a.reshape(-1).view(np.int64) for a in work)
        )
        np.right_shift(bits, _SHIFT, out=cells)
        # mode="clip": a negative cell looks up cell 0, whose bin is 0, as for the formula; and take buffers its
        # output in the default mode.
        above = bits >= np.take(table.edges, cells, out=index, mode="clip")
        np.take(table.bins, cells, out=index, mode="clip")
        index += above
        counts = np.bincount(index, minlength=BINS + 1)
        self.counts += counts[:BINS]
        if counts[_BEYOND:].any():  # _BEYOND + 1 too: the NaN whose bits are _NO_EDGE's
            beyond = error[index >= _BEYOND]
            self.counts += np.bincount(_formula_bins(beyond), minlength=BINS)

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


def _formula_bins(error: np.ndarray) -> np.ndarray:
    """Each value's bin by definition: the look-up table is built from this, and reproduces it exactly."""
    index = np.zeros(error.shape, dtype=np.int64)
    above = error >= LOW  # NaN is not: it lands in the underflow bin, and makes every metric NaN anyway
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        scaled = np.floor(np.log10(error[above] / LOW) * PER_DECADE)
    index[above] = np.minimum(scaled, BINS - 2).astype(np.int64) + 1
    return index


@dataclass(frozen=True)
class _Table:
    bins: np.ndarray  # per cell: the bin of its lowest value
    edges: np.ndarray  # ... and the bit pattern of the edge inside it, or _NO_EDGE


@functools.cache
def _table() -> _Table:
    """Bisection on bit patterns finds each bin's lowest value under `_formula_bins` itself (in 1 ms, once), so
    that the look-up bins every value as the formula would on this machine's log10, edges included."""
    edges = _lowest_values(np.arange(1, BINS))
    cells, offsets = edges >> _SHIFT, edges & ((1 << _SHIFT) - 1)
    if np.bincount(cells).max() > 1:
        raise AssertionError("two bin edges in one cell")  # cannot happen while cells are narrower than bins
    # A cell's first bin counts the edges of the cells before it, and its own edge when that is where it starts.
    bins = np.zeros(_CELLS, dtype=np.int64)
    np.add.at(bins, cells + (offsets > 0), 1)
    bins = np.cumsum(bins)
    inside = np.full(_CELLS, _NO_EDGE)
    inside[cells[offsets > 0]] = edges[offsets > 0]
    beyond = np.arange(_CELLS) > cells[-1]
    bins[beyond], inside[beyond] = _BEYOND, _NO_EDGE
    return _Table(bins, inside)


def _lowest_values(wanted: np.ndarray) -> np.ndarray:
    """Bit patterns of the lowest float64 that `_formula_bins` puts in each `wanted` bin (1 and up), bisected
    from 4096 patterns either side of the decimal edge (log10's error moves them by tens)."""
    around = (LOW * 10.0 ** ((wanted - 1) / PER_DECADE)).view(np.int64)
    low, high = around - 4096, around + 4096
    if (_formula_bins(low.view(np.float64)) >= wanted).any() or (_formula_bins(high.view(np.float64)) < wanted).any():
        raise AssertionError("log10 is further off than 4096 float64 steps")
    while (high - low > 1).any():
        middle = low + (high - low) // 2
        reached = _formula_bins(middle.view(np.float64)) >= wanted
        high, low = np.where(reached, middle, high), np.where(reached, low, middle)
    return high
