"""Plain-text forms of report values, and the end-of-run summary that people read in CI logs.

Renders a report dict; knows no runtime or stage. The other writers borrow its number and gate forms. A name or
message from the model or a report is set in a line as `one_line` (core.text): a newline in a tensor name must not
start a line that reads as edgeport's (`PASSED: 7/7 outputs`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pipeline.core.cpu import describe_cpu
from pipeline.core.metric_registry import TABLE_METRICS
from pipeline.core.text import one_line
from pipeline.parity import nonfinite_message

PASS_MARK, FAIL_MARK = "✓", "✗"
_BROKEN = {"<=": ">", ">=": "<"}
_NUMERIC = {"size KiB", "gzip KiB", *TABLE_METRICS}


def number(value: Any, digits: int = 4) -> str:
    """`:.4g` for floats, ints as they are, strings ("nan", "inf") verbatim, "-" where absent."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        text = f"{value:.{digits}g}"
        # A cosine of 0.99999 must not read as a perfect 1: show digits until it differs.
        while float(text) != value and text in {"1", "-1"} and digits < 9:
            digits += 1
            text = f"{value:.{digits}g}"
        return text
    return one_line(value)  # a string from a report read back: one line, whatever it holds


def as_float(value: Any) -> float | None:
    """A number from a report value: floats, ints and the strings "nan"/"inf"; None otherwise."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def kib(size: Any) -> str:
    value = as_float(size)
    return "-" if value is None else f"{value / 1024:.1f}"


def first_text_line(text: Any) -> str:
    """The first line of a report's stored text, verbatim but for control characters: `errors.first_line` digs the
    cause out of a live exception instead, and would reword what the report already holds."""
    lines = str(text or "").strip().splitlines()
    return one_line(lines[0]) if lines else ""


def shape_text(spec: Any) -> str:
    """`[360, 8, 8, 1] float32` from the report's `[[360, 8, 8, 1], "float32"]`."""
    if isinstance(spec, list | tuple) and len(spec) == 2:
        return f"{list(spec[0]) if isinstance(spec[0], list | tuple) else spec[0]} {spec[1]}"
    return str(spec)


def relation(gate: dict[str, Any]) -> str:
    """`0.0123 > 1e-05`: the value against the threshold with the sign that holds between them."""
    op, threshold = gate.get("op", "?"), gate.get("threshold")
    value = as_float(gate.get("value"))
    if value is None:
        return f"not measured, needs {op} {number(threshold)}"
    if math.isnan(value):
        return f"nan, needs {op} {number(threshold)}"
    sign = op if gate.get("passed") else _BROKEN.get(op, f"not {op}")
    shown, limit = _distinct(gate.get("value"), threshold)
    return f"{shown} {sign} {limit}"


def _distinct(value: Any, threshold: Any) -> tuple[str, str]:
    """Enough digits that a value just past its threshold does not print equal to it."""
    for digits in (4, 6, 8, 12, 17):
        shown, limit = number(value, digits), number(threshold, digits)
        if shown != limit or as_float(value) == as_float(threshold):
            return shown, limit
    return shown, limit


def gate_verdict(gate: dict[str, Any]) -> str:
    """`max_abs = 0.0123 > 1e-05`: a gate's outcome in one phrase."""
    sep = " " if as_float(gate.get("value")) is None else " = "
    return f"{gate_name(gate)}{sep}{relation(gate)}"


def gate_name(gate: dict[str, Any]) -> str:
    """`max_abs`, `boxes.max_abs` for a per-tensor gate, with `[litert, none delegate]` for another runtime."""
    name = f"{gate['tensor']}.{gate.get('metric', '?')}" if gate.get("tensor") else str(gate.get("metric", "?"))
    return one_line(f"{name} [{gate['against']}]" if gate.get("against") else name)


def gate_label(gate: dict[str, Any]) -> str:
    """`boxes.max_abs [baseline] <= 0.0001`: what a gate checks, as every report's gate table names it."""
    return f"{gate_name(gate)} {gate.get('op')} {number(gate.get('threshold'))}"


