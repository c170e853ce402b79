"""Models with several named inputs and outputs, end to end: data mapping, per-tensor metrics and gates."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from .conftest import write_recipe
from .test_cli import edgeport


@pytest.fixture(scope="module")
def two_headed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """image + meta → logits (10) and score (1); meta is scaled up so its quantization range matters."""
    from pipeline.frameworks import captured_native_output, import_tensorflow

    import_tensorflow()
    import keras

    root = tmp_path_factory.mktemp("two_headed")
    with captured_native_output():
        keras.utils.set_random_seed(0)
        image, meta = keras.Input((8, 8, 1), name="image"), keras.Input((4,), name="meta")
        features = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(image))
        joined = keras.layers.Concatenate()([features, keras.layers.Dense(4)(meta)])
        logits = keras.layers.Dense(10, name="logits")(joined)
        score = keras.layers.Dense(1, name="score")(joined)
        keras.Model([image, meta], [logits, score]).save(root / "two_headed.keras")
    rng = np.random.default_rng(0)
    np.savez(
        root / "data.npz",
        pixels=rng.random((96, 8, 8, 1), dtype=np.float32),
        extra=rng.random((96, 4), dtype=np.float32) * 50,
        labels=rng.integers(0, 10, 96),
    )
    return root


RECIPE = """\
name: two-headed
source: two_headed.keras
data:
  calibration: {npz: data.npz, inputs: {image: pixels, meta: extra}, limit: 48}
  evaluation: {npz: data.npz, inputs: {image: pixels, meta: extra}, labels: labels}
outputs:
  fp32:
    stages: [tflite]
    gates: {max_abs: 1.0e-4, score: {max_abs: 1.0e-4}}
    runtime: {delegate: both}
  int8:
    stages: [{tflite: {quantize: int8}}]
    gates: {logits: {cosine: 0.99}, score: {cosine: 0.99}}
  onnx: {stages: [onnx], gates: {logits: {max_abs: 1.0e-4}, score: {max_abs: 1.0e-4}}}
  onnx-static: {stages: [{onnx: {quantize: static}}], gates: {cosine: 0.98}}
"""


def test_two_inputs_two_outputs_end_to_end(two_headed: Path) -> None:
    out = two_headed / "out"
    result = edgeport("run", write_recipe(two_headed, RECIPE), "--out", out)
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads((out / "report.json").read_text())
    outputs = {output["name"]: output for output in report["outputs"]}
    fp32 = outputs["fp32"]
    assert set(fp32["parity"]["tensors"]) == {"logits", "score"}
    assert fp32["parity"]["tensors"]["score"]["max_abs"] < 1e-4
    gate_names = {(gate["tensor"], gate["metric"]) for gate in fp32["parity"]["gates"]}
    assert gate_names == {(None, "max_abs"), ("score", "max_abs")}
    # delegate: both → the no-delegate run is gated too, and its gap to XNNPACK is reported
    without, gap = fp32["comparisons"]
    assert "none delegate" in without["candidate"] and without["gates"] and all(g["passed"] for g in without["gates"])
    assert "xnnpack delegate" in gap["reference"] and gap["metrics"]["max_abs"] < 1e-4
    int8 = outputs["int8"]
    assert {gate["tensor"] for gate in int8["parity"]["gates"]} == {"logits", "score"}
    assert int8["parity"]["tensors"]["score"]["cosine"] > 0.99
    assert outputs["onnx-static"]["parity"]["metrics"]["cosine"] > 0.98
    cases = [case.get("name") for case in ET.parse(out / "junit.xml").getroot().iter("testcase")]
    assert any(name.startswith("score.max_abs") for name in cases)
    assert "score.cosine" in result.stdout


def test_gate_on_an_unknown_tensor_is_bad_input(two_headed: Path) -> None:
    text = RECIPE.replace("score: {max_abs: 1.0e-4}}\n    runtime", "boxes: {max_abs: 1.0e-4}}\n    runtime")
    result = edgeport("run", write_recipe(two_headed, text, "bad.yaml"), "--out", two_headed / "bad")
    assert result.returncode == 2
    assert "outputs.fp32.gates: the source model has no output 'boxes' (its outputs: logits, score)" in result.stderr


def test_a_single_npz_key_for_two_inputs_is_bad_input(two_headed: Path) -> None:
    text = RECIPE.replace(
        "evaluation: {npz: data.npz, inputs: {image: pixels, meta: extra}", "evaluation: {npz: data.npz, inputs: pixels"
    )
    result = edgeport("run", write_recipe(two_headed, text, "bad2.yaml"), "--out", two_headed / "bad2")
    assert result.returncode == 2
    assert "the model has 2 inputs (image, meta)" in result.stderr
