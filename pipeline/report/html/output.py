"""One output's section of report.html: facts, gates, plots, metrics, quantization findings, stages, errors.

Renders one output of a report dict; knows no runtime or stage. Text goes through `markup.e`.
"""

from __future__ import annotations

from typing import Any

from pipeline.report.findings import (
    BASELINE_COLUMNS,
    DIAGNOSIS_COLUMNS,
    FALLBACK_COLUMNS,
    LAYER_COLUMNS,
    STAGE_COLUMNS,
    baseline_rows,
    diagnosis_rows,
    fallback_rows,
    fallback_summary,
    layer_rows,
    stage_rows,
)
from pipeline.report.html import svg
from pipeline.report.html.markup import e, table, td
from pipeline.report.text import (
    COMPARISON_COLUMNS,
    FAIL_MARK,
    PASS_MARK,
    comparison_rows,
    first_text_line,
    gate_label,
    gates_of,
    kib,
    metric_table,
    nonfinite_of,
    nonfinite_text,
    number,
    relation,
    rescue_lines,
)


def section(index: int, output: dict[str, Any]) -> str:
    status = str(output.get("status", "?"))
    cls = "pass" if status == "passed" else "fail"
    parts = [
        f'<h2 id="output-{index}">{e(output.get("name", "?"))} <span class="{cls}">{e(status)}</span></h2>',
        _facts(output),
        _gates(output),
        _plots(output),
        _metrics(output),
        _diagnoses(output),
        _baseline(output),
        _layers(output),
        _fallback(output),
        _comparisons(output),
        _stages(output),
        _rescues(output),
        _warnings(output),
        _error(output),
    ]
    return "\n".join(part for part in parts if part)


def _comparisons(output: dict[str, Any]) -> str:
    rows = comparison_rows(output)
    if not rows:
        return ""
    cells = [[td(value, "num" if index > 1 else "") for index, value in enumerate(row)] for row in rows]
    return "<h3>Comparisons</h3>\n" + table(COMPARISON_COLUMNS, cells)


def _facts(output: dict[str, Any]) -> str:
    parity = output.get("parity") or {}
    rows = [
        ("format", output.get("format") or "-"),
        ("runtime", output.get("runtime") or "-"),
        ("artifact", output.get("artifact") or "-"),
        ("sha256", output.get("sha256") or "-"),
        ("size", f"{kib(output.get('size_bytes'))} KiB raw, {kib(output.get('gzip_bytes'))} KiB gzip"),
    ]
    if parity:
        rows.append(
            (
                "parity",
                f"against {parity.get('reference', '?')} on {number(parity.get('samples'))} "
                f"samples, {number(parity.get('nonfinite'))} non-finite values",
            )
        )
    return table(["fact", "value"], [[td(key), td(value)] for key, value in rows])


def _gates(output: dict[str, Any]) -> str:
    rows = []
    if nonfinite_of(output):
        rows.append(
            [
                td("finite outputs"),
                td(nonfinite_of(output), "num"),
                td("0", "num"),
                td(f"{FAIL_MARK} {nonfinite_text(output)}", "fail"),
            ]
        )
    for gate in gates_of(output):
        passed = bool(gate.get("passed"))
        result = f"{PASS_MARK} pass" if passed else f"{FAIL_MARK} fail: {relation(gate)}"
        if gate.get("note"):
            result += f" ({gate['note']})"
        rows.append(
            [
                td(gate_label(gate)),
                td(number(gate.get("value")), "num"),
                td(number(gate.get("threshold")), "num"),
                td(result, "pass" if passed else "fail"),
            ]
        )
    return "<h3>Gates</h3>\n" + table(["gate", "value", "threshold", "result"], rows) if rows else ""


def _metrics(output: dict[str, Any]) -> str:
    header, rows = metric_table(output)
    if not rows:
        return ""
    cells = [[td(row[0]), *(td(value, "num") for value in row[1:])] for row in rows]
    return "<h3>Metrics</h3>\n" + table(header, cells)


def _stages(output: dict[str, Any]) -> str:
    rows = [[td(value, "num" if index == 1 else "") for index, value in enumerate(row)] for row in stage_rows(output)]
    return "<h3>Stages</h3>\n" + table(STAGE_COLUMNS, rows) if rows else ""


def _rescues(output: dict[str, Any]) -> str:
    items = "".join(f"<li>{e(line)}</li>" for line in rescue_lines(output))
    return f"<h3>Rescues</h3>\n<ul>{items}</ul>" if items else ""


def _warnings(output: dict[str, Any]) -> str:
    items = "".join(f"<li>{e(warning)}</li>" for warning in output.get("warnings") or [])
    return f"<h3>Warnings</h3>\n<ul>{items}</ul>" if items else ""


def _error(output: dict[str, Any]) -> str:
    if not output.get("error"):
        return ""
    error = output["error"]
    return f'<h3>Error</h3>\n<p class="fail">{e(first_text_line(error))}</p>\n<pre>{e(error)}</pre>'


def _plots(output: dict[str, Any]) -> str:
    plots = (output.get("parity") or {}).get("plots") or {}
    charts = [chart for chart in (svg.histogram(plots), svg.scatter(plots)) if chart]
    if not charts:
        return ""
    left_out = plots.get("nonfinite_left_out")
    note = f'<p class="muted">{e(number(left_out))} non-finite values left out of the plots.</p>' if left_out else ""
    return "<h3>Errors</h3>\n" + f'<div class="charts">{"".join(charts)}</div>' + note


def _baseline(output: dict[str, Any]) -> str:
    rows = [[td(row[0]), *(td(cell, "num") for cell in row[1:4]), _result(row[4])] for row in baseline_rows(output)]
    return "<h3>Against the baseline</h3>\n" + table(BASELINE_COLUMNS, rows) if rows else ""


def _result(text: str) -> str:
    bad = text in {"regressed", "fail"}
    return td(f"{FAIL_MARK if bad else PASS_MARK} {text}", "fail" if bad else "pass")


def _diagnoses(output: dict[str, Any]) -> str:
    rows = [[td(cell) for cell in row] for row in diagnosis_rows(output)]
    return "<h3>Findings</h3>\n" + table(DIAGNOSIS_COLUMNS, rows) if rows else ""


def _layers(output: dict[str, Any]) -> str:
    rows = [
        [td(row[0], "num"), td(row[1]), td(row[2]), td(row[3], "num"), td(row[4], "num")] for row in layer_rows(output)
    ]
    if not rows:
        return ""
    note = '<p class="muted">RMSE in quantization steps; about 0.29 is plain rounding, far above loses information.</p>'
    return "<h3>Layers with the largest quantization error</h3>\n" + note + table(LAYER_COLUMNS, rows)


def _fallback(output: dict[str, Any]) -> str:
    summary = fallback_summary(output)
    if not summary:
        return ""
    rows = [[td(row[0], "num"), td(row[1], "num"), _result(row[2])] for row in fallback_rows(output)]
    return f"<h3>int8 fallback</h3>\n<p>{e(summary)}</p>\n" + table(FALLBACK_COLUMNS, rows)