def gates_of(output: dict[str, Any]) -> list[dict[str, Any]]:
    """Every gate of an output: its parity's, then those of gated comparisons (another delegate)."""
    gates = list((output.get("parity") or {}).get("gates") or [])
    for comparison in output.get("comparisons") or []:
        gates += list(comparison.get("gates") or [])
    return gates


COMPARISON_COLUMNS = ["candidate", "reference", "samples", *TABLE_METRICS]


def comparison_rows(output: dict[str, Any]) -> list[list[str]]:
    """The comparisons that explain an output's parity: another delegate, the model before conversion."""
    rows = []
    for comparison in output.get("comparisons") or []:
        metrics = comparison.get("metrics") or {}
        rows.append(
            [
                one_line(comparison.get("candidate", "?")),
                one_line(comparison.get("reference", "?")),
                number(comparison.get("samples")),
                *(number(metrics.get(name)) for name in COMPARISON_COLUMNS[3:]),
            ]
        )
    return rows


def metric_table(output: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of an output's parity metrics: overall, and per tensor when it has more than one."""
    parity = output.get("parity") or {}
    overall, tensors = parity.get("metrics") or {}, parity.get("tensors") or {}
    if not overall:
        return [], []
    shown = tensors if len(tensors) > 1 else {}
    names = list(overall) + [m for values in shown.values() for m in values if m not in overall]
    rows = [[name, number(overall.get(name)), *(number(v.get(name)) for v in shown.values())] for name in names]
    return ["metric", "overall", *shown], rows


def environment_rows(environment: dict[str, Any]) -> list[list[str]]:
    """python, platform, the CPU (int8 results depend on its instruction set), then package versions."""
    rows = [["python", str(environment.get("python", "-"))], ["platform", str(environment.get("platform", "-"))]]
    cpu = environment.get("cpu")
    if cpu:
        rows.append(["cpu", describe_cpu(cpu)])
    rows += [[one_line(name), one_line(version)] for name, version in (environment.get("packages") or {}).items()]
    return rows


DATA_COLUMNS = ["role", "origin", "samples", "labels", "inputs"]


def data_rows(data: dict[str, Any]) -> list[list[str]]:
    """One row per data section of a report: where it came from and what it fed the model."""
    rows = []
    for role, info in data.items():
        if isinstance(info, dict):
            inputs = "; ".join(f"{name} {shape_text(spec)}" for name, spec in (info.get("inputs") or {}).items())
            rows.append(
                [
                    role,
                    str(info.get("origin", "-")),
                    number(info.get("samples")),
                    number(info.get("labels")),
                    inputs or "-",
                ]
            )
    return rows


def stage_source(stage: dict[str, Any]) -> str:
    """Where a stage's artifact came from in this run: built, shared with another output, or the cache."""
    if stage.get("reused"):
        return "shared in this run"
    if stage.get("cache") == "hit":
        built = stage.get("built_seconds")
        return f"cache (built in {number(built)} s)" if built is not None else "cache"
    return "built"


def nonfinite_of(output: dict[str, Any]) -> int:
    return int(as_float((output.get("parity") or {}).get("nonfinite")) or 0)


def nonfinite_text(output: dict[str, Any]) -> str:
    """Which tensor, which side (reference or candidate), how many and from which sample: where to look."""
    parity = output.get("parity") or {}
    return nonfinite_message(list(parity.get("nonfinite_where") or []), nonfinite_of(output))


def failing(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [output for output in report.get("outputs") or [] if output.get("status") != "passed"]


def summary(report: dict[str, Any]) -> str:
    outputs = list(report.get("outputs") or [])
    recipe = (report.get("recipe") or {}).get("name", "?")
    header = f"edgeport {one_line(recipe)}: {len(outputs)} outputs in {number(as_float(report.get('seconds')))} s"
    warnings = [f"warning: {one_line(warning)}" for warning in report.get("warnings") or []]
    lines = [header, "", *_table(outputs), "", *_checks(outputs), "", *warnings, final_line(report)]
    return "\n".join(map(one_line, lines)) + "\n"  # each line one, whatever field of a report read back it holds


def _table(outputs: Sequence[dict[str, Any]]) -> list[str]:
    columns = ["output", "status", "format", "size KiB", "gzip KiB", *TABLE_METRICS]
    rows = [[str(column) for column in columns], *(_row(output) for output in outputs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = [_line(row, columns, widths) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def _row(output: dict[str, Any]) -> list[str]:
    metrics = (output.get("parity") or {}).get("metrics") or {}
    return [
        one_line(output.get("name", "?")),
        one_line(output.get("status", "?")),
        one_line(output.get("format") or "-"),
        kib(output.get("size_bytes")),
        kib(output.get("gzip_bytes")),
        *(number(metrics.get(metric)) for metric in TABLE_METRICS),
    ]


def _line(row: list[str], columns: list[str], widths: list[int]) -> str:
    cells = [
        cell.rjust(width) if column in _NUMERIC else cell.ljust(width)
        for cell, column, width in zip(row, columns, widths, strict=True)
    ]
    return "  ".join(cells).rstrip()


def rescue_lines(output: dict[str, Any]) -> list[str]:
    """`fixed_shapes: converted at fixed input shapes x [1, 20, 8] (after: Lowering tensor list ops is failed…)`:
    each retry that got the output past a converter's failure, what it did and what it got past."""
    return [
        one_line(f"{rescue.get('name')}: {rescue.get('action')} (after: {_first_sentence(rescue.get('raw_error'))})")
        for rescue in output.get("rescues") or []
    ]


def _first_sentence(text: Any, limit: int = 160) -> str:
    """A converter's message up to its first full stop: the advice after it is for the converter's user."""
    line = first_text_line(text)
    sentence = line.split(". ", 1)[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[: limit - 1] + "…"


def _checks(outputs: Sequence[dict[str, Any]]) -> list[str]:
    """One line a check: a tick or a cross, the output, the metric, its value against the threshold."""
    checks = [check for output in outputs for check in _checks_of(output)]
    name_width = max((len(name) for _, name, _ in checks), default=0)
    return [f"  {mark} {name.ljust(name_width)}  {text}" for mark, name, text in checks]


def _checks_of(output: dict[str, Any]) -> list[tuple[str, str, str]]:
    name = one_line(output.get("name", "?"))
    checks = []
    if output.get("status") == "error":
        checks.append((FAIL_MARK, name, f"error: {first_text_line(output.get('error')) or 'no artifact'}"))
    if nonfinite_of(output):
        checks.append((FAIL_MARK, name, f"finite outputs: {nonfinite_text(output)}"))
    for gate in gates_of(output):
        mark = PASS_MARK if gate.get("passed") else FAIL_MARK
        note = f"  ({one_line(gate['note'])})" if gate.get("note") else ""
        checks.append((mark, name, f"{gate_name(gate)} {relation(gate)}{note}"))
    if not checks:
        checks.append(("-", name, "no gates"))
    checks.extend(("↻", name, f"rescue {line}") for line in rescue_lines(output))
    for finding in output.get("findings") or []:  # beyond the gates: a warning a reader must not miss
        kind = one_line(finding.get("kind", "finding")).replace("_", " ")
        fix = one_line(finding.get("fix"))
        checks.append(("!", name, f"{kind}: {first_text_line(finding.get('message'))} Fix: {fix}."))
    return checks


def final_line(report: dict[str, Any]) -> str:
    """`PASSED: 5/5 outputs`, or `FAILED: ...` naming each output that did not pass."""
    outputs = list(report.get("outputs") or [])
    bad = failing(report)
    good = len(outputs) - len(bad)
    if not bad and report.get("passed", True):
        return f"PASSED: {good}/{len(outputs)} outputs"
    named = ", ".join(one_line(f"{output.get('name', '?')} ({output.get('status', '?')})") for output in bad)
    tail = f"; failing: {named}" if bad else f"; exit code {report.get('exit_code')}"
    return f"FAILED: {good}/{len(outputs)} outputs passed{tail}"
