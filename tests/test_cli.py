"""The command line driven as a user drives it: real runs in a subprocess, exit codes and files."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pipeline.artifacts import sha256_of

from .cli import edgeport, edgeport_watching, imported
from .recipes import recipe_file, write_recipe


def digits_recipe(zoo, source: Path, outputs: str, evaluation: str = "inputs: x_test, labels: y_test") -> str:
    return f"""\
name: digits
source: {source}
data:
  calibration: {{npz: {zoo.digits_npz}, inputs: x_train, limit: 100}}
  evaluation: {{npz: {zoo.digits_npz}, {evaluation}}}
outputs:
{outputs}"""


def test_run_writes_gated_reports_and_shares_prefixes(zoo, tmp_path: Path) -> None:
    outputs = """\
  fp32: {stages: [tflite], gates: {max_abs: 1.0e-4, accuracy_drop: 0.0}}
  fp32-again: {stages: [tflite]}
  int8:
    stages: [{tflite: {quantize: int8, io: int8}}]
    gates: {top1_agreement: 0.97, accuracy_drop: 0.03}
  onnx: {stages: [{onnx: {opset: 15}}]}
"""
    recipe = write_recipe(tmp_path, digits_recipe(zoo, zoo.keras3, outputs))
    out = tmp_path / "out"
    result = edgeport("run", recipe, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "PASSED: 4/4 outputs" in result.stdout
    assert "[3/4] int8: tflite int8 io=int8" in result.stderr  # progress, stage by stage

    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == 1 and report["passed"] is True and report["exit_code"] == 0
    assert report["source"]["sha256"] == sha256_of(zoo.keras3)
    assert report["environment"]["packages"]["tensorflow"] == "2.21.0"
    outputs_by_name = {output["name"]: output for output in report["outputs"]}
    fp32, again, int8 = outputs_by_name["fp32"], outputs_by_name["fp32-again"], outputs_by_name["int8"]
    assert fp32["parity"]["metrics"]["max_abs"] < 1e-4
    assert fp32["parity"]["samples"] == len(zoo.x_test)
    assert again["stages"][0]["reused"] is True and fp32["stages"][0]["reused"] is False
    assert again["gates_from"] == "default" and again["parity"]["gates"][0]["metric"] == "max_abs"
    assert fp32["sha256"] == sha256_of(out / "fp32" / "model.tflite")
    # one conversion, two files: each says which output it is (its provenance), so their bytes differ
    assert again["stages"][0]["key"] == fp32["stages"][0]["key"] and again["sha256"] != fp32["sha256"]
    assert again["sha256"] == sha256_of(out / "fp32-again" / "model.tflite")
    assert (again["provenance"]["output"], fp32["provenance"]["output"]) == ("fp32-again", "fp32")
    assert int8["size_bytes"] < 0.5 * fp32["size_bytes"]
    assert int8["gzip_bytes"] < int8["size_bytes"]
    assert 0.9 < int8["parity"]["metrics"]["accuracy"] <= 1.0
    assert outputs_by_name["onnx"]["runtime"] == "onnxruntime" and (out / "onnx" / "model.onnx").is_file()

    suite = ET.parse(out / "junit.xml").getroot()
    cases = suite.findall(".//testcase")
    assert len(cases) == sum(len(o["parity"]["gates"]) for o in report["outputs"])
    assert not suite.findall(".//failure") and not suite.findall(".//error")
    assert "<table" in (out / "report.html").read_text()
    assert "| int8 |" in (out / "report.md").read_text()


def test_failing_gate_exits_1_and_shows_in_every_report(zoo, tmp_path: Path) -> None:
    outputs = "  int8:\n    stages: [{tflite: {quantize: int8}}]\n    gates: {max_abs: 1.0e-6}\n"
    recipe = write_recipe(tmp_path, digits_recipe(zoo, zoo.keras3, outputs))
    result = edgeport("run", recipe, "--out", tmp_path / "out")
    assert result.returncode == 1, result.stderr
    assert "✗ int8" in result.stdout and "FAILED" in result.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    gate = report["outputs"][0]["parity"]["gates"][0]
    assert report["passed"] is False and gate["passed"] is False and gate["value"] > 1e-6
    failures = ET.parse(tmp_path / "out" / "junit.xml").getroot().findall(".//failure")
    assert len(failures) == 1 and "max_abs" in failures[0].get("message", "")


def test_stage_error_exits_3_while_other_outputs_run(zoo, tmp_path: Path) -> None:
    recipe = recipe_file(
        tmp_path,
        name="bincount",
        source=zoo.bincount_keras,
        data={"evaluation": {"random": {"samples": 16, "low": 0, "high": 8}}},
        outputs={"tflite": {"stages": ["tflite"]}, "onnx": {"stages": ["onnx"]}},
    )
    result = edgeport("run", recipe, "--out", tmp_path / "out")
    assert result.returncode == 3, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    statuses = {output["name"]: output["status"] for output in report["outputs"]}
    assert statuses == {"tflite": "error", "onnx": "passed"}
    assert "DenseBincount" in report["outputs"][0]["error"]
    assert not (tmp_path / "out" / "tflite" / "model.tflite").exists()
    errors = ET.parse(tmp_path / "out" / "junit.xml").getroot().findall(".//error")
    assert len(errors) == 1


def test_savedmodel_from_tf_saved_model_save_converts_to_finite_tflite(zoo, tmp_path: Path) -> None:
    outputs = "  fp32: {stages: [tflite]}\n  onnx: {stages: [onnx]}\n"
    recipe = write_recipe(
        tmp_path,
        digits_recipe(zoo, zoo.saved_savedmodel, outputs, evaluation="inputs: {inputs: x_test}, labels: y_test"),
    )
    result = edgeport("run", recipe, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    fp32 = report["outputs"][0]
    assert fp32["parity"]["nonfinite"] == 0 and fp32["parity"]["metrics"]["max_abs"] < 1e-4
    assert any("frozen concrete function" in warning for warning in fp32["warnings"])
    assert report["source"]["format"] == "savedmodel"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown_key", r"outputs.fp32.stages\[0\].tflite.quantise \(line 7\): unknown key 'quantise'"),
        ("missing_model", "source.path: .*absent.keras does not exist"),
        ("corrupt_model", "cannot load the model"),
        ("untrusted_lambda", "refused: the model runs arbitrary Python code when loaded"),
        ("wrong_shape", r"data.evaluation: input 'pixels' has shape \[\d+, 64\], expected shape \[N, 8, 8, 1\]"),
        ("wrong_signature", "no signature 'predict' .*set source.signature"),
    ],
)
def test_bad_input_exits_2_with_one_clear_message(zoo, tmp_path: Path, case: str, message: str) -> None:
    import numpy as np

    good = digits_recipe(zoo, zoo.keras3, "  fp32: {stages: [tflite]}\n")
    if case == "unknown_key":
        text = good.replace("stages: [tflite]", "stages: [{tflite: {quantise: int8}}]")
    elif case == "missing_model":
        text = good.replace(str(zoo.keras3), str(tmp_path / "absent.keras"))
    elif case == "corrupt_model":
        (tmp_path / "corrupt.keras").write_bytes(os.urandom(512))
        text = good.replace(str(zoo.keras3), str(tmp_path / "corrupt.keras"))
    elif case == "untrusted_lambda":
        text = good.replace(str(zoo.keras3), str(zoo.lambda_keras)).replace("  calibration", "  #")
        text = text.replace(f"{{npz: {zoo.digits_npz}, inputs: x_test, labels: y_test}}", "{random: {samples: 8}}")
    elif case == "wrong_shape":
        np.savez(tmp_path / "flat.npz", x=np.zeros((10, 64), np.float32))
        text = good.replace(
            f"{{npz: {zoo.digits_npz}, inputs: x_test, labels: y_test}}", f"{{npz: {tmp_path / 'flat.npz'}, inputs: x}}"
        )
    else:
        text = good.replace(f"source: {zoo.keras3}", f"source: {{path: {zoo.exported_savedmodel}, signature: predict}}")
    out = tmp_path / "out"
    result = edgeport("run", write_recipe(tmp_path, text), "--out", out)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("edgeport: error:")]
    assert len(error_lines) == 1
    assert __import__("re").search(message, result.stderr), result.stderr
    assert not (out / "report.json").exists()


def test_trusted_lambda_model_runs(zoo, tmp_path: Path) -> None:
    recipe = recipe_file(tmp_path, name="lambda", source=zoo.lambda_keras, outputs={"fp32": {"stages": ["tflite"]}})
    result = edgeport("run", recipe, "--out", tmp_path / "out", "--trust-model")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["data"]["evaluation"]["origin"].startswith("random(samples=64")


def test_validate_and_schema_do_not_import_tensorflow(zoo, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, digits_recipe(zoo, zoo.keras3, "  fp32: {stages: [tflite]}\n"))
    for args in (["validate", recipe], ["schema"]):
        result = edgeport_watching(*args)
        assert result.returncode == 0, result.stderr
        assert not imported(result, "tensorflow")
    assert "valid recipe 'digits'" in edgeport("validate", recipe).stdout
    schema = json.loads(edgeport("schema").stdout)
    assert "outputs" in schema["required"]


def test_inspect_every_format(zoo, tmp_path: Path) -> None:
    from pipeline.sources import load_source

    from .helpers import run_stage

    tflite = run_stage("tflite", load_source(zoo.keras3).artifact, tmp_path / "t")
    result = edgeport("inspect", zoo.keras3)
    assert result.returncode == 0 and "pixels" in result.stdout and "[?, 8, 8, 1]" in result.stdout
    described = json.loads(edgeport("inspect", tflite.path, "--json").stdout)
    assert described["format"] == "tflite"
    assert described["signatures"]["default"]["outputs"][0]["shape"] == ["?", 10]
    saved = json.loads(edgeport("inspect", zoo.exported_savedmodel, "--json").stdout)
    assert "serving_default" in saved["signatures"]
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    result = edgeport("inspect", broken)
    assert result.returncode == 2 and "broken.onnx: cannot open as onnx" in result.stderr


@pytest.mark.parametrize("strict", [True, False])
def test_converter_warnings_are_reported_and_can_fail_the_stage(zoo, tmp_path: Path, strict: bool) -> None:
    recipe = write_recipe(
        tmp_path,
        f"""\
