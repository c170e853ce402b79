"""`edgeport compare A B`: ad-hoc parity of any two artifacts, with gates and reports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.commands.compare import artifact_at, default_gates
from pipeline.sources import load_source

from ..cli import edgeport
from ..helpers import run_stage


@pytest.fixture(scope="module")
def files(zoo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compare")
    source = load_source(zoo.keras3).artifact
    tflite = run_stage("tflite", source, root / "int8", zoo.x_test[:64], quantize="int8").path
    onnx = run_stage("onnx", source, root / "onnx").path
    float16 = run_stage("tflite", source, root / "float16", quantize="float16").path
    dynamic_onnx = run_stage("onnx", source, root / "onnx-dynamic", quantize="dynamic").path
    return {
        "keras": zoo.keras3,
        "int8": tflite,
        "onnx": onnx,
        "savedmodel": zoo.exported_savedmodel,
        "float16": float16,
        "onnx-dynamic": dynamic_onnx,
    }


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


INT8_DEFAULTS = "tflite int8 (quantized INT8 activations): cosine >= 0.99, min_cosine >= 0.9"


def test_compare_without_gates_judges_b_by_its_kinds_defaults(zoo, files: dict[str, Path], tmp_path: Path) -> None:
    data = ["--data", zoo.digits_npz, "--inputs", "x_test"]
    # Another model (same inputs, same ten classes): with no gate at all this printed PASSED.
    other = edgeport("compare", zoo.legacy_h5, files["int8"], *data, "--out", tmp_path)
    assert other.returncode == 1, other.stderr + other.stdout
    assert f"warning: no --gate given: B is judged by the default gates of its kind, {INT8_DEFAULTS}" in other.stdout
    assert "✗ model.tflite  cosine" in other.stdout and "FAILED" in other.stdout and "PASSED" not in other.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    output = report["outputs"][0]
    assert output["gates_from"] == "default" and report["exit_code"] == 1
    assert {gate["metric"]: gate["threshold"] for gate in output["parity"]["gates"]} == {
        "cosine": 0.99,
        "min_cosine": 0.9,
    }
    assert INT8_DEFAULTS in report["warnings"][0] and INT8_DEFAULTS in (tmp_path / "report.md").read_text()

    same = edgeport("compare", files["keras"], files["int8"], *data)
    assert same.returncode == 0, same.stderr + same.stdout
    assert INT8_DEFAULTS in same.stdout and "PASSED: 1/1 outputs" in same.stdout

    fp32 = edgeport("compare", files["savedmodel"], files["onnx"], "--samples", "16")
    assert fp32.returncode == 0, fp32.stderr + fp32.stdout
    assert "onnx fp32 (no quantization nodes): max_abs <= 0.0001" in fp32.stdout


def test_the_kind_is_read_from_the_file_not_its_name(files: dict[str, Path], tmp_path: Path) -> None:
    disguised = tmp_path / "model_fp32.tflite"
    shutil.copy(files["int8"], disguised)
    expected = {
        "int8": ({"cosine": 0.99, "min_cosine": 0.9}, "tflite int8 (quantized INT8 activations)"),
        "float16": ({"nrmse": 1e-2, "min_cosine": 0.999}, "tflite float16 (FLOAT16 weights)"),
        "onnx": ({"max_abs": 1e-4}, "onnx fp32 (no quantization nodes)"),
        "onnx-dynamic": ({"cosine": 0.99, "min_cosine": 0.9}, "onnx dynamic"),
        "keras": ({"max_abs": 1e-4}, "keras fp32 (a float32 model)"),
        "savedmodel": ({"max_abs": 1e-4}, "savedmodel fp32 (a float32 model)"),
    }
    for name, (gates, kind) in expected.items():
        got_gates, got_kind = default_gates(artifact_at(files[name]))
        assert got_gates == gates and got_kind.startswith(kind), (name, got_gates, got_kind)
    assert default_gates(artifact_at(disguised)) == default_gates(artifact_at(files["int8"]))


def test_compare_checks_as_run_does_a_quantized_onnx_file_both_ways(
    zoo, files: dict[str, Path], tmp_path: Path
) -> None:
    """compare goes through run's checker: a quantized ONNX file also runs unoptimized (the QDQ graph's own
    arithmetic), compared, as in `run`; the output entry is run's."""
    out = tmp_path / "dyn"
    result = edgeport("compare", files["keras"], files["onnx-dynamic"], "--data", zoo.digits_npz, "--inputs", "x_test",
                      "--out", out)  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    (output,) = json.loads((out / "report.json").read_text())["outputs"]
    kinds = {comparison["kind"]: comparison["roles"] for comparison in output["comparisons"]}
    assert kinds["runtime_setting"] == {"candidate": "unoptimized", "reference": "source"}
    assert "setting_gap" in kinds and output["findings"] is not None and output["rescues"] == []
