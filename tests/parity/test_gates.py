"""Gate integrity (issue 12): verdicts that a NaN, a weak similarity or a small sample cannot fool.

Real arrays with known answers through the real accumulator, gates, stage defaults and report writers.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np
import pytest

from pipeline.parity import ParityAccumulator, ParityResult, evaluate_gates
from pipeline.recipe import Gates
from pipeline.report import html, markdown
from pipeline.report.text import summary
from pipeline.stages.onnx import OnnxOptions, OnnxStage
from pipeline.stages.tflite import TfliteOptions, TfliteStage

from ..helpers import compare_arrays

_compare = partial(compare_arrays, batch=8)


def _report(parity: ParityResult, status: str) -> dict[str, Any]:
    output = {"name": "int8", "status": status, "format": "tflite", "runtime": "litert", "parity": parity.to_dict()}
    return {"recipe": {"name": "integrity"}, "passed": status == "passed", "exit_code": 1, "outputs": [output]}


# --- 1. non-finite values on either side -------------------------------------------------------------


def test_nan_in_the_reference_fails_the_output_and_says_where() -> None:
    candidate = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    reference = candidate.copy()
    reference[1::2] = np.nan  # half the samples: max(x, nan) used to keep x, so max_abs read 0
    result = _compare(reference, candidate)
    result.gates = evaluate_gates(result.metrics, {"max_abs": 1e-4})
    assert not result.passed
    assert result.nonfinite == 96
    as_json = result.to_dict()
    assert as_json["nonfinite_by_side"] == {"reference": 96, "candidate": 0}
    assert as_json["nonfinite_where"] == [{"tensor": "y", "side": "reference", "count": 96, "first_sample": 1}]
    assert math.isnan(result.metrics["max_abs"])
    assert "'y': 96 non-finite values in the reference, first at sample 1" in result.nonfinite_text()


def test_nan_on_both_sides_counts_each_side() -> None:
    reference = np.ones((40, 4), np.float32)
    candidate = reference.copy()
    reference[30, 0] = np.inf
    candidate[[12, 13], 2] = np.nan
    result = _compare(reference, candidate)
    assert result.nonfinite == 3 and not result.passed
    assert result.to_dict()["nonfinite_by_side"] == {"reference": 1, "candidate": 2}
    where = {(entry["side"], entry["first_sample"]) for entry in result.to_dict()["nonfinite_where"]}
    assert where == {("reference", 30), ("candidate", 12)}


def test_reports_say_where_the_nonfinite_values_are() -> None:
    reference = np.zeros((16, 2), np.float32)
    reference[5:] = np.nan
    report = _report(_compare(reference, np.zeros((16, 2), np.float32)), "failed")
    expected = "'y': 22 non-finite values in the reference, first at sample 5"
    assert expected in summary(report)
    assert expected in markdown.render(report)
    assert expected.replace("'", "&#x27;") in html.render(report)


# --- 2. similarity that means something, and the tail -------------------------------------------------


def test_scores_against_a_constant_are_not_similar() -> None:
    scores = np.random.default_rng(0).uniform(0.45, 0.55, size=(1000, 1))
    constant = np.full_like(scores, 0.5)
    for reference, candidate in ((scores, constant), (constant, scores)):
        metrics = _compare(reference, candidate, batch=64).metrics
        assert metrics["cosine"] == 0.0  # centred: a constant carries nothing of the scores
        assert not evaluate_gates(metrics, {"cosine": 0.99})[0].passed
    assert _compare(scores, constant).metrics["nrmse"] == pytest.approx(1.0, abs=0.01)


def test_centred_cosine_of_a_score_is_pearson() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(3.0, 0.1, size=(500, 1))
    candidate = reference + rng.normal(0, 0.02, size=reference.shape)
    metrics = _compare(reference, candidate, batch=7).metrics
    assert metrics["cosine"] == pytest.approx(np.corrcoef(reference[:, 0], candidate[:, 0])[0, 1], rel=1e-9)
    error = candidate - reference
    assert metrics["nrmse"] == pytest.approx(np.sqrt((error**2).mean()) / reference.std(), rel=1e-9)


def test_tail_metrics_match_numpy() -> None:
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(700, 8))
    candidate = reference + rng.standard_t(2, size=reference.shape) * 1e-3  # heavy tails
    metrics = _compare(reference, candidate, batch=50).metrics
    error = np.abs(candidate - reference)
    exact = np.quantile(error, 0.99, method="inverted_cdf")
    assert exact <= metrics["p99_abs"] <= exact * 1.024  # never below, within one histogram bin
    rows = (reference * candidate).sum(1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(candidate, axis=1)
    assert metrics["min_cosine"] == pytest.approx(rows.min(), rel=1e-12)
    assert metrics["nrmse"] == pytest.approx(np.sqrt((error**2).mean()) / reference.std(), rel=1e-9)


def test_p99_of_identical_outputs_is_zero() -> None:
    reference = np.random.default_rng(3).normal(size=(20, 4))
    assert _compare(reference, reference).metrics["p99_abs"] == 0.0


QUANTIZED_DEFAULTS = [
    TfliteStage.default_gates(TfliteOptions(quantize="dynamic")),
    TfliteStage.default_gates(TfliteOptions(quantize="int8")),
    TfliteStage.default_gates(TfliteOptions(quantize="int16x8")),
    OnnxStage.default_gates(OnnxOptions(quantize="dynamic")),
    OnnxStage.default_gates(OnnxOptions(quantize="static")),
]


@pytest.mark.parametrize("defaults", QUANTIZED_DEFAULTS)
def test_five_sign_flipped_samples_in_a_thousand_fail_the_defaults(defaults: dict[str, float]) -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(size=(1000, 10)).astype(np.float32)
    candidate = reference.copy()
    candidate[rng.choice(1000, 5, replace=False)] *= -1
    metrics = _compare(reference, candidate, batch=64).metrics
    assert metrics["cosine"] == pytest.approx(0.99)  # the mean cosine alone lets them through
    gates = evaluate_gates(metrics, defaults)
    assert not all(gate.passed for gate in gates), [(g.metric, g.value, g.threshold) for g in gates]


@pytest.mark.parametrize("defaults", QUANTIZED_DEFAULTS)
def test_defaults_still_pass_quantization_noise(defaults: dict[str, float]) -> None:
    rng = np.random.default_rng(5)
    reference = rng.normal(size=(1000, 10)).astype(np.float32)
    step = np.abs(reference).max() / 127  # int8 rounding: half a step at most
    candidate = np.round(reference / step) * step
    gates = evaluate_gates(_compare(reference, candidate, batch=64).metrics, defaults)
    assert all(gate.passed for gate in gates), [(g.metric, g.value, g.threshold) for g in gates]


def test_recipe_takes_the_new_gates_with_their_directions() -> None:
    gates = Gates.model_validate(
        {
            "nrmse": 0.1,
            "p99_abs": 0.01,
            "min_cosine": 0.9,
            "accuracy_drop_upper": 0.03,
            "top1_agreement_lower": 0.95,
            "score": {"nrmse": 0.2},
        }
    )
    assert gates.thresholds() == {
        "nrmse": 0.1,
        "p99_abs": 0.01,
        "min_cosine": 0.9,
        "accuracy_drop_upper": 0.03,
        "top1_agreement_lower": 0.95,
    }
    assert gates.tensor_thresholds() == {"score": {"nrmse": 0.2}}
    metrics = {"nrmse": 0.05, "p99_abs": 0.02, "min_cosine": 0.95, "accuracy_drop_upper": 0.04}
    verdicts = {g.metric: g.passed for g in evaluate_gates(metrics, gates.thresholds())}
    assert verdicts == {
        "nrmse": True,
        "p99_abs": False,
        "min_cosine": True,
        "accuracy_drop_upper": False,
        "top1_agreement_lower": False,  # not measured: fails
    }


# --- 3. statistics: how sure is a verdict on a few hundred samples ------------------------------------


def _classifier(samples: int, wrong_in_candidate: int, right_in_candidate: int, disagree: int):
    """Logits for `samples` samples: the reference is right on every sample but the first tenth;
    the candidate changes `wrong_in_candidate` right answers to wrong, `right_in_candidate` wrong answers to
    right, and `disagree` more of the reference's wrong answers to another wrong class."""
    labels = np.arange(samples) % 10
    predicted = labels.copy()
    tenth = samples // 10
    predicted[:tenth] = (labels[:tenth] + 1) % 10
    candidate = predicted.copy()
    candidate[tenth : tenth + wrong_in_candidate] = (labels[tenth : tenth + wrong_in_candidate] + 3) % 10
    candidate[:right_in_candidate] = labels[:right_in_candidate]
    flipped = slice(right_in_candidate, right_in_candidate + disagree)
    candidate[flipped] = (labels[flipped] + 2) % 10
    eye = np.eye(10, dtype=np.float32)
    return eye[predicted], eye[candidate], labels


