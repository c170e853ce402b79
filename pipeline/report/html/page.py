"""report.html: one self-contained page (inline CSS, no scripts, nothing fetched) to browse a run.

Renders a report dict; knows no runtime or stage. Every piece of report text goes through `markup.e`.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.metric_registry import METRICS
from pipeline.report.findings import baseline_line
from pipeline.report.html.markup import e, table, td
from pipeline.report.html.output import section
from pipeline.report.text import (
    DATA_COLUMNS,
    FAIL_MARK,
    PASS_MARK,
    data_rows,
    environment_rows,
    final_line,
    gates_of,
    kib,
    number,
)

METRIC_ORDER = tuple(name for name, metric in METRICS.items() if metric.gate or name == "reference_accuracy")
_SIGNS = {"<=": "≤", ">=": "≥"}
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1b1f24}
body{margin:2em auto;max-width:86em;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0}
th,td{border:1px solid #d0d7de;padding:.25em .6em;vertical-align:top}
th{background:#f6f8fa;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.pass{background:#e6f4ea;color:#1a7f37}.fail{background:#ffebe9;color:#cf222e;font-weight:600}
.gate{display:block;font-size:.85em;font-weight:400}
.banner{padding:.6em 1em;font-size:1.2em;border-radius:4px}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;white-space:pre-wrap}.muted{color:#57606a}
.charts{display:flex;flex-wrap:wrap;gap:1.2em;margin:.6em 0}
svg.chart{border:1px solid #d0d7de;border-radius:4px;background:#fbfcfd}
svg.chart text{font:11px system-ui,sans-serif;fill:#57606a}svg.chart .title{font-weight:600;fill:#1b1f24}
svg.chart .axis{fill:#1b1f24}svg.chart .grid{stroke:#eaeef2;stroke-width:1}
"""


def render(report: dict[str, Any]) -> str:
    outputs = list(report.get("outputs") or [])
    name = (report.get("recipe") or {}).get("name", "?")
    body = [
        _heading(report),
        _summary(outputs),
        *(section(index, output) for index, output in enumerate(outputs)),
        _source(report.get("source") or {}),
        _data(report.get("data") or {}),
        _environment(report.get("environment") or {}),
    ]
    return (
        "\n".join(
            [
                "<!DOCTYPE html>",
                '<html lang="en">',
                "<head>",
                '<meta charset="utf-8">',
                f"<title>edgeport report: {e(name)}</title>",
                f"<style>{_CSS}</style>",
                "</head>",
                "<body>",
                *(part for part in body if part),
                "</body>",
                "</html>",
            ]
        )
        + "\n"
    )


def _heading(report: dict[str, Any]) -> str:
    recipe, tool = report.get("recipe") or {}, report.get("tool") or {}
    verdict = final_line(report)
    cls = "pass" if verdict.startswith("PASSED") else "fail"
    meta = (
        f"recipe <code>{e(recipe.get('path', '-'))}</code> · started {e(report.get('started', '-'))} · "
        f"{e(number(report.get('seconds')))} s · exit code {e(report.get('exit_code', '-'))} · "
        f"{e(tool.get('name', 'edgeport'))} {e(tool.get('version', ''))}"
    )
    against = baseline_line(report)
    return (
        f"<h1>edgeport report: {e(recipe.get('name', '?'))}</h1>\n"
        f'<p class="banner {cls}">{e(verdict)}</p>\n<p class="muted">{meta}</p>'
        + (f"\n<p>{e(against)}</p>" if against else "")
        + "".join(f'\n<p class="banner fail">warning: {e(warning)}</p>' for warning in report.get("warnings") or [])
    )


def _metric_names(outputs: list[dict[str, Any]]) -> list[str]:
    """Every metric measured or gated on any output, in a fixed reading order; the ends of a 95% interval
    only where gated (the output's own metrics table has them)."""
    seen: set[str] = set()
    for output in outputs:
        measured = ((output.get("parity") or {}).get("metrics") or {}).keys()
        seen.update(name for name in measured if not name.endswith(("_lower", "_upper")))
        seen.update(str(gate.get("metric")) for gate in gates_of(output) if not gate.get("tensor"))
    return [m for m in METRIC_ORDER if m in seen] + sorted(seen - set(METRIC_ORDER))


def _summary(outputs: list[dict[str, Any]]) -> str:
    metrics = _metric_names(outputs)
    header = ["output", "status", "format", "runtime", "size KiB", "gzip KiB", *metrics]
    rows = [_summary_row(index, output, metrics) for index, output in enumerate(outputs)]
    return "<h2>Outputs</h2>\n" + table(header, rows, "summary")


def _summary_row(index: int, output: dict[str, Any], metrics: list[str]) -> list[str]:
    status = str(output.get("status", "?"))
    values = (output.get("parity") or {}).get("metrics") or {}
    whole = [gate for gate in gates_of(output) if not gate.get("tensor") and not gate.get("against")]
    gates = {gate.get("metric"): gate for gate in whole}
    link = f'<a href="#output-{index}">{e(output.get("name", "?"))}</a>'
    return [
        td(link, raw=True),
        td(status, "pass" if status == "passed" else "fail"),
        td(output.get("format") or "-"),
        td(output.get("runtime") or "-"),
        td(kib(output.get("size_bytes")), "num"),
        td(kib(output.get("gzip_bytes")), "num"),
        *(_metric_cell(values.get(metric), gates.get(metric)) for metric in metrics),
    ]


def _metric_cell(value: Any, gate: dict[str, Any] | None) -> str:
    if gate is None:
        return td(number(value), "num")
    mark, cls = (PASS_MARK, "num pass") if gate.get("passed") else (FAIL_MARK, "num fail")
    sign = _SIGNS.get(str(gate.get("op")), e(gate.get("op")))
    limit = f'<span class="gate">{sign} {e(number(gate.get("threshold")))} {mark}</span>'
    return td(f"{e(number(value))}{limit}", cls, raw=True)


def _source(source: dict[str, Any]) -> str:
    if not source:
        return ""
    rows = [(key, source.get(key) or "-") for key in ("path", "format", "flavour", "signature", "sha256")]
    rows += [("input", spec) for spec in source.get("inputs") or []]
    rows += [("output", spec) for spec in source.get("outputs") or []]
    return "<h2>Source</h2>\n" + table(["field", "value"], [[td(key), td(value)] for key, value in rows])


def _data(data: dict[str, Any]) -> str:
    rows = [[td(cell, "num" if index == 2 else "") for index, cell in enumerate(row)] for row in data_rows(data)]
    return "<h2>Data</h2>\n" + table(DATA_COLUMNS, rows) if rows else ""


def _environment(environment: dict[str, Any]) -> str:
    if not environment:
        return ""
    rows = [[td(name), td(value)] for name, value in environment_rows(environment)]
    return "<h2>Environment</h2>\n" + table(["component", "version"], rows)
