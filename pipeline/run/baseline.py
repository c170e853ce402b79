"""Regressions against an earlier report.json (the last release's): a metric worse beyond tolerance fails its output.

Reads the earlier report.json and adds gates to this run's output results before they are written; knows no
runtime, stage or recipe.

Tolerances by default: errors (`max_abs`, `mean_abs`, `rmse`, `nrmse`, `p99_abs`) may grow by 10% of their previous
value; fractions (`cosine`, `min_cosine`, `top1_agreement`, `accuracy`, `accuracy_drop` and the interval ends
`top1_agreement_lower`, `accuracy_drop_upper`) may worsen by 0.005;
`snr_db` may drop by 0.5 dB (about 12% more noise power). A `tolerance` given replaces all of them, as a
fraction for the first group and as an absolute step for the others; 0 flags any worsening.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pipeline.core.metric_registry import METRICS
from pipeline.parity import GATE_OPS, GateResult
from pipeline.report.json import read_report
from pipeline.report.text import as_float, number
from pipeline.run.result import OutputResult

# How much worse than the baseline a metric may get, from the registry: errors by a fraction, the rest by a step.
RELATIVE = {name: m.baseline[1] for name, m in METRICS.items() if m.baseline and m.baseline[0] == "relative"}
ABSOLUTE = {name: m.baseline[1] for name, m in METRICS.items() if m.baseline and m.baseline[0] == "absolute"}
_ROUNDING = 1e-12  # a previous error of exactly 0 must not fail on float noise


def apply_baseline(results: list[OutputResult], baseline_path: Path, tolerance: float | None = None) -> dict[str, Any]:
    """Hold each output found in both against the earlier report: a metric that regressed is a failed gate of that
    output (`against: baseline`). Returns the report's `baseline` section."""
    previous = read_baseline(Path(baseline_path))
    before = {o.get("name"): o for o in previous["outputs"] if isinstance(o, dict)}
    regressions = 0
    for result in results:
        old = before.get(result.name)
        if old is not None and result.parity is not None:
            regressions += _compare_output(result, old, tolerance)
    return {
        "path": str(baseline_path),
        "recipe": (previous.get("recipe") or {}).get("name"),
        "started": previous.get("started"),
        "source_sha256": (previous.get("source") or {}).get("sha256"),
        "tolerance": tolerances(tolerance),
        "regressions": regressions,
    }


def tolerances(tolerance: float | None = None) -> dict[str, str]:
    """Each metric's allowance in words, as the report records it."""
    relative = {m: f"+{(tolerance if tolerance is not None else t):.4g} relative" for m, t in RELATIVE.items()}
    absolute = {m: f"{(tolerance if tolerance is not None else t):.4g} absolute" for m, t in ABSOLUTE.items()}
    return relative | absolute


def limit_of(metric: str, previous: float, tolerance: float | None = None) -> float:
    """The worst value still accepted: past it, the metric regressed."""
    if metric in RELATIVE:
        fraction = RELATIVE[metric] if tolerance is None else tolerance
        return previous + abs(previous) * fraction + _ROUNDING
    step = ABSOLUTE.get(metric, 0.0) if tolerance is None else tolerance
    return previous + step if GATE_OPS[metric] == "<=" else previous - step


def _compare_output(result: OutputResult, old: dict[str, Any], tolerance: float | None) -> int:
    assert result.parity is not None
    now = result.parity.metrics
    then = (old.get("parity") or {}).get("metrics") or {}
    entries, regressed = {}, 0
    for metric in [m for m in now if m in then and m in GATE_OPS]:
        previous, current = as_float(then[metric]), as_float(now[metric])
        if previous is None or current is None or not math.isfinite(previous):
            continue  # nothing to hold a non-finite or absent previous value against
        limit = limit_of(metric, previous, tolerance)
        worse = not math.isfinite(current) or (current > limit if GATE_OPS[metric] == "<=" else current < limit)
        entries[metric] = {
            "previous": previous,
            "current": current if math.isfinite(current) else str(current),
            "delta": current - previous if math.isfinite(current) else None,
            "limit": limit,
            "regressed": worse,
        }
        if worse:
            regressed += 1
            note = f"regressed from {number(previous)}"
            result.add_gate(GateResult(metric, GATE_OPS[metric], limit, current, False, note, against="baseline"))
    result.baseline = entries
    return regressed


def read_baseline(path: Path) -> dict[str, Any]:
    """The earlier report, or EdgeportError (exit 2) naming the file; cheap enough to call before a run."""
    return read_report(path, "--baseline")
