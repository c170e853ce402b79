"""Parity metrics accumulated batch by batch, and gates over them.

Takes plain arrays keyed by tensor name; never imports a runtime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Direction of each gate: an error must stay at or below its threshold, a similarity at or above.
GATE_OPS: dict[str, str] = {
    "max_abs": "<=",
    "mean_abs": "<=",
    "rmse": "<=",
    "accuracy_drop": "<=",
    "cosine": ">=",
    "snr_db": ">=",
    "top1_agreement": ">=",
    "accuracy": ">=",
}


@dataclass
class _TensorStats:
    """Running sums for one output tensor; memory does not grow with the sample count."""

    count: int = 0
    samples: int = 0
    nonfinite: int = 0
    max_abs: float = 0.0
    sum_abs: float = 0.0
    sum_sq_err: float = 0.0
    sum_sq_ref: float = 0.0
    sum_cosine: float = 0.0
    dot: float = 0.0  # over all values, for outputs with one value a sample
    sum_sq_out: float = 0.0
    classes: bool = False
    top1_agree: int = 0
    correct: int = 0
    reference_correct: int = 0
    labelled: int = 0

    def update(self, reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None) -> None:
        ref = reference.astype(np.float64).reshape(len(reference), -1)
        out = candidate.astype(np.float64).reshape(len(candidate), -1)
        finite = np.isfinite(out)
        self.nonfinite += int((~finite).sum())
        error = np.abs(out - ref)
        self.count += ref.size
        self.samples += len(ref)
        self.max_abs = max(self.max_abs, float(error.max(initial=0.0)))
        self.sum_abs += float(error.sum())
        self.sum_sq_err += float((error**2).sum())
        self.sum_sq_ref += float((ref**2).sum())
        self.sum_cosine += float(_row_cosines(ref, out).sum())
        self.dot += float((ref * out).sum())
        self.sum_sq_out += float((out**2).sum())
        self.classes = reference.ndim == 2 and reference.shape[1] > 1
        if self.classes:
            ref_top, out_top = ref.argmax(axis=1), out.argmax(axis=1)
            self.top1_agree += int((ref_top == out_top).sum())
            if labels is not None:
                self.correct += int((out_top == labels).sum())
                self.reference_correct += int((ref_top == labels).sum())
                self.labelled += len(labels)

    def _cosine(self) -> float:
        """Mean of per-sample cosines; for one value a sample (a score) that is only sign agreement,
        so there the cosine is taken over the whole column of values."""
        if self.count > self.samples:
            return self.sum_cosine / self.samples
        norms = math.sqrt(self.sum_sq_ref * self.sum_sq_out)
        if norms == 0:
            return 1.0 if self.sum_sq_ref == self.sum_sq_out == 0 else 0.0
        return self.dot / norms

    def metrics(self) -> dict[str, float]:
        if self.nonfinite:
            nan = float("nan")
            result = {"max_abs": nan, "mean_abs": nan, "rmse": nan, "cosine": nan, "snr_db": nan}
        else:
            result = {
                "max_abs": self.max_abs,
                "mean_abs": self.sum_abs / self.count,
                "rmse": math.sqrt(self.sum_sq_err / self.count),
                "cosine": self._cosine(),
                "snr_db": _snr_db(self.sum_sq_ref, self.sum_sq_err),
            }
        if self.classes:
            result["top1_agreement"] = self.top1_agree / self.samples
        if self.labelled:
            result["accuracy"] = self.correct / self.labelled
            result["reference_accuracy"] = self.reference_correct / self.labelled
            result["accuracy_drop"] = result["reference_accuracy"] - result["accuracy"]
        return result


def _row_cosines(ref: np.ndarray, out: np.ndarray) -> np.ndarray:
    ref_sq, out_sq = np.einsum("ij,ij->i", ref, ref), np.einsum("ij,ij->i", out, out)
    norms = np.sqrt(ref_sq * out_sq)
    dots = np.einsum("ij,ij->i", ref, out)
    both_zero = (ref_sq == 0) & (out_sq == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        cosines = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return np.where(both_zero, 1.0, cosines)


def _snr_db(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


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
            "value": _json_number(self.value),
            "passed": self.passed,
            "note": self.note,
        }


@dataclass
class ParityResult:
    reference: str
    candidate: str
    samples: int
    metrics: dict[str, float]
    tensors: dict[str, dict[str, float]]
    nonfinite: int
    gates: list[GateResult] = field(default_factory=list)
    plots: dict[str, Any] | None = None  # pipeline.plotdata's bounded sample and histogram, finite by construction

    @property
    def passed(self) -> bool:
        return self.nonfinite == 0 and all(gate.passed for gate in self.gates)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "samples": self.samples,
            "nonfinite": self.nonfinite,
            "metrics": {name: _json_number(value) for name, value in self.metrics.items()},
            "tensors": {name: {k: _json_number(v) for k, v in values.items()} for name, values in self.tensors.items()},
            "gates": [gate.to_dict() for gate in self.gates],
            "plots": self.plots,
        }


class ParityAccumulator:
    """Compare a candidate's outputs with a reference's, batch by batch, tensor by tensor."""

    def __init__(self, reference: str, tensor_names: list[str], candidate: str = "output") -> None:
        self.reference, self.candidate = reference, candidate
        self.stats = {name: _TensorStats() for name in tensor_names}

    def update(
        self, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], labels: np.ndarray | None = None
    ) -> None:
        for name, stats in self.stats.items():
            ref, out = reference[name], candidate[name]
            if ref.shape != out.shape:
                out = _squeeze_to(out, ref.shape, name)
            stats.update(ref, out, labels)

    def result(self) -> ParityResult:
        tensors = {name: stats.metrics() for name, stats in self.stats.items()}
        samples = next(iter(self.stats.values())).samples if self.stats else 0
        nonfinite = sum(stats.nonfinite for stats in self.stats.values())
        return ParityResult(self.reference, self.candidate, samples, _overall(self.stats, tensors), tensors, nonfinite)


def _squeeze_to(array: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    if array.size != math.prod(shape):
        raise ValueError(f"output {name!r}: shape {list(array.shape)} does not match the reference {list(shape)}")
    return array.reshape(shape)


def _overall(stats: dict[str, _TensorStats], tensors: dict[str, dict[str, float]]) -> dict[str, float]:
    """Whole-output metrics: worst case over tensors for similarities, pooled sums for errors."""
    if len(tensors) == 1:
        return dict(next(iter(tensors.values())))
    pooled = _TensorStats()
    for one in stats.values():
        pooled.count += one.count
        pooled.samples = one.samples
        pooled.nonfinite += one.nonfinite
        pooled.max_abs = max(pooled.max_abs, one.max_abs)
        pooled.sum_abs += one.sum_abs
        pooled.sum_sq_err += one.sum_sq_err
        pooled.sum_sq_ref += one.sum_sq_ref
    result = pooled.metrics() if pooled.count else {}
    result.pop("cosine", None)
    result["cosine"] = min(values.get("cosine", math.nan) for values in tensors.values())
    for metric in ("top1_agreement", "accuracy", "reference_accuracy", "accuracy_drop"):
        values = [one[metric] for one in tensors.values() if metric in one]
        if values:  # the first classifier head stands for the model's accuracy
            result[metric] = values[0] if metric != "top1_agreement" else min(values)
    return result


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
        results.append(GateResult(metric, op, threshold, value, passed, None, tensor, against))
    return results


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


def _json_number(value: float | None) -> float | str | None:
    """JSON has no NaN or infinity: write them as strings a reader will notice."""
    if value is None or math.isfinite(value):
        return value
    return str(value)
