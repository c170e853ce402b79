"""Charts, quantization findings and the CI step summary, rendered from report dicts."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pipeline.report import html, markdown, write_reports
from pipeline.report.findings import short_tensor_name
from pipeline.report.html import svg

PLOTS = {
    "tensors": ["logits"],
    "values": 3600,
    "nonfinite_left_out": 0,
    "histogram": {"low": 0.0, "high": 2.5, "counts": [3000, 400, 100, 50, 30, 10, 5, 3, 1, 1]},
    "sample": {"stride": 4, "reference": [-3.0, 0.0, 1.5, 9.0], "candidate": [-2.9, 0.1, 1.4, 9.3]},
}


def _output(**details: Any) -> dict[str, Any]:
    stage = {"kind": "tflite", "label": "tflite int8", "seconds": 1.0, "reused": False, "details": details}
    parity = {"reference": "source", "samples": 360, "nonfinite": 0, "metrics": {"cosine": 0.5}, "gates": []}
    return {
        "name": "int8<x>",
        "status": "failed",
        "format": "tflite",
        "stages": [stage],
        "parity": parity | {"plots": PLOTS},
    }


def _report(output: dict[str, Any]) -> dict[str, Any]:
    return {"recipe": {"name": "r"}, "passed": False, "exit_code": 1, "outputs": [output]}


FALLBACK = {
    "layer_errors": [
        {
            "tensor_name": "m/mix/MatMul;m/mix/BiasAdd",
            "op_name": "FULLY_CONNECTED",
            "rmse_over_scale": 12.5,
            "max_abs_error": 3.0,
        },
        {"tensor_name": "m/conv/Relu", "op_name": "CONV_2D", "rmse_over_scale": 0.3, "max_abs_error": 0.01},
    ],
    "fallback_steps": [
        {"float_layers": 0, "passed": False, "size_bytes": 31072},
        {"float_layers": 1, "passed": True, "size_bytes": 33992},
    ],
    "float_layers": ["m/mix/MatMul"],
    "size_bytes_int8": 31072,
    "latency_ms_batch1": {"int8": 0.004, "fallback": 0.005},
}


@pytest.mark.parametrize("chart", [svg.histogram, svg.scatter])
def test_charts_are_well_formed_svg(chart) -> None:
    root = ET.fromstring(chart(PLOTS))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [element.text for element in root.iter("{http://www.w3.org/2000/svg}text")]
    assert any(text and "3600" in text for text in texts)


def test_charts_skip_missing_data() -> None:
    assert svg.histogram({}) == "" and svg.scatter({"sample": {"reference": [], "candidate": []}}) == ""


def test_nice_ticks() -> None:
    assert svg.nice_ticks(0.0, 2.5) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert svg.nice_ticks(-19.6, 19.8) == [-10.0, 0.0, 10.0]
    assert svg.nice_ticks(1.0, 1.0) == [1.0]


def test_layers_and_fallback_show_in_html_and_markdown() -> None:
    report = _report(_output(quantize="int8", **FALLBACK))
    page = html.render(report)
    assert page.count("<svg") == 2 and "int8&lt;x&gt;" in page
    assert "Layers with the largest quantization error" in page and "m/mix/MatMul (+1 fused)" in page
    assert "Kept in float: m/mix/MatMul (size 30.3 → 33.2 KiB, batch-1 latency 0.004 → 0.005 ms)" in page
    assert "layer_errors=" not in page  # not dumped into the stages table
    text = markdown.render(report)
    assert "| 1 | m/mix/MatMul (+1 fused) | FULLY_CONNECTED | 12.5 | 3 |" in text
    assert "### int8 fallback" in text and "| 1 | 33.2 | pass |" in text


def test_unjudged_fallback_says_why() -> None:
    output = _output(fallback_steps=[], float_layers=[], fallback_note="not judged: no gate check")
    assert "int8 fallback not judged: no gate check." in markdown.render(_report(output))


def test_short_tensor_name() -> None:
    assert short_tensor_name("a/b") == "a/b" and short_tensor_name("a;b;c") == "a (+2 fused)"


def test_github_step_summary_gets_report_md(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    write_reports(_report(_output()), tmp_path / "out")
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "# edgeport report: r" in text
    assert (tmp_path / "out" / "report.md").read_text() in text
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    write_reports(_report(_output()), tmp_path / "again")
    assert summary.read_text() == text  # outside GitHub Actions nothing is appended
