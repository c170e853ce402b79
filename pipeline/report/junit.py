"""junit.xml: each gate a test case, so a CI system shows a failing gate as a failing test.

Renders a report dict; knows no runtime or stage. An output's stage seconds (less cache hits) are charged
to its first test case, so the case times add up to the work the run did for that output.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from pipeline.core.text import printable
from pipeline.report.text import (
    as_float,
    gate_name,
    gate_verdict,
    gates_of,
    nonfinite_of,
    nonfinite_text,
    number,
    rescue_lines,
)


@dataclass
class Case:
    """One test case before it becomes XML: `outcome` is None (passed), "failure" or "error"."""

    classname: str
    name: str
    outcome: str | None = None
    message: str = ""
    text: str = ""
    seconds: float = 0.0


def render(report: dict[str, Any]) -> str:
    return render_suites([report])


def render_suites(reports: list[dict[str, Any]], refused: dict[str, str] | None = None) -> str:
    """One test suite a recipe's report; a recipe that could not run (`refused`: name → message) is a suite
    with one error case, so CI shows it beside the others."""
    root = ET.Element("testsuites", name="edgeport")
    suites = [_suite(report) for report in reports]
    for name, message in (refused or {}).items():
        suite = ET.Element("testsuite", name=f"edgeport.{name}", tests="1", failures="0", errors="1", time="0.000")
        suite.append(_element(Case(name, "run recipe", "error", message, message)))
        suites.append(suite)
    root.extend(suites)
    for key in ("tests", "failures", "errors"):
        root.set(key, str(sum(int(suite.get(key, "0")) for suite in suites)))
    root.set("time", f"{sum(float(suite.get('time', '0')) for suite in suites):.3f}")
    ET.indent(root)
    # ElementTree writes C0 characters raw, which XML 1.0 forbids even as references: escaped visibly instead.
    return '<?xml version="1.0" encoding="utf-8"?>\n' + printable(ET.tostring(root, encoding="unicode")) + "\n"


def cases(report: dict[str, Any]) -> list[Case]:
    """Every test case the report implies, output by output."""
    recipe = str((report.get("recipe") or {}).get("name", "?"))
    return [case for output in report.get("outputs") or [] for case in _cases_of(recipe, output)]


def _suite(report: dict[str, Any]) -> ET.Element:
    recipe = report.get("recipe") or {}
    all_cases = cases(report)
    suite = ET.Element(
        "testsuite",
        {
            "name": f"edgeport.{recipe.get('name', '?')}",
            "tests": str(len(all_cases)),
            "failures": str(sum(case.outcome == "failure" for case in all_cases)),
            "errors": str(sum(case.outcome == "error" for case in all_cases)),
            "skipped": "0",
            "time": _seconds(report.get("seconds")),
        },
    )
    if report.get("started"):
        suite.set("timestamp", str(report["started"]))
    suite.append(_properties(report))
    suite.extend(_element(case) for case in all_cases)
    return suite


def _properties(report: dict[str, Any]) -> ET.Element:
    source, tool = report.get("source") or {}, report.get("tool") or {}
    pairs = {
        "recipe.path": (report.get("recipe") or {}).get("path"),
        "tool.version": tool.get("version"),
        "exit_code": report.get("exit_code"),
        "source.path": source.get("path"),
        "source.sha256": source.get("sha256"),
        **{f"package.{k}": v for k, v in ((report.get("environment") or {}).get("packages") or {}).items()},
        **_cpu_properties((report.get("environment") or {}).get("cpu") or {}),
        **{
            f"rescue.{output.get('name')}.{index}": line
            for output in report.get("outputs") or []
            for index, line in enumerate(rescue_lines(output))
        },
    }
    properties = ET.Element("properties")
    for name, value in pairs.items():
        if value is not None:
            ET.SubElement(properties, "property", name=name, value=str(value))
    return properties


def _cpu_properties(cpu: dict[str, Any]) -> dict[str, Any]:
    """The CPU a verdict was measured on: int8 results can differ between instruction sets."""
    if not cpu:
        return {}
    return {
        "cpu.architecture": cpu.get("architecture"),
        "cpu.model": cpu.get("model"),
        "cpu.features": " ".join(cpu.get("features") or []),
        "cpu.int8_kernels": cpu.get("int8_kernels"),
    }


def _cases_of(recipe: str, output: dict[str, Any]) -> list[Case]:
    classname = f"{recipe}.{output.get('name', '?')}"
    found = []
    if output.get("status") == "error":
        error = str(output.get("error") or "the stage produced no artifact")
        found.append(Case(classname, "produce artifact", "error", error, error))
    if nonfinite_of(output):
        message = nonfinite_text(output)
        found.append(Case(classname, "finite outputs", "failure", message, _context(output)))
    found += [_gate_case(classname, gate, output) for gate in gates_of(output)]
    if output.get("status") not in ("passed", "error") and not any(case.outcome for case in found):
        message = f"status {output.get('status')}"
        found.append(Case(classname, "verdict", "failure", message, _context(output)))
    if not found:  # no gate: the output still shows, as the artifact it produced
        found.append(Case(classname, "produce artifact"))
    found[0].seconds = _work_seconds(output)
    return found


def _work_seconds(output: dict[str, Any]) -> float:
    """Seconds this run spent on the output's stages; a stage reused from the cache cost nothing here."""
    stages = output.get("stages") or []
    fresh = [stage for stage in stages if not stage.get("reused") and stage.get("cache") != "hit"]
    seconds = [as_float(stage.get("seconds")) for stage in fresh]
    return sum(value for value in seconds if value is not None and math.isfinite(value))


def _gate_case(classname: str, gate: dict[str, Any], output: dict[str, Any]) -> Case:
    name = f"{gate_name(gate)} {gate.get('op')} {number(gate.get('threshold'))}"
    if gate.get("passed"):
        return Case(classname, name)
    note = f"\n{gate['note']}" if gate.get("note") else ""
    return Case(classname, name, "failure", gate_verdict(gate), _context(output) + note)


def _context(output: dict[str, Any]) -> str:
    parity = output.get("parity") or {}
    metrics = ", ".join(f"{k}={number(v)}" for k, v in (parity.get("metrics") or {}).items())
    return (
        f"{output.get('format') or '-'} on {output.get('runtime') or '-'}, artifact "
        f"{output.get('artifact') or '-'}, against {parity.get('reference', '-')} on "
        f"{number(parity.get('samples'))} samples\n{metrics}"
    ) + "".join(f"\nfinding: {found.get('message')} Fix: {found.get('fix')}." for found in output.get("findings") or [])


def _element(case: Case) -> ET.Element:
    element = ET.Element("testcase", classname=case.classname, name=case.name, time=_seconds(case.seconds))
    if case.outcome:
        child = ET.SubElement(element, case.outcome, message=case.message, type=f"edgeport.{case.outcome}")
        child.text = case.text
    return element


def _seconds(value: Any) -> str:
    seconds = as_float(value)
    return f"{seconds:.3f}" if seconds is not None and math.isfinite(seconds) else "0.000"
