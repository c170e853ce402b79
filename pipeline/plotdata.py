"""Bounded plot data for one comparison: an even sample of (reference, candidate) pairs and an |error| histogram.

Fed one tensor's chunk at a time (pipeline.evaluate.compare); never imports a runtime and draws nothing (the
report does).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from pipeline.parity.scratch import Scratch

SAMPLE_PAIRS = 1000  # enough to see structure in a scatter; keeps report.json small (~30 KB an output)
HISTOGRAM_BINS = 30
_DIGITS = 5  # significant digits kept in the JSON: plots need no more
Again = Callable[[int], tuple[np.ndarray, np.ndarray]]  # segment number -> its (reference, candidate), read again


class PlotData:
    """The plot data of a stream of values, chunk by chunk and tensors in order, built as it goes by: one `add`
    a tensor's chunk (a segment), so that a comparison reads its recordings once, for its metrics and this.

    The histogram's range is the largest finite |error| of the whole stream. Each segment is binned on the range
    so far, and `finish` bins again, from values read again, the segments whose range was narrower than the final
    one and whose bins it changes: none when the largest error comes first, as it does in a stream of similar
    chunks (and never those whose errors all fall in the first bin)."""

    def __init__(
        self,
        names: Sequence[str],
        total: int,
        pairs: int = SAMPLE_PAIRS,
        bins: int = HISTOGRAM_BINS,
    ) -> None:
        self.names, self.total, self.bins = list(names), total, bins
        self.stride = max(1, math.ceil(total / pairs))
        self.largest, self.offset, self.skipped = 0.0, 0, 0
        self.sample_ref: list[np.ndarray] = []
        self.sample_out: list[np.ndarray] = []
        self.segments: list[tuple[float, float, np.ndarray]] = []  # each one's range, largest error and counts
        self.scratch = Scratch()

    def add(
        self, reference: np.ndarray, candidate: np.ndarray, error: np.ndarray, largest: float | None = None
    ) -> None:
        """One segment: its values (any shape, in the same order) and their |error|, flat in float64 (read during
        the call only); `largest`, the errors' max (NaN if any is), where the caller has it."""
        # Every `stride`-th value of the whole stream: even across batches and tensors, and deterministic.
        picked = np.arange((-self.offset) % self.stride, error.size, self.stride)
        picked = picked[np.isfinite(error[picked])]
        self.sample_ref.append(reference.reshape(-1)[picked].astype(np.float64))
        self.sample_out.append(candidate.reshape(-1)[picked].astype(np.float64))
        self.offset += error.size
        largest = float(error.max(initial=0.0)) if largest is None else largest  # NaN if any is
        if not math.isfinite(largest):
            finite = np.isfinite(error)
            self.skipped += int((~finite).sum())
            error = error[finite]
            largest = float(error.max(initial=0.0))
        self.largest = max(self.largest, largest)
        high = _high(self.largest)
        self.segments.append((high, largest, self._binned(error, high, largest)))

    def finish(self, again: Again | None = None) -> dict[str, object]:
        """The payload. `again` reads a segment's values again, for those binned on a range that grew since."""
        high = _high(self.largest)
        counts = np.zeros(self.bins, dtype=np.int64)
        for segment, (used, largest, binned) in enumerate(self.segments):
            if used == high or largest * (self.bins / used) < 1:  # all in the first bin on a wider range too
                counts += binned
                continue
            if again is None:
                raise ValueError("a segment was binned on a narrower range, and there is no way to read it again")
            reference, candidate = again(segment)
            error = np.abs(_flat(candidate) - _flat(reference))
            error = error[np.isfinite(error)]  # counted as left out already
            counts += self._binned(error, high, float(error.max(initial=0.0)))
        edges_high = float(np.linspace(0.0, high, self.bins + 1)[-1])
        return {
            "tensors": self.names,
            "values": self.total,
            "nonfinite_left_out": self.skipped,
            "histogram": {"low": 0.0, "high": _round(edges_high), "counts": counts.tolist()},
            "sample": {
                "stride": self.stride,
                "reference": _rounded(np.concatenate(self.sample_ref) if self.sample_ref else np.zeros(0)),
                "candidate": _rounded(np.concatenate(self.sample_out) if self.sample_out else np.zeros(0)),
            },
        }

    def _binned(self, error: np.ndarray, high: float, largest: float) -> np.ndarray:
        """Finite |errors| in fixed, equal-width bins over [0, high]: an index computation and a bincount
        (np.histogram is several times slower)."""
        scale = self.bins / high
        if largest * scale < 1:  # every index (error times scale, rounded down) is 0
            counts = np.zeros(self.bins, dtype=np.int64)
            counts[0] = error.size
            return counts
        scaled = np.multiply(error, scale, out=self.scratch.array("scaled", error.shape))
        index = self.scratch.copy("index", scaled, np.int64)
        counts = np.bincount(index, minlength=self.bins)
        # The range is never below the largest error: only an error equal to it reaches index `bins`, and it
        # belongs in the last bin.
        counts[self.bins - 1] += counts[self.bins :].sum()
        return counts[: self.bins]


def _high(max_abs: float) -> float:
    return max_abs if max_abs > 0 else 1.0


def _flat(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float64).reshape(-1)


def _round(value: float) -> float:
    return float(f"{value:.{_DIGITS}g}")


def _rounded(values: np.ndarray) -> list[float]:
    # One %-format of them all, then one float() each: what _round gives each, in half the time.
    return list(map(float, (f"%.{_DIGITS}g " * len(values) % tuple(values.tolist())).split()))
