"""Bounded plot data for one comparison: an even sample of (reference, candidate) pairs and an |error| histogram.

Takes plain arrays keyed by tensor name; never imports a runtime and draws nothing (the report does).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

SAMPLE_PAIRS = 1000  # enough to see structure in a scatter; keeps report.json small (~30 KB an output)
HISTOGRAM_BINS = 30
_DIGITS = 5  # significant digits kept in the JSON: plots need no more


def plot_data(
    references: Iterable[dict[str, np.ndarray]],
    candidates: Iterable[dict[str, np.ndarray]],
    names: Sequence[str],
    pairs: int = SAMPLE_PAIRS,
    bins: int = HISTOGRAM_BINS,
    extent: tuple[int, float] | None = None,
) -> dict[str, object]:
    """`candidates`' chunks must match `references`' (same samples, matched names). They are read one chunk at a
    time, so memory stays bounded by a chunk whatever the number of samples: once for the histogram and the
    sample, and once before for the count and the largest finite error unless `extent` gives them (the metrics
    know both when every value was finite).

    Non-finite values are left out of both plots and counted, so the payload stays valid JSON.
    """
    total, max_abs = extent or _extent(references, candidates, names)
    stride = max(1, math.ceil(total / pairs))
    high = max_abs if max_abs > 0 else 1.0
    counts = np.zeros(bins, dtype=np.int64)
    sample_ref, sample_out, offset, skipped = [], [], 0, 0
    for ref, out in _pairs(references, candidates, names):
        error = np.abs(out - ref)
        finite = np.isfinite(error)
        skipped += int((~finite).sum())
        # Fixed, equal-width bins: an index computation and a bincount (np.histogram is several times slower).
        index = np.minimum((error[finite] * (bins / high)).astype(np.int64), bins - 1)
        counts += np.bincount(index, minlength=bins)
        # Every `stride`-th value of the whole stream: even across batches and tensors, and deterministic.
        picked = np.arange((-offset) % stride, len(ref), stride)
        picked = picked[finite[picked]]
        sample_ref.append(ref[picked])
        sample_out.append(out[picked])
        offset += len(ref)
    edges_high = float(np.linspace(0.0, high, bins + 1)[-1])
    return {
        "tensors": list(names),
        "values": total,
        "nonfinite_left_out": skipped,
        "histogram": {"low": 0.0, "high": _round(edges_high), "counts": counts.tolist()},
        "sample": {
            "stride": stride,
            "reference": _rounded(np.concatenate(sample_ref) if sample_ref else np.zeros(0)),
            "candidate": _rounded(np.concatenate(sample_out) if sample_out else np.zeros(0)),
        },
    }


def _extent(
    references: Iterable[dict[str, np.ndarray]], candidates: Iterable[dict[str, np.ndarray]], names: Sequence[str]
) -> tuple[int, float]:
    total, max_abs = 0, 0.0
    for ref, out in _pairs(references, candidates, names):
        total += len(ref)
        max_abs = max(max_abs, _finite_max(np.abs(out - ref)))
    return total, max_abs


def _pairs(
    references: Iterable[dict[str, np.ndarray]], candidates: Iterable[dict[str, np.ndarray]], names: Sequence[str]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each chunk's tensors, flat and in float64, one pair at a time."""
    for ref, out in zip(references, candidates, strict=True):
        for name in names:
            yield _flat(ref[name]), _flat(out[name])


def _flat(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float64).reshape(-1)


def _finite_max(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else 0.0


def _round(value: float) -> float:
    return float(f"{value:.{_DIGITS}g}")


def _rounded(values: np.ndarray) -> list[float]:
    return [_round(value) for value in values.tolist()]