def test_intervals_on_360_samples() -> None:
    reference, candidate, labels = _classifier(360, wrong_in_candidate=4, right_in_candidate=1, disagree=0)
    metrics = _compare(reference, candidate, labels, batch=32).metrics
    assert metrics["accuracy_drop"] == pytest.approx(3 / 360)
    assert metrics["accuracy_drop_lower"] < 3 / 360 < metrics["accuracy_drop_upper"]
    assert 0.02 < metrics["accuracy_drop_upper"] < 0.04  # about 1% standard error on 360 samples
    assert metrics["top1_agreement"] == pytest.approx(355 / 360)
    assert metrics["top1_agreement_lower"] < 355 / 360 < metrics["top1_agreement_upper"] < 1


def test_no_discordant_pair_still_leaves_an_interval() -> None:
    reference, candidate, labels = _classifier(360, 0, 0, 0)
    metrics = _compare(reference, candidate, labels).metrics
    assert metrics["accuracy_drop"] == 0.0 and metrics["top1_agreement"] == 1.0
    assert metrics["top1_agreement_upper"] == 1.0
    assert metrics["top1_agreement_lower"] == pytest.approx(0.025 ** (1 / 360))  # exact for k = n
    assert -0.02 < metrics["accuracy_drop_lower"] < 0 < metrics["accuracy_drop_upper"] < 0.02


