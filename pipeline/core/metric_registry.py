"""Every parity metric, declared once: its direction, what it applies to, its bounds, its baseline tolerance, whether
summary tables show it, and what it means. Parity computes them; gates, the recipe schema, the baseline check, the
reports and the docs read them from here. A metric parity computes that is missing here fails a test.

A leaf: the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["<=", ">="]
Applies = Literal["every output", "class scores", "class scores with labels"]


@dataclass(frozen=True)
class Metric:
    name: str
    direction: Direction  # a gate holds the value at or below (<=) or at or above (>=) its threshold
    meaning: str
    applies: Applies = "every output"
    low: float | None = None  # bounds of a threshold the recipe accepts
    high: float | None = None
    # How much worse than the baseline's a value may get: a fraction of it (errors scale with the outputs) or a
    # step (similarities, rates). None: not compared with a baseline.
    baseline: tuple[Literal["relative", "absolute"], float] | None = None
    table: bool = False  # a column of the summary tables (console, report.md, report.html, comparisons)
    gate: bool = True  # a recipe may gate it (an interval's other end informs, it does not gate)
    error: bool = False  # computed from the values' differences (parity.metrics), not from class decisions


_RELATIVE: tuple[Literal["relative", "absolute"], float] = ("relative", 0.10)
_STEP: tuple[Literal["relative", "absolute"], float] = ("absolute", 0.005)

METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("max_abs", "<=", "largest |output − reference| over every value", low=0, baseline=_RELATIVE,
               table=True, error=True),
        Metric("mean_abs", "<=", "mean |output − reference|", low=0, baseline=_RELATIVE, error=True),
        Metric("rmse", "<=", "root mean square of output − reference", low=0, baseline=_RELATIVE, error=True),
        Metric("nrmse", "<=", "rmse / the reference's standard deviation", low=0, baseline=_RELATIVE, error=True),
        Metric("p99_abs", "<=", "99th percentile of |error| (from above, within 2.4%)", low=0, baseline=_RELATIVE,
               error=True),
        Metric("cosine", ">=", "mean over samples of each sample's cosine (one value a sample: the correlation)",
               low=-1, high=1,
               baseline=_STEP, table=True, error=True),
        Metric("min_cosine", ">=", "the worst sample's cosine", low=-1, high=1, baseline=_STEP, error=True),
        Metric("snr_db", ">=", "signal-to-noise ratio: 10·log10(reference power / error power)",
               baseline=("absolute", 0.5), error=True),
        Metric("top1_agreement", ">=", "share of samples whose top class matches the reference's", "class scores",
               low=0, high=1, baseline=_STEP, table=True),
        Metric("top1_agreement_lower", ">=", "lower end of top1_agreement's exact 95% interval", "class scores",
               low=0, high=1, baseline=_STEP),
        Metric("top1_agreement_upper", ">=", "upper end of top1_agreement's exact 95% interval", "class scores",
               gate=False),
        Metric("accuracy", ">=", "share of samples whose top class is the label", "class scores with labels",
               low=0, high=1, baseline=_STEP, table=True),
        Metric("reference_accuracy", ">=", "the source model's accuracy on the same samples",
               "class scores with labels", gate=False),
        Metric("accuracy_drop", "<=", "reference_accuracy − accuracy", "class scores with labels", low=-1, high=1,
               baseline=_STEP),
        Metric("accuracy_drop_lower", "<=", "lower end of accuracy_drop's paired 95% interval",
               "class scores with labels", gate=False),
        Metric("accuracy_drop_upper", "<=", "upper end of accuracy_drop's paired 95% interval",
               "class scores with labels", low=-1, high=1, baseline=_STEP),
    )
}  # fmt: skip

GATE_OPS: dict[str, Direction] = {name: metric.direction for name, metric in METRICS.items() if metric.gate}
ERROR_METRICS = tuple(name for name, metric in METRICS.items() if metric.error)
TABLE_METRICS = tuple(name for name, metric in METRICS.items() if metric.table)
AGREEMENT_METRICS = tuple(name for name in METRICS if name.startswith("top1_agreement"))
ACCURACY_METRICS = tuple(name for name, metric in METRICS.items() if metric.applies == "class scores with labels")