name: flex
source: {zoo.bincount_keras}
fail_on_converter_warnings: {str(strict).lower()}
data:
  evaluation: {{random: {{samples: 8, low: 0, high: 8}}}}
outputs:
  flex: {{stages: [{{tflite: {{supported_ops: [builtins, select_tf_ops]}}}}]}}
""",
    )
    result = edgeport("run", recipe, "--out", tmp_path / "out")
    assert result.returncode == 3
    output = json.loads((tmp_path / "out" / "report.json").read_text())["outputs"][0]
    assert any("FlexDenseBincount" in warning for warning in output["warnings"])
    if strict:
        assert output["error"].startswith("converter warnings (fail_on_converter_warnings is set)")
        assert output["artifact"] is None
    else:  # the file was made, but LiteRT here cannot run Flex ops: said plainly, not as a crash
        assert "TF Select (Flex) ops FlexDenseBincount" in output["error"]


def test_a_failure_while_publishing_is_exit_3_with_one_line_and_the_report(zoo, tmp_path: Path) -> None:
    recipe = write_recipe(
        tmp_path, digits_recipe(zoo, zoo.keras3, "  fp32: {stages: [tflite]}\n  onnx: {stages: [onnx]}\n")
    )
    out = tmp_path / "out"
    out.mkdir()
    (out / "fp32").write_text("a file where the output's folder belongs")
    result = edgeport("run", recipe, "--out", out)
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    report = json.loads((out / "report.json").read_text())
    statuses = {output["name"]: (output["status"], output["error"]) for output in report["outputs"]}
    assert statuses["onnx"] == ("passed", None)
    assert statuses["fp32"][0] == "error" and "could not publish the artifact" in statuses["fp32"][1]


def test_compare_of_runs_that_cannot_be_compared_is_exit_3_not_a_traceback(zoo, tmp_path: Path) -> None:
    import keras

    inputs = keras.Input((8, 8, 1), name="pixels")
    keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs))).save(tmp_path / "three.keras")
    out = tmp_path / "out"
    result = edgeport("compare", zoo.keras3, tmp_path / "three.keras", "--out", out)
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr + result.stdout
    (output,) = json.loads((out / "report.json").read_text())["outputs"]
    assert output["status"] == "error" and "cannot compare the two runs" in output["error"]