def test_clopper_pearson_matches_the_beta_quantiles() -> None:
    stats = pytest.importorskip("scipy.stats")
    reference, candidate, labels = _classifier(360, 0, 0, disagree=7)
    metrics = _compare(reference, candidate, labels).metrics
    agree = 353
    assert metrics["top1_agreement_lower"] == pytest.approx(stats.beta.ppf(0.025, agree, 360 - agree + 1), abs=1e-9)
    assert metrics["top1_agreement_upper"] == pytest.approx(stats.beta.ppf(0.975, agree + 1, 360 - agree), abs=1e-9)


def test_a_verdict_inside_the_interval_says_it_cannot_decide() -> None:
    reference, candidate, labels = _classifier(360, wrong_in_candidate=4, right_in_candidate=1, disagree=0)
    result = _compare(reference, candidate, labels)
    result.gates = evaluate_gates(
        result.metrics, {"accuracy_drop": 0.02, "top1_agreement": 0.98, "accuracy_drop_upper": 0.02}
    )
    drop, agreement, upper = result.gates
    assert drop.passed and "not enough samples to decide" in (drop.note or "")
    assert agreement.passed and "not enough samples to decide" in (agreement.note or "")
    assert not upper.passed and upper.note is None
    report = _report(result, "failed")
    assert "not enough samples to decide" in summary(report)
    assert "not enough samples to decide" in markdown.render(report)
    assert "not enough samples to decide" in html.render(report)


