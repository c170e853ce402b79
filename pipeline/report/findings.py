"""Rows of what explains an output beyond its gates: worst-quantized layers, int8 fallback, baseline deltas.

Plain strings from a report dict for the Markdown and HTML writers; knows no runtime or stage.
"""

from __future__ import annotations

from typing import Any

from pipeline.report.text import kib, number, stage_source

LAYER_COLUMNS = ["#", "tensor", "op", "RMSE / scale", "max |error|"]
FALLBACK_COLUMNS = ["float layers", "size KiB", "gates"]
BASELINE_COLUMNS = ["metric", "previous", "current", "delta", "result"]
DIAGNOSIS_COLUMNS = ["finding", "what was measured", "fix"]


def stage_details(output: dict[str, Any], key: str) -> Any:
    """The last stage's `details[key]` that has one (the stage nearest the artifact wins)."""
    for stage in reversed(output.get("stages") or []):
        value = (stage.get("details") or {}).get(key)
        if value is not None:
            return value
    return None


def layer_rows(output: dict[str, Any]) -> list[list[str]]:
    """The layers with the largest int8 error, worst first (tflite `debug: true` or `fallback: auto`)."""
    layers = stage_details(output, "layer_errors") or []
    return [
        [
            str(rank),
            short_tensor_name(str(layer.get("tensor_name", "?"))),
            str(layer.get("op_name", "?")),
            number(layer.get("rmse_over_scale")),
            number(layer.get("max_abs_error")),
        ]
        for rank, layer in enumerate(layers, start=1)
    ]


def short_tensor_name(name: str) -> str:
    """`conv2d_1/Relu (+3 fused)` for a fused op's `a;b;c;d` name; layer_errors.csv keeps the whole name."""
    parts = [part for part in name.split(";") if part]
    if len(parts) <= 1:
        return name
    return f"{parts[0]} (+{len(parts) - 1} fused)"


def fallback_rows(output: dict[str, Any]) -> list[list[str]]:
    steps = stage_details(output, "fallback_steps") or []
    return [
        [
            number(step.get("float_layers")),
            kib(step.get("size_bytes")),
            "pass" if step.get("passed") else "fail",
        ]
        for step in steps
    ]


def fallback_summary(output: dict[str, Any]) -> str:
    """One sentence: which layers stayed float and what that cost, or why nothing was kept."""
    steps = stage_details(output, "fallback_steps")
    if steps is None:
        return ""
    kept = stage_details(output, "float_layers") or []
    note = stage_details(output, "fallback_note")
    if note:
        return f"int8 fallback {note}."
    if not kept:
        passed = any(step.get("passed") for step in steps)
        return "Plain int8 passed its gates; no layer kept in float." if passed else "No fallback step passed."
    int8_size, final = stage_details(output, "size_bytes_int8"), steps[-1].get("size_bytes")
    latency = stage_details(output, "latency_ms_batch1") or {}
    cost = f"size {kib(int8_size)} → {kib(final)} KiB"
    if latency:
        cost += f", batch-1 latency {number(latency.get('int8'))} → {number(latency.get('fallback'))} ms"
    return f"Kept in float: {', '.join(kept)} ({cost})."


def baseline_rows(output: dict[str, Any]) -> list[list[str]]:
    rows = []
    for metric, entry in (output.get("baseline") or {}).items():
        if isinstance(entry, dict):
            result = "regressed" if entry.get("regressed") else "ok"
            previous, current, delta = (number(entry.get(k)) for k in ("previous", "current", "delta"))
            rows.append([metric, previous, current, delta, result])
    return rows


_SHOWN_ELSEWHERE = {
    "layer_errors",
    "fallback_steps",
    "float_layers",
    "latency_ms_batch1",
    "size_bytes_int8",
    "rescues",
}


def details_text(details: dict[str, Any]) -> str:
    """A stage's details as `key=value` pairs, less the findings that have tables of their own."""
    pairs = [f"{key}={value}" for key, value in details.items() if key not in _SHOWN_ELSEWHERE]
    return ", ".join(pairs) or "-"


STAGE_COLUMNS = ["stage", "seconds", "from", "details", "warnings"]


def stage_rows(output: dict[str, Any]) -> list[list[str]]:
    """One row per stage of an output: how long it took, where its artifact came from, its details and warnings."""
    return [
        [
            stage.get("label") or stage.get("kind", "?"),
            number(stage.get("seconds")),
            stage_source(stage),
            details_text(stage.get("details") or {}),
            "; ".join(str(w) for w in stage.get("warnings") or []) or "-",
        ]
        for stage in output.get("stages") or []
    ]


def baseline_line(report: dict[str, Any]) -> str:
    """`Compared with baseline OLD/report.json (recipe digits, 2026-…): 1 regression.`, or "" without one."""
    baseline = report.get("baseline")
    if not isinstance(baseline, dict):
        return ""
    count = int(baseline.get("regressions") or 0)
    started = f", {baseline['started']}" if baseline.get("started") else ""
    outcome = f"{count} regression{'s' if count != 1 else ''}" if count else "no regression"
    return (
        f"Compared with baseline {baseline.get('path')} (recipe {baseline.get('recipe') or '?'}{started}): {outcome}."
    )


def diagnosis_rows(output: dict[str, Any]) -> list[list[str]]:
    """Findings the run made beyond the gates (e.g. int8 kernels that saturate on this CPU), one row each."""
    return [
        [str(found.get("kind", "?")).replace("_", " "), str(found.get("message", "")), str(found.get("fix", "-"))]
        for found in output.get("findings") or []
    ]


def sections(output: dict[str, Any]) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(title, note, header, rows) of each finding this output has, for writers that render tables plainly."""
    found = []
    if diagnosis_rows(output):
        found.append(("Findings", "", DIAGNOSIS_COLUMNS, diagnosis_rows(output)))
    if baseline_rows(output):
        found.append(("Against the baseline", "", BASELINE_COLUMNS, baseline_rows(output)))
    if layer_rows(output):
        note = "RMSE in quantization steps; about 0.29 is plain rounding, far above loses information."
        found.append(("Layers with the largest quantization error", note, LAYER_COLUMNS, layer_rows(output)))
    if fallback_summary(output):
        found.append(("int8 fallback", fallback_summary(output), FALLBACK_COLUMNS, fallback_rows(output)))
    return found
