"""The metric registry is the one list of metrics: everything parity computes is declared there, and gates, the
recipe schema, the baseline check and the reports take theirs from it."""

from __future__ import annotations

import numpy as np

from pipeline.core.metric_registry import GATE_OPS, METRICS, TABLE_METRICS
from pipeline.parity.result import ParityAccumulator
from pipeline.recipe import MetricGates
from pipeline.report.html.page import METRIC_ORDER
from pipeline.run.baseline import ABSOLUTE, RELATIVE


def test_every_metric_parity_computes_is_declared() -> None:
    rng = np.random.default_rng(0)
    accumulator = ParityAccumulator("source", ["scores", "boxes"])
    for _ in range(3):
        scores, boxes = rng.random((16, 5), np.float32), rng.random((16, 4), np.float32)
        candidate = {"scores": scores + rng.normal(0, 1e-2, scores.shape), "boxes": boxes * 1.01}
        accumulator.update({"scores": scores, "boxes": boxes}, candidate, rng.integers(0, 5, 16))
    result = accumulator.result()
    computed = set(result.metrics) | {name for metrics in result.tensors.values() for name in metrics}
    assert {"top1_agreement", "accuracy_drop_upper", "snr_db"} <= computed  # labels and classes were there
    assert computed <= set(METRICS), computed - set(METRICS)


def test_every_consumer_reads_the_registry() -> None:
    gated = {name for name, metric in METRICS.items() if metric.gate}
    assert set(GATE_OPS) == gated == set(MetricGates.model_fields)
    # a gateable metric without a baseline tolerance would fail on any change at all
    assert set(RELATIVE) | set(ABSOLUTE) == gated and not set(RELATIVE) & set(ABSOLUTE)
    assert set(TABLE_METRICS) <= set(METRIC_ORDER) <= set(METRICS)
    for name, field in MetricGates.model_fields.items():
        assert field.description.startswith(f"{METRICS[name].direction} "), name
