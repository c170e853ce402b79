"""`edgeport compare A B`: ad-hoc parity of any two artifacts, with gates and reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.sources import load_source

from .helpers import run_stage
from .test_cli import edgeport


@pytest.fixture(scope="module")
def files(zoo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compare")
    source = load_source(zoo.keras3).artifact
    tflite = run_stage("tflite", source, root / "int8", zoo.x_test[:64], quantize="int8").path
    onnx = run_stage("onnx", source, root / "onnx").path
    return {"keras": zoo.keras3, "int8": tflite, "onnx": onnx, "savedmodel": zoo.exported_savedmodel}


def test_compare_formats_with_gates_and_reports(zoo, files: dict[str, Path], tmp_path: Path) -> None:
    data = ["--data", zoo.digits_npz, "--inputs", "x_test", "--labels", "y_test"]
    result = edgeport("compare", files["keras"], files["int8"], *data, "--gate", "cosine=0.99", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    parity = report["outputs"][0]["parity"]
    assert parity["samples"] == len(zoo.x_test) and parity["metrics"]["cosine"] > 0.99
    assert 0.9 < parity["metrics"]["accuracy"] <= 1 and (tmp_path / "junit.xml").is_file()

    failing = edgeport("compare", files["savedmodel"], files["int8"], "--gate", "logits.max_abs=1e-6")
    assert failing.returncode == 1 and "✗" in failing.stdout

    same = edgeport("compare", files["onnx"], files["savedmodel"], "--gate", "max_abs=1e-4", "--samples", "16")
    assert same.returncode == 0, same.stderr + same.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gate", "max_abss=1"], "--gate: max_abss"),
        (["--gate", "cosine"], "expected METRIC=VALUE"),
        (["--data", "absent.npz", "--inputs", "x"], "absent.npz"),
    ],
)
def test_compare_bad_input_exits_2(files: dict[str, Path], args: list[str], message: str) -> None:
    result = edgeport("compare", files["keras"], files["onnx"], *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_compare_missing_model(files: dict[str, Path], tmp_path: Path) -> None:
    result = edgeport("compare", files["keras"], tmp_path / "nope.tflite")
    assert result.returncode == 2 and "nope.tflite: model not found" in result.stderr
