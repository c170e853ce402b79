"""A comparison's result, the accumulator that builds it batch by batch, and its gates."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.core.metric_registry import ACCURACY_METRICS, AGREEMENT_METRICS
from pipeline.parity.gates import GateResult, evaluate_gates, json_number
from pipeline.parity.metrics import TensorStats, pooled_metrics
from pipeline.parity.scratch import Scratch

SIDES = ("reference", "candidate")
Observer = Callable[[np.ndarray, np.ndarray, np.ndarray, float], None]


@dataclass
class ParityResult:
    reference: str
    candidate: str
    samples: int
    metrics: dict[str, float]
    tensors: dict[str, dict[str, float]]
    nonfinite: int  # NaN/Inf values on both sides together
    gates: list[GateResult] = field(default_factory=list)
    plots: dict[str, Any] | None = None  # pipeline.plotdata's bounded sample and histogram, finite by construction
    # Per tensor and side with any: {"tensor", "side" (reference | candidate), "count", "first_sample"}.
    nonfinite_where: list[dict[str, Any]] = field(default_factory=list)
    # Reference tensor → {"candidate": its counterpart's name, "rule": what paired them}: a swap shows here.
    matched: dict[str, dict[str, str]] = field(default_factory=dict)
    # Source input → the candidate's input it was fed as, and the rule: an input swap shows here.
    matched_inputs: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.nonfinite == 0 and all(gate.passed for gate in self.gates)

    def nonfinite_text(self) -> str:
        return nonfinite_message(self.nonfinite_where, self.nonfinite)

    def to_dict(self) -> dict[str, Any]:
        by_side = {side: sum(w["count"] for w in self.nonfinite_where if w["side"] == side) for side in SIDES}
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "samples": self.samples,
            "nonfinite": self.nonfinite,
            "nonfinite_by_side": by_side,
            "nonfinite_where": self.nonfinite_where,
            "metrics": {name: json_number(value) for name, value in self.metrics.items()},
            "tensors": {name: {k: json_number(v) for k, v in values.items()} for name, values in self.tensors.items()},
            "gates": [gate.to_dict() for gate in self.gates],
            "plots": self.plots,
            "matched": self.matched,
            "matched_inputs": self.matched_inputs,
        }


def nonfinite_message(where: list[dict[str, Any]], total: int) -> str:
    """`'y': 96 non-finite values in the reference, first at sample 1`: where a reader should look first."""
    if not where:
        return f"{total} non-finite values"
    return "; ".join(
        f"{entry.get('tensor')!r}: {entry.get('count')} non-finite values in the {entry.get('side')}, "
        f"first at sample {entry.get('first_sample')}"
        for entry in where
    )


class ParityAccumulator:
    """Compare a candidate's outputs with a reference's, batch by batch, tensor by tensor."""

    def __init__(
        self, reference: str, tensor_names: list[str], candidate: str = "output", labelled: str | None = None
    ) -> None:
        self.reference, self.candidate = reference, candidate
        self.stats = {name: TensorStats() for name in tensor_names}
        self.labelled = labelled  # the tensor labels are classes of; None: each tensor whose columns hold them
        self.scratch = Scratch()  # one set of chunk-sized arrays for every tensor, as they are done in turn

    def update(
        self,
        reference: dict[str, np.ndarray],
        candidate: dict[str, np.ndarray],
        labels: np.ndarray | None = None,
        observe: Observer | None = None,
    ) -> None:
        """Add one chunk of samples. `observe` sees each tensor's (reference, candidate, |error|, its max) in turn,
        the error flat in float64 and valid during the call only: the plot data bins it without computing it
        again."""
        for name, stats in self.stats.items():
            ref, out = reference[name], candidate[name]
            if ref.shape != out.shape:
                out = _squeeze_to(out, ref.shape, name)
            error, largest = stats.update(ref, out, labels if self.labelled in (None, name) else None, self.scratch)
            if observe is not None:
                observe(ref, out, error, largest)

    def result(self) -> ParityResult:
        tensors = {name: stats.metrics() for name, stats in self.stats.items()}
        samples = next(iter(self.stats.values())).samples if self.stats else 0
        nonfinite = sum(stats.nonfinite for stats in self.stats.values())
        where = [entry for name, stats in self.stats.items() for entry in _nonfinite_where(name, stats)]
        overall = _overall(list(self.stats.values()), tensors)
        return ParityResult(self.reference, self.candidate, samples, overall, tensors, nonfinite, nonfinite_where=where)


def _nonfinite_where(name: str, stats: TensorStats) -> list[dict[str, Any]]:
    counts = zip(SIDES, (stats.nonfinite_ref, stats.nonfinite_out), strict=True)
    firsts = (stats.first_nonfinite_ref, stats.first_nonfinite_out)
    return [
        {"tensor": name, "side": side, "count": count, "first_sample": first}
        for (side, count), first in zip(counts, firsts, strict=True)
        if count
    ]


def _squeeze_to(array: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    if array.size != math.prod(shape):
        raise ValueError(f"output {name!r}: shape {list(array.shape)} does not match the reference {list(shape)}")
    return array.reshape(shape)


def _overall(stats: list[TensorStats], tensors: dict[str, dict[str, float]]) -> dict[str, float]:
    """Whole-output metrics: worst case over tensors for similarities, pooled sums for errors."""
    if len(tensors) == 1:
        return dict(next(iter(tensors.values())))
    result = pooled_metrics(stats, list(tensors.values())) if any(one.count for one in stats) else {}
    heads = [values for values in tensors.values() if "top1_agreement" in values]
    if heads:  # the least agreeing head, with its interval
        worst = min(heads, key=lambda values: values["top1_agreement"])
        result.update({key: worst[key] for key in AGREEMENT_METRICS})
    labelled = [values for values in tensors.values() if "accuracy" in values]
    if labelled:  # the first classifier head stands for the model's accuracy
        result.update({key: labelled[0][key] for key in ACCURACY_METRICS})
    return result


def gate_result(
    result: ParityResult,
    thresholds: dict[str, float],
    tensor_thresholds: dict[str, dict[str, float]],
    against: str | None = None,
) -> list[GateResult]:
    """Gates on the whole output, then on each named tensor."""
    gates = evaluate_gates(result.metrics, thresholds, against=against)
    for tensor, tensor_gates in tensor_thresholds.items():
        gates += evaluate_gates(result.tensors.get(tensor, {}), tensor_gates, tensor, against)
    return gates