def test_enough_samples_decide_without_a_note() -> None:
    reference, candidate, labels = _classifier(20000, wrong_in_candidate=20, right_in_candidate=10, disagree=0)
    result = _compare(reference, candidate, labels, batch=4096)
    gates = evaluate_gates(result.metrics, {"accuracy_drop": 0.02, "top1_agreement": 0.98})
    assert all(gate.passed and gate.note is None for gate in gates)
    assert result.metrics["accuracy_drop_upper"] < 0.002


def test_agreement_required_on_every_sample_is_no_statistical_claim() -> None:
    reference, candidate, labels = _classifier(360, 0, 0, 0)
    [gate] = evaluate_gates(_compare(reference, candidate, labels).metrics, {"top1_agreement": 1.0})
    assert gate.passed and gate.note is None


def test_whole_output_takes_the_worst_tensor_and_pools_the_errors() -> None:
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(300, 10))
    score = rng.normal(size=(300, 1))
    accumulator = ParityAccumulator("source", ["logits", "score"])
    noisy_logits = logits + rng.normal(0, 1e-3, logits.shape)
    accumulator.update({"logits": logits, "score": score}, {"logits": noisy_logits, "score": score * 0.5 + 0.1})
    result = accumulator.result()
    overall, tensors = result.metrics, result.tensors
    assert overall["nrmse"] == max(tensors["logits"]["nrmse"], tensors["score"]["nrmse"]) == tensors["score"]["nrmse"]
    assert overall["min_cosine"] == min(tensors["logits"]["min_cosine"], tensors["score"]["min_cosine"])
    assert tensors["score"]["cosine"] == pytest.approx(1.0)  # a rescaled score still correlates fully
    every = np.concatenate([np.abs(noisy_logits - logits).ravel(), np.abs(score * 0.5 + 0.1 - score).ravel()])
    exact = np.quantile(every, 0.99, method="inverted_cdf")
    assert exact <= overall["p99_abs"] <= exact * 1.024
    assert overall["top1_agreement_lower"] == tensors["logits"]["top1_agreement_lower"]


# --- 4. what a classifier is ------------------------------------------------------------------------


def test_a_tie_counts_as_agreement_only_when_both_sides_tie() -> None:
    reference = np.zeros((4, 6), np.float32)
    reference[[0, 1, 2], 2] = 1.0  # top class 2, no tie
    reference[3, [2, 5]] = 1.0  # a tie of 2 and 5
    candidate = np.zeros((4, 6), np.float32)
    candidate[0, 2] = 0.5  # agrees
    candidate[1, [2, 5]] = 0.5  # ties where the reference does not: argmax would pick 2 by index order
    candidate[2, [0, 2]] = 0.5  # ties again, the reference's class last
    candidate[3, [2, 5]] = 0.25  # ties exactly where the reference ties
    labels = np.array([2, 2, 2, 2])
    metrics = _compare(reference, candidate, labels).metrics
    assert metrics["top1_agreement"] == 0.5
    assert metrics["accuracy"] == 0.25  # a tie that holds the label is no right answer either
    assert metrics["reference_accuracy"] == 0.75


def test_labels_go_to_the_head_that_holds_the_classes() -> None:
    rng = np.random.default_rng(7)
    labels = np.arange(200) % 10
    logits = np.eye(10)[labels] + rng.normal(0, 0.1, (200, 10))
    boxes = rng.normal(size=(200, 4))
    accumulator = ParityAccumulator("source", ["boxes", "logits"])  # the boxes come first
    for start in range(0, 200, 16):
        part = slice(start, start + 16)
        batch = {"boxes": boxes[part], "logits": logits[part]}
        accumulator.update(batch, batch, labels[part])
    result = accumulator.result()
    assert "accuracy" not in result.tensors["boxes"]  # labels 0..9 are no classes of a 4-column output
    assert result.metrics["accuracy"] == result.tensors["logits"]["accuracy"] == pytest.approx(1.0)
