"""report.md: the run's report as Markdown, for a pull request or a release page.

Renders a report dict; knows no runtime or stage.
"""

from __future__ import annotations

from typing import Any

from pipeline.report.findings import STAGE_COLUMNS, baseline_line, sections, stage_rows
from pipeline.report.markdown.markup import cell, code, longest_backtick_run, table
from pipeline.report.text import (
    COMPARISON_COLUMNS,
    DATA_COLUMNS,
    FAIL_MARK,
    PASS_MARK,
    TABLE_METRICS,
    comparison_rows,
    data_rows,
    environment_rows,
    final_line,
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

_STATUS = {"passed": f"{PASS_MARK} passed", "failed": f"{FAIL_MARK} failed", "error": f"{FAIL_MARK} error"}


def render(report: dict[str, Any]) -> str:
    outputs = list(report.get("outputs") or [])
    parts = [
        _heading(report),
        _outputs_table(outputs),
        _gates_table(outputs),
        *(_output_section(output) for output in outputs),
        _source(report.get("source") or {}),
        _data(report.get("data") or {}),
        _environment(report.get("environment") or {}),
    ]
    return "\n\n".join(part for part in parts if part) + "\n"


def _heading(report: dict[str, Any]) -> str:
    recipe = report.get("recipe") or {}
    tool = report.get("tool") or {}
    return "\n".join(
        [
            f"# edgeport report: {recipe.get('name', '?')}",
            "",
            f"**{final_line(report)}** (exit code {report.get('exit_code', '-')})",
            "",
            f"Recipe {code(recipe.get('path', '-'))} · started {report.get('started', '-')} · "
            f"{number(report.get('seconds'))} s · {tool.get('name', 'edgeport')} {tool.get('version') or ''}",
            *(["", baseline_line(report)] if baseline_line(report) else []),
            *(f"\n> **warning:** {cell(warning)}" for warning in report.get("warnings") or []),
        ]
    )


def _outputs_table(outputs: list[dict[str, Any]]) -> str:
    header = ["output", "status", "format", "runtime", "size KiB", "gzip KiB", *TABLE_METRICS]
    rows = [
        [
            output.get("name", "?"),
            _STATUS.get(output.get("status"), output.get("status")),
            output.get("format") or "-",
            output.get("runtime") or "-",
            kib(output.get("size_bytes")),
            kib(output.get("gzip_bytes")),
            *(number(((output.get("parity") or {}).get("metrics") or {}).get(m)) for m in TABLE_METRICS),
        ]
        for output in outputs
    ]
    return "## Outputs\n\n" + table(header, rows)


def _gates_table(outputs: list[dict[str, Any]]) -> str:
    rows = [row for output in outputs for row in _gate_rows(output)]
    if not rows:
        return ""
    return "## Gates\n\n" + table(["output", "gate", "value", "threshold", "result"], rows)


def _gate_rows(output: dict[str, Any]) -> list[list[Any]]:
    name = output.get("name", "?")
    rows = []
    if output.get("status") == "error":
        error = first_text_line(output.get("error"))
        rows.append([name, "produce artifact", "-", "-", f"**{FAIL_MARK} error**: {error}"])
    if nonfinite_of(output):
        count = nonfinite_of(output)
        rows.append([name, "finite outputs", count, 0, f"**{FAIL_MARK} FAIL** {nonfinite_text(output)}"])
    for gate in gates_of(output):
        result = f"{PASS_MARK} pass" if gate.get("passed") else f"**{FAIL_MARK} FAIL** ({relation(gate)})"
        if gate.get("note"):
            result += f" — {gate['note']}"
        rows.append(
            [
                name,
                gate_label(gate),
                number(gate.get("value")),
                number(gate.get("threshold")),
                result,
            ]
        )
    return rows


def _output_section(output: dict[str, Any]) -> str:
    status = _STATUS.get(output.get("status"), output.get("status"))
    parts = [
        f"## Output `{output.get('name', '?')}`: {status}",
        _facts(output),
        _metrics(output),
        _findings(output),
        _comparisons(output),
        _stages(output),
        _rescues(output),
        _warnings(output),
        _error(output),
    ]
    return "\n\n".join(part for part in parts if part)


def _facts(output: dict[str, Any]) -> str:
    parity = output.get("parity") or {}
    facts = [f"- format: {output.get('format') or '-'}, runtime: {output.get('runtime') or '-'}"]
    if output.get("artifact"):
        sizes = f"{kib(output.get('size_bytes'))} KiB ({kib(output.get('gzip_bytes'))} KiB gzip)"
        digest = code(output.get("sha256") or "-")
        facts.append(f"- artifact: {code(output['artifact'])} · {sizes} · sha256 {digest}")
    if parity:
        facts.append(
            f"- parity against {parity.get('reference', '?')} on {number(parity.get('samples'))} "
            f"samples, {number(parity.get('nonfinite'))} non-finite values"
        )
    for key, what in (("matched_inputs", "inputs fed"), ("matched", "tensors matched")):
        matched = parity.get(key) or {}
        if any(name != entry.get("candidate") for name, entry in matched.items()):  # worth a line only when renamed
            pairs = [
                f"{code(name)} → {code(entry.get('candidate'))} ({entry.get('rule')})"
                for name, entry in matched.items()
            ]
            facts.append(f"- {what}: {', '.join(pairs)}")
    return "\n".join(facts)


def _metrics(output: dict[str, Any]) -> str:
    header, rows = metric_table(output)
    return "### Metrics\n\n" + table(header, rows) if rows else ""


def _findings(output: dict[str, Any]) -> str:
    """Baseline deltas, the layers int8 hurts most, and what the int8 fallback kept in float."""
    return "\n\n".join(
        f"### {title}\n\n" + (f"{note}\n\n" if note else "") + table(header, rows)
        for title, note, header, rows in sections(output)
    )


def _comparisons(output: dict[str, Any]) -> str:
    rows = comparison_rows(output)
    return "### Comparisons\n\n" + table(COMPARISON_COLUMNS, rows) if rows else ""


def _stages(output: dict[str, Any]) -> str:
    rows = stage_rows(output)
    return "### Stages\n\n" + table(STAGE_COLUMNS, rows) if rows else ""


def _rescues(output: dict[str, Any]) -> str:
    lines = rescue_lines(output)
    return "### Rescues\n\n" + "\n".join(f"- {cell(line)}" for line in lines) if lines else ""


def _warnings(output: dict[str, Any]) -> str:
    warnings = output.get("warnings") or []
    if not warnings:
        return ""
    return "### Warnings\n\n" + "\n".join(f"- {cell(warning)}" for warning in warnings)


def _error(output: dict[str, Any]) -> str:
    if not output.get("error"):
        return ""
    text = str(output["error"]).rstrip()
    fence = "`" * max(3, longest_backtick_run(text) + 1)
    return f"### Error\n\n{fence}text\n{text}\n{fence}"


def _source(source: dict[str, Any]) -> str:
    if not source:
        return ""
    lines = [
        f"- path: {code(source.get('path', '-'))}",
        f"- format: {source.get('format', '-')}, flavour: {source.get('flavour') or '-'}"
        f", signature: {source.get('signature') or '-'}",
        f"- sha256: {code(source.get('sha256') or '-')}",
    ]
    lines += [f"- input: {code(spec)}" for spec in source.get("inputs") or []]
    lines += [f"- output: {code(spec)}" for spec in source.get("outputs") or []]
    return "## Source\n\n" + "\n".join(lines)


def _data(data: dict[str, Any]) -> str:
    rows = data_rows(data)
    return "## Data\n\n" + table(DATA_COLUMNS, rows) if rows else ""


def _environment(environment: dict[str, Any]) -> str:
    if not environment:
        return ""
    return "## Environment\n\n" + table(["component", "version"], environment_rows(environment))
