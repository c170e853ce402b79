"""--baseline: metrics that got worse than in an earlier report.json fail their output, in every report format."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import EdgeportError
from pipeline.report import markdown
from pipeline.report.document import settle_verdict
from pipeline.report.text import summary
from pipeline.run.baseline import apply_baseline, limit_of

from ..cli import edgeport
from ..helpers import checked_result
from ..recipes import digits_data, recipe_file


def _output(name: str, **metrics: float) -> dict[str, Any]:
    gates = [{"tensor": None, "against": None, "metric": "cosine", "op": ">=", "threshold": 0.9, "value": 0.99}]
    gates[0]["passed"] = True
    return {"name": name, "status": "passed", "parity": {"metrics": dict(metrics), "gates": gates}}


def _report(*outputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "recipe": {"name": "digits"},
        "started": "2026-01-01T00:00:00+00:00",
        "source": {"sha256": "ab" * 32},
        "passed": True,
        "exit_code": 0,
        "outputs": list(outputs),
    }


def _write(tmp_path: Path, report: dict[str, Any]) -> Path:
    path = tmp_path / "old.json"
    path.write_text(json.dumps(report))
    return path


def test_worse_beyond_tolerance_fails_and_within_passes(tmp_path: Path) -> None:
    old = _write(tmp_path, _report(_output("int8", max_abs=1.0, cosine=0.999, accuracy=0.97), _output("gone")))
    results = [checked_result("int8", max_abs=1.09, cosine=0.99, accuracy=0.968), checked_result("new", max_abs=5.0)]
    held = apply_baseline(results, old)
    assert results[0].status == "failed" and results[1].status == "passed"  # judged before any entry is written
    report = {**_report(*[result.to_dict() for result in results]), "baseline": held}
    settle_verdict(report)
    int8 = report["outputs"][0]
    assert int8["baseline"]["max_abs"]["regressed"] is False  # +9% < 10%
    assert int8["baseline"]["accuracy"]["regressed"] is False  # -0.002 < 0.005
    assert int8["baseline"]["cosine"] == pytest.approx(
        {"previous": 0.999, "current": 0.99, "delta": -0.009, "limit": 0.994, "regressed": True}
    )
    assert int8["status"] == "failed" and report["passed"] is False and report["exit_code"] == 1
    gate = int8["parity"]["gates"][-1]
    assert gate["against"] == "baseline" and gate["metric"] == "cosine" and gate["op"] == ">="
    assert gate["passed"] is False and gate["note"] == "regressed from 0.999"
    assert "baseline" not in report["outputs"][1]  # an output the baseline did not have: nothing to compare
    assert report["baseline"]["path"] == str(old) and report["baseline"]["regressions"] == 1
    assert report["baseline"]["source_sha256"] == "ab" * 32
    # Every format shows it: console, markdown (and junit, in the CLI test below).
    assert "✗ int8  cosine [baseline] 0.99 < 0.994  (regressed from 0.999)" in summary(report)
    text = markdown.render(report)
    assert "### Against the baseline" in text and "| cosine | 0.999 | 0.99 | -0.009 | regressed |" in text
    assert "1 regression." in text


def test_explicit_tolerance_and_directions() -> None:
    assert limit_of("max_abs", 2.0) == pytest.approx(2.2)
    assert limit_of("snr_db", 40.0) == 39.5
    assert limit_of("accuracy_drop", 0.01) == pytest.approx(0.015)
    assert limit_of("cosine", 0.99, tolerance=0.0) == 0.99
    assert limit_of("max_abs", 0.0) > 0.0  # float noise on an exact previous result is not a regression


def test_error_output_and_non_finite_values(tmp_path: Path) -> None:
    old = _write(tmp_path, _report(_output("a", max_abs=1.0), _output("b", max_abs="nan")))
    results = [checked_result("a", max_abs=float("nan")), checked_result("b", max_abs=1.0)]
    results[1].error = "onnxruntime could not run the file"
    apply_baseline(results, old)
    report = settle_verdict(_report(*[result.to_dict() for result in results]))
    broken, errored = report["outputs"]
    assert broken["baseline"]["max_abs"]["regressed"] is True and broken["baseline"]["max_abs"]["current"] == "nan"
    assert errored["status"] == "error" and errored["baseline"] == {}  # nothing held against a NaN baseline
    assert report["exit_code"] == 3
    json.dumps(report, allow_nan=False)  # still valid report.json


@pytest.mark.parametrize("content", [None, "{not json", '{"outputs": 3}', "[]"])
def test_missing_or_corrupt_baseline_is_bad_input(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "old.json"
    if content is not None:
        path.write_text(content)
    results = [checked_result("int8", max_abs=1.0)]
    before = copy.deepcopy(results[0].to_dict())
    with pytest.raises(EdgeportError, match=r"old\.json") as raised:
        apply_baseline(results, path)
    assert raised.value.exit_code == 2 and results[0].to_dict() == before


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"parity": {"metrics": {"max_abs": {"deep": [[1]]}}}}, r"outputs\[0\]\.parity\.metrics\.max_abs is an object"),
        ({"parity": {"metrics": {"max_abs": 10**400}}}, r"max_abs is an integer larger than a float holds"),
        ({"parity": {"metrics": {"max_abs": "1e-3"}}}, r"max_abs is the string '1e-3', expected a number"),
        ({"parity": {"metrics": [1.0]}}, r"outputs\[0\]\.parity\.metrics is a list, expected an object"),
        ({"name": "int8\x1b[2J"}, r"outputs\[0\]\.name holds control characters"),
        ({"name": 8}, r"outputs\[0\]\.name is a number, expected a string"),
    ],
)
def test_a_hostile_baseline_is_bad_input_naming_the_field(tmp_path: Path, change: dict[str, Any], named: str) -> None:
    """Shapes that used to pass the read and fail once every stage had run (exit 3): now exit 2, the field named."""
    path = _write(tmp_path, _report({**_output("int8", max_abs=1.0), **change}))
    results = [checked_result("int8", max_abs=1.0)]
    with pytest.raises(EdgeportError, match=named) as raised:
        apply_baseline(results, path)
    assert raised.value.exit_code == 2 and "old.json" in str(raised.value)


def test_cli_run_against_a_tighter_baseline_exits_1_with_the_regression_in_junit(zoo, tmp_path: Path) -> None:
    outputs = {"int8": {"stages": [{"tflite": {"quantize": "int8"}}], "gates": {"cosine": 0.99}}}
    recipe = recipe_file(tmp_path, name="digits", source=zoo.keras3, data=digits_data(zoo, limit=100), outputs=outputs)
    first = edgeport("run", recipe, "--out", tmp_path / "first")
    assert first.returncode == 0, first.stderr
    # The last release was better than this run: its int8 error was a third of today's.
    baseline = json.loads((tmp_path / "first" / "report.json").read_text())
    metrics = baseline["outputs"][0]["parity"]["metrics"]
    metrics["max_abs"] /= 3
    (tmp_path / "old.json").write_text(json.dumps(baseline))

    result = edgeport("run", recipe, "--out", tmp_path / "second", "--baseline", tmp_path / "old.json")
    assert result.returncode == 1, result.stderr
    assert "max_abs [baseline]" in result.stdout and "regressed from" in result.stdout
    report = json.loads((tmp_path / "second" / "report.json").read_text())
    int8 = report["outputs"][0]
    assert int8["status"] == "failed" and int8["baseline"]["max_abs"]["regressed"] is True
    assert int8["baseline"]["cosine"]["regressed"] is False and int8["baseline"]["cosine"]["delta"] == 0.0
    failures = ET.parse(tmp_path / "second" / "junit.xml").getroot().findall(".//failure")
    assert len(failures) == 1 and "max_abs [baseline]" in failures[0].get("message", "")
    assert "Against the baseline" in (tmp_path / "second" / "report.html").read_text()
