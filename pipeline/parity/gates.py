"""Gates: a threshold per metric, its direction, and the verdict with a note where the data cannot decide."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipeline.core.metric_registry import GATE_OPS

UNDECIDED = "not enough samples to decide"


def json_number(value: float | None) -> float | str | None:
    """JSON has no NaN or infinity: write them as strings a reader will notice."""
    if value is None or math.isfinite(value):
        return value
    return str(value)


@dataclass
class GateResult:
    metric: str
    op: str
    threshold: float
    value: float | None
    passed: bool
    note: str | None = None
    tensor: str | None = None  # None: the whole output
    against: str | None = None  # None: the output's own runtime against the source

    def to_dict(self) -> dict[str, Any]:
        return {
            "tensor": self.tensor,
            "against": self.against,
            "metric": self.metric,
            "op": self.op,
            "threshold": self.threshold,
            "value": json_number(self.value),
            "passed": self.passed,
            "note": self.note,
        }


def evaluate_gates(
    metrics: dict[str, float], thresholds: dict[str, float], tensor: str | None = None, against: str | None = None
) -> list[GateResult]:
    results = []
    for metric, threshold in thresholds.items():
        op = GATE_OPS[metric]
        value = metrics.get(metric)
        if value is None:
            note = "not measurable on this output (needs class scores or labels)"
            results.append(GateResult(metric, op, threshold, None, False, note, tensor, against))
            continue
        passed = not math.isnan(value) and (value <= threshold if op == "<=" else value >= threshold)
        note = undecided_note(metrics, metric, op, threshold)
        results.append(GateResult(metric, op, threshold, value, passed, note, tensor, against))
    return results


def undecided_note(metrics: dict[str, float], metric: str, op: str, threshold: float) -> str | None:
    """Where the metric's 95% interval holds the threshold, the verdict rests on which samples were drawn:
    the gate still judges the measured value, and says so."""
    lower, upper = metrics.get(f"{metric}_lower"), metrics.get(f"{metric}_upper")
    if lower is None or upper is None:
        return None
    if metric == "top1_agreement" and threshold >= 1.0:
        return None  # agreement on every sample of this data is a fact about it, not an estimate
    straddles = lower <= threshold < upper if op == "<=" else lower < threshold <= upper
    if not straddles:
        return None
    return f"{UNDECIDED}: its 95% interval [{lower:.4g}, {upper:.4g}] holds {threshold:g}"
