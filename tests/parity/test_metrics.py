"""Parity metrics and gates on arrays with known answers."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest

from pipeline.parity import evaluate_gates

from ..helpers import compare_arrays

_compare = partial(compare_arrays, batch=2)


def test_error_metrics_match_numpy() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(7, 10)).astype(np.float32)
    candidate = reference + rng.normal(scale=1e-3, size=reference.shape).astype(np.float32)
    result = _compare(reference, candidate)
    error = np.abs(candidate.astype(np.float64) - reference)
    assert result.metrics["max_abs"] == pytest.approx(error.max())
    assert result.metrics["mean_abs"] == pytest.approx(error.mean())
    assert result.metrics["rmse"] == pytest.approx(math.sqrt((error**2).mean()))
    expected_snr = 10 * math.log10((reference.astype(np.float64) ** 2).sum() / (error**2).sum())
    assert result.metrics["snr_db"] == pytest.approx(expected_snr)
    assert 0.99999 < result.metrics["cosine"] <= 1.0
    assert result.samples == 7


def test_top1_and_accuracy() -> None:
    reference = np.eye(4, dtype=np.float32)  # predicts 0, 1, 2, 3
    candidate = reference[[0, 1, 3, 3]]  # predicts 0, 1, 3, 3
    labels = np.array([0, 1, 2, 0])
    metrics = _compare(reference, candidate, labels).metrics
    assert metrics["top1_agreement"] == 0.75
    assert metrics["reference_accuracy"] == 0.75
    assert metrics["accuracy"] == 0.5
    assert metrics["accuracy_drop"] == pytest.approx(0.25)


def test_sign_flip_has_cosine_minus_one() -> None:
    reference = np.ones((3, 5), np.float32)
    assert _compare(reference, -reference).metrics["cosine"] == pytest.approx(-1.0)


def test_nonfinite_outputs_fail_whatever_the_gates() -> None:
    reference = np.ones((4, 3), np.float32)
    candidate = reference.copy()
    candidate[1, 2] = np.nan
    result = _compare(reference, candidate)
    result.gates = evaluate_gates(result.metrics, {"top1_agreement": 0.0})
    assert result.nonfinite == 1
    assert math.isnan(result.metrics["max_abs"])
    assert not result.passed
    assert result.to_dict()["metrics"]["max_abs"] == "nan"


def test_gate_directions_and_missing_metrics() -> None:
    metrics = {"max_abs": 0.02, "cosine": 0.995, "accuracy_drop": 0.01}
    gates = evaluate_gates(metrics, {"max_abs": 0.01, "cosine": 0.99, "accuracy_drop": 0.01, "top1_agreement": 0.9})
    verdicts = {gate.metric: gate.passed for gate in gates}
    assert verdicts == {"max_abs": False, "cosine": True, "accuracy_drop": True, "top1_agreement": False}
    missing = next(gate for gate in gates if gate.metric == "top1_agreement")
    assert missing.value is None and "not measurable" in missing.note


def test_regression_outputs_have_no_top1() -> None:
    reference = np.linspace(0, 1, 8, dtype=np.float32).reshape(8, 1)
    metrics = _compare(reference, reference).metrics
    assert "top1_agreement" not in metrics
    assert metrics["max_abs"] == 0.0 and metrics["snr_db"] == math.inf


def test_moments_of_the_reference_alone_give_its_spread_to_the_bit() -> None:
    # Outputs of several values a sample keep the reference side only (nrmse's scale): the same bits as the
    # paired sums, and a correlation asked of them is an error, not a made-up number.
    from pipeline.parity.metrics import Moments

    rng = np.random.default_rng(1)
    reference = rng.normal(loc=50.0, size=9000)
    paired, alone = Moments(), Moments()
    for start in range(0, len(reference), 2048):
        chunk = reference[start : start + 2048]
        paired.update(chunk.copy(), chunk * 1.01)
        alone.update(chunk.copy(), None)
    assert alone.reference_std() == paired.reference_std()
    assert alone.reference_std() == pytest.approx(reference.std(), rel=1e-12)
    with pytest.raises(ValueError, match="reference side only"):
        alone.correlation()
