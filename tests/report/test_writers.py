"""Report writers render a realistic report dict into md, html, junit.xml and the console summary."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pipeline.report import REPORT_FILES, html, markdown, write_report, write_reports
from pipeline.report.text import gate_verdict, summary

ERROR_TEXT = "tf2onnx export failed: <script>alert(1)</script> op | Foo unsupported\nTraceback line 2"


def _metrics(**overrides: Any) -> dict[str, Any]:
    metrics = {
        "max_abs": 0.0004,
        "mean_abs": 5e-05,
        "rmse": 8e-05,
        "cosine": 0.99999,
        "snr_db": 61.2,
        "top1_agreement": 1.0,
        "accuracy": 0.9722,
        "reference_accuracy": 0.9722,
        "accuracy_drop": 0.0,
    }
    return {**metrics, **overrides}


def _gate(metric: str, op: str, threshold: float, value: Any, passed: bool) -> dict[str, Any]:
    return {"metric": metric, "op": op, "threshold": threshold, "value": value, "passed": passed, "note": None}


def _stage(kind: str, label: str, seconds: float, **details: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "label": label,
        "seconds": seconds,
        "reused": False,
        "key": "ab" * 32,
        "warnings": [],
        "details": details,
    }


@pytest.fixture
def report() -> dict[str, Any]:
    int8 = _metrics(max_abs=0.0312, cosine=0.9987, top1_agreement=0.9917, accuracy=0.9694, accuracy_drop=0.0028)
    fp32 = _metrics(max_abs=0.0123, cosine=0.9999)
    return {
        "schema_version": 1,
        "tool": {"name": "edgeport", "version": "0.1.0"},
        "recipe": {"name": "digits-demo", "path": "/abs/recipes/demo.yaml"},
        "passed": False,
        "exit_code": 3,
        "started": "2026-11-22T11:00:00+00:00",
        "seconds": 12.3,
        "source": {
            "path": "/abs/artifacts/models/digits_cnn.keras",
            "format": "keras",
            "sha256": "ab12" * 16,
            "flavour": "keras3",
            "signature": None,
            "inputs": ["pixels [?, 8, 8, 1] float32"],
            "outputs": ["logits [?, 10] float32"],
        },
        "environment": {
            "python": "3.11.7",
            "platform": "Linux-6.1-x86_64",
            "packages": {"tensorflow": "2.21.0", "onnxruntime": "1.31.1"},
        },
        "data": {
            "evaluation": {
                "origin": "digits.npz[x_test]",
                "samples": 360,
                "labels": True,
                "inputs": {"pixels": [[360, 8, 8, 1], "float32"]},
            },
            "calibration": {
                "origin": "digits.npz[x_train]",
                "samples": 200,
                "labels": False,
                "inputs": {"pixels": [[200, 8, 8, 1], "float32"]},
            },
        },
        "outputs": [
            {
                "name": "int8",
                "status": "passed",
                "format": "tflite",
                "runtime": "litert",
                "artifact": "int8/model.tflite",
                "sha256": "cd34" * 16,
                "size_bytes": 12345,
                "gzip_bytes": 9000,
                "stages": [_stage("tflite", "tflite int8 io=int8", 1.25, quantize="int8", io="int8")],
                "parity": {
                    "reference": "source (keras)",
                    "samples": 360,
                    "nonfinite": 0,
                    "metrics": int8,
                    "tensors": {"logits": int8},
                    "gates": [
                        _gate("top1_agreement", ">=", 0.98, 0.9917, True),
                        _gate("accuracy_drop", "<=", 0.01, 0.0028, True),
                    ],
                },
                "warnings": ["calibration used 200 of 1437 samples"],
                "error": None,
            },
            {
                "name": "fp32",
                "status": "failed",
                "format": "tflite",
                "runtime": "litert",
                "artifact": "fp32/model.tflite",
                "sha256": "ef56" * 16,
                "size_bytes": 40960,
                "gzip_bytes": 36000,
                "stages": [_stage("tflite", "tflite fp32", 0.75)],
                "parity": {
                    "reference": "source (keras)",
                    "samples": 360,
                    "nonfinite": 0,
                    "metrics": fp32,
                    "tensors": {"logits": fp32},
                    "gates": [_gate("max_abs", "<=", 1e-05, 0.0123, False), _gate("cosine", ">=", 0.99, 0.9999, True)],
                },
                "warnings": [],
                "error": None,
            },
            {
                "name": "broken",
                "status": "error",
                "format": "onnx",
                "runtime": None,
                "artifact": None,
                "sha256": None,
                "size_bytes": None,
                "gzip_bytes": None,
                "stages": [_stage("onnx", "onnx opset 17", 0.5, opset=17)],
                "parity": None,
                "warnings": [],
                "error": ERROR_TEXT,
            },
        ],
    }


def _expected_counts(report: dict[str, Any]) -> tuple[int, int, int]:
    """(tests, failures, errors) the report implies: a case a gate, a stage error, a non-finite check."""
    tests = failures = errors = 0
    for output in report["outputs"]:
        parity = output["parity"] or {}
        gates = parity.get("gates") or []
        tests += len(gates) + (output["status"] == "error") + bool(parity.get("nonfinite"))
        failures += sum(not gate["passed"] for gate in gates) + bool(parity.get("nonfinite"))
        errors += output["status"] == "error"
    return tests, failures, errors


# --- markdown ---------------------------------------------------------------------------------------


def test_markdown_has_a_table_row_per_output(report: dict[str, Any]) -> None:
    text = markdown.render(report)
    outputs = text.split("## Outputs", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in outputs.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split("|")[1].strip() for row in rows] == ["int8", "fp32", "broken"]
    assert "12.1" in rows[0] and "8.8" in rows[0]  # KiB raw and gzip
    assert "0.0123" in rows[1]


def test_markdown_shows_the_failing_gate_value_and_threshold(report: dict[str, Any]) -> None:
    text = markdown.render(report)
    [line] = [line for line in text.splitlines() if line.startswith("| fp32 | max_abs")]
    assert "0.0123" in line and "1e-05" in line and "FAIL" in line and "0.0123 > 1e-05" in line
    assert text.splitlines()[2].startswith("**FAILED")


def test_markdown_keeps_error_text_out_of_table_structure(report: dict[str, Any]) -> None:
    text = markdown.render(report)
    [line] = [line for line in text.splitlines() if line.startswith("| broken | produce artifact")]
    assert "op \\| Foo" in line and "Traceback" not in line
    assert "&lt;script>" in line and "<script>" not in text.split("### Error", 1)[0]
    assert "Traceback line 2" in text.split("### Error", 1)[1]


def test_markdown_write_puts_report_md_in_out_dir(report: dict[str, Any], tmp_path: Path) -> None:
    path = write_report("report.md", report, tmp_path)
    assert path == tmp_path / "report.md"
    assert path.read_text(encoding="utf-8") == markdown.render(report)


# --- html -------------------------------------------------------------------------------------------


class _Checker(HTMLParser):
    """Tracks open elements, the rows of the summary table and every tag seen."""

    VOID: ClassVar[set[str]] = {"meta", "br", "hr", "img", "link", "input", "col", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.mismatches: list[str] = []
        self.tags: set[str] = set()
        self.in_summary_body = False
        self.summary_rows: list[list[str]] = []
        self.in_cell = False
        self.table_ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for _, value in attrs:
            assert not str(value).startswith(("http:", "https:", "//")), value
        if tag in self.VOID:
            return
        self.stack.append(tag)
        if tag == "tbody" and self.table_ids[-1:] == ["summary"]:
            self.in_summary_body = True
        elif tag == "tr" and self.in_summary_body:
            self.summary_rows.append([])
        elif tag == "td" and self.in_summary_body:
            self.summary_rows[-1].append("")
            self.in_cell = True
        if tag == "table":
            self.table_ids.append(dict(attrs).get("id") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.mismatches.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()
        if tag == "td":
            self.in_cell = False
        if tag == "tbody":
            self.in_summary_body = False
        if tag == "table":
            self.table_ids.pop()

    def handle_data(self, data: str) -> None:
        if self.in_cell and self.in_summary_body:
            self.summary_rows[-1][-1] += data


def _parse(text: str) -> _Checker:
    checker = _Checker()
    checker.feed(text)
    checker.close()
    return checker


def test_html_is_balanced_and_has_a_summary_row_per_output(report: dict[str, Any]) -> None:
    checker = _parse(html.render(report))
    assert checker.mismatches == [] and checker.stack == []
    assert [row[0] for row in checker.summary_rows] == ["int8", "fp32", "broken"]
    assert [row[1] for row in checker.summary_rows] == ["passed", "failed", "error"]


def test_html_summary_shows_each_metric_with_its_gate(report: dict[str, Any]) -> None:
    rows = {row[0]: row for row in _parse(html.render(report)).summary_rows}
    assert any(cell.startswith("0.0123") and "1e-05" in cell and "✗" in cell for cell in rows["fp32"])
    assert any(cell.startswith("0.9999") and "≥ 0.99 ✓" in cell for cell in rows["fp32"])
    assert any(cell.startswith("0.9917") and "0.98" in cell and "✓" in cell for cell in rows["int8"])
    assert all(cell == "-" for cell in rows["broken"][6:])


def test_html_is_self_contained_and_escaped(report: dict[str, Any]) -> None:
    text = html.render(report)
    checker = _parse(text)
    assert "http://" not in text and "https://" not in text
    assert "style" in checker.tags and not checker.tags & {"script", "link", "img", "iframe"}
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Traceback line 2" in text and "tflite int8 io=int8" in text  # error and stage timings


def test_every_report_names_per_tensor_and_other_run_gates_alike(report: dict[str, Any]) -> None:
    """A whole-output gate, a per-tensor one and one against the baseline on one metric are three rows, each
    labelled as what it checks, in report.md and report.html alike."""
    changed = copy.deepcopy(report)
    gates = changed["outputs"][1]["parity"]["gates"]
    gates[:] = [
        _gate("max_abs", "<=", 1e-4, 3e-5, True),
        {**_gate("max_abs", "<=", 1e-4, 2e-4, False), "tensor": "boxes"},
        {**_gate("max_abs", "<=", 1e-4, 3e-5, True), "against": "baseline"},
    ]
    labels = ["max_abs <= 0.0001", "boxes.max_abs <= 0.0001", "max_abs [baseline] <= 0.0001"]
    page, text = html.render(changed), markdown.render(changed)
    for label in labels:
        assert f"<td>{label.replace('<', '&lt;')}</td>" in page
        assert f"| {label} |" in text


def test_html_write_puts_report_html_in_out_dir(report: dict[str, Any], tmp_path: Path) -> None:
    path = write_report("report.html", report, tmp_path)
    assert path == tmp_path / "report.html"
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


# --- junit ------------------------------------------------------------------------------------------


def _junit(report: dict[str, Any], tmp_path: Path) -> ET.Element:
    path = write_report("junit.xml", report, tmp_path)
    assert path == tmp_path / "junit.xml"
    return ET.parse(path).getroot()


def test_junit_counts_match_the_report(report: dict[str, Any], tmp_path: Path) -> None:
    root = _junit(report, tmp_path)
    [suite] = root.findall("testsuite")
    cases = suite.findall("testcase")
    tests, failures, errors = _expected_counts(report)
    assert (tests, failures, errors) == (5, 1, 1)
    for element in (root, suite):
        assert int(element.get("tests")) == len(cases) == tests
        assert int(element.get("failures")) == len(suite.findall("testcase/failure")) == failures
        assert int(element.get("errors")) == len(suite.findall("testcase/error")) == errors
    assert suite.get("name") == "edgeport.digits-demo"
    assert float(suite.get("time")) == pytest.approx(12.3)
    assert sum(float(case.get("time")) for case in cases) == pytest.approx(1.25 + 0.75 + 0.5)


def test_junit_charges_no_time_for_a_cached_stage(report: dict[str, Any], tmp_path: Path) -> None:
    cached = copy.deepcopy(report)
    cached["outputs"][0]["stages"][0]["reused"] = True
    suite = _junit(cached, tmp_path).find("testsuite")
    times = [float(case.get("time")) for case in suite.iter("testcase")]
    assert times == pytest.approx([0.0, 0.0, 0.75, 0.0, 0.5])


def test_junit_names_cases_by_output_and_gate(report: dict[str, Any], tmp_path: Path) -> None:
    suite = _junit(report, tmp_path).find("testsuite")
    names = [(case.get("classname"), case.get("name")) for case in suite.iter("testcase")]
    assert names == [
        ("digits-demo.int8", "top1_agreement >= 0.98"),
        ("digits-demo.int8", "accuracy_drop <= 0.01"),
        ("digits-demo.fp32", "max_abs <= 1e-05"),
        ("digits-demo.fp32", "cosine >= 0.99"),
        ("digits-demo.broken", "produce artifact"),
    ]
    failure = suite.find("testcase[@name='max_abs <= 1e-05']/failure")
    assert failure.get("message") == "max_abs = 0.0123 > 1e-05"
    error = suite.find("testcase[@name='produce artifact']/error")
    assert error.get("message") == ERROR_TEXT


def test_junit_fails_nonfinite_outputs(report: dict[str, Any], tmp_path: Path) -> None:
    broken = copy.deepcopy(report)
    parity = broken["outputs"][1]["parity"]
    parity["nonfinite"] = 3600
    parity["metrics"] = _metrics(max_abs="nan", cosine="nan", snr_db="nan", top1_agreement=0.1)
    parity["gates"][0]["value"] = "nan"
    parity["gates"][1].update(value="nan", passed=False)
    suite = _junit(broken, tmp_path).find("testsuite")
    finite = suite.find("testcase[@name='finite outputs']/failure")
    assert finite is not None and "3600" in finite.get("message")
    assert (int(suite.get("tests")), int(suite.get("failures"))) == _expected_counts(broken)[:2] == (6, 3)
    cosine = suite.find("testcase[@name='cosine >= 0.99']/failure")
    assert cosine.get("message") == "cosine = nan, needs >= 0.99"


# --- console ----------------------------------------------------------------------------------------


def test_console_marks_the_failing_gate_and_the_run(report: dict[str, Any]) -> None:
    lines = summary(report).splitlines()
    [failing] = [line for line in lines if "max_abs 0.0123" in line]
    assert failing.lstrip().startswith("✗ fp32") and "0.0123 > 1e-05" in failing
    passing = [line for line in lines if line.lstrip().startswith("✓ int8")]
    assert any("top1_agreement 0.9917 >= 0.98" in line for line in passing)
    assert any(line.lstrip().startswith("✗ broken") and "tf2onnx export failed" in line for line in lines)
    assert lines[-1].startswith("FAILED") and "fp32" in lines[-1] and "broken" in lines[-1]
    assert "int8" not in lines[-1]


def test_console_table_columns_line_up(report: dict[str, Any]) -> None:
    lines = summary(report).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("output"))
    table = lines[header : header + 5]
    assert table[1].startswith("------")
    start = table[0].index("status")
    assert [row[start:].split()[0] for row in table[2:]] == ["passed", "failed", "error"]
    end = table[0].index("max_abs") + len("max_abs")
    assert [row[:end].split()[-1] for row in table[2:]] == ["0.0312", "0.0123", "-"]


def test_console_passes_when_every_output_passed(report: dict[str, Any]) -> None:
    passed = {**report, "passed": True, "exit_code": 0, "outputs": report["outputs"][:1]}
    text = summary(passed)
    assert text.splitlines()[-1] == "PASSED: 1/1 outputs"
    assert "✗" not in text


def test_console_prints_a_value_just_past_its_threshold_apart_from_it() -> None:
    gate = _gate("cosine", ">=", 0.99, 0.989999, False)
    assert gate_verdict(gate) == "cosine = 0.989999 < 0.99"


def test_writers_tolerate_absent_and_nonfinite_numbers(report: dict[str, Any], tmp_path: Path) -> None:
    odd = copy.deepcopy(report)
    odd["seconds"] = None
    odd["outputs"][0]["parity"]["metrics"].update(max_abs=None, snr_db="inf", cosine="-inf")
    odd["outputs"][0]["stages"][0]["seconds"] = None
    for filename in REPORT_FILES:
        assert write_report(filename, odd, tmp_path).stat().st_size > 0
    assert "inf" in summary(odd)


def test_writers_do_not_import_tensorflow() -> None:
    code = (
        "import sys; import pipeline.report.markdown, pipeline.report.html, pipeline.report.junit, "
        "pipeline.report.text; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


# --- untrusted text ------------------------------------------------------------------------------------

# Clears the screen and prints a green line; a carriage return, NUL, a bidi override, a lone surrogate (a file name
# that is not UTF-8), and a newline followed by a line of edgeport's own.
POISON = "\x1b[2J\x1b[1;32mverified\r\x00\u202e\udcff\nPASSED: 9/9 outputs"


def _poisoned(value: Any, names: bool = False) -> Any:
    """Every string of the report with POISON appended; the names that key `tensors` and `packages` too."""
    if isinstance(value, str):
        return value + POISON
    if isinstance(value, dict):
        return {
            (key + POISON if names else key): _poisoned(item, key in ("tensors", "packages"))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_poisoned(item) for item in value]
    return value


def _unsafe(data: bytes) -> list[int]:
    return sorted({byte for byte in data if (byte < 0x20 and byte not in (0x09, 0x0A)) or byte == 0x7F})


def test_every_writer_escapes_a_hostile_string_in_every_field(report: dict[str, Any], tmp_path: Path) -> None:
    hostile = _poisoned(report)
    hostile["outputs"][1]["parity"]["gates"][0]["tensor"] = "logits" + POISON  # a per-tensor gate's name
    paths = write_reports(hostile, tmp_path)  # a lone surrogate used to fail the UTF-8 encoding: no report at all
    assert sorted(path.name for path in paths) == sorted(REPORT_FILES)
    for name in ("report.md", "report.html", "junit.xml"):
        data = (tmp_path / name).read_bytes()
        assert _unsafe(data) == [], name
        assert b"\\x1b[2J\\x1b[1;32mverified\\r\\x00\\u202e\\udcff" in data, name
        assert "\u202e".encode() not in data
    ET.parse(tmp_path / "junit.xml")
    assert json.loads((tmp_path / "report.json").read_text())["recipe"]["name"] == "digits-demo" + POISON
    console = summary(hostile)
    assert _unsafe(console.encode("utf-8", "surrogatepass")) == []
    assert [line for line in console.splitlines() if line.startswith("PASSED")] == []
