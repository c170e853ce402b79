"""Models with several named inputs and outputs, end to end: data mapping, per-tensor metrics and gates."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ..cli import edgeport
from ..recipes import write_recipe


def _saved_model(root: Path, build: Callable[[Any], Any]) -> Any:
    """`build(keras)` → a Keras 3 model, built seeded and quietly, saved as root/<root's name>.keras."""
    from pipeline.frameworks import captured_native_output, import_tensorflow

    import_tensorflow()
    import keras

    with captured_native_output():
        keras.utils.set_random_seed(0)
        model = build(keras)
        model.save(root / f"{root.name}.keras")
    return model


def _two_headed(keras: Any) -> Any:
    image, meta = keras.Input((8, 8, 1), name="image"), keras.Input((4,), name="meta")
    features = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(image))
    joined = keras.layers.Concatenate()([features, keras.layers.Dense(4)(meta)])
    logits = keras.layers.Dense(10, name="logits")(joined)
    score = keras.layers.Dense(1, name="score")(joined)
    return keras.Model([image, meta], [logits, score])


@pytest.fixture(scope="module")
def two_headed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """image + meta → logits (10) and score (1); meta is scaled up so its quantization range matters."""
    root = tmp_path_factory.mktemp("two_headed", numbered=False)
    _saved_model(root, _two_headed)
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


def _two_classifiers(keras: Any) -> Any:
    image = keras.Input((8, 8, 1), name="image")
    features = keras.layers.Flatten()(image)
    return keras.Model(image, [keras.layers.Dense(10, name=name)(features) for name in ("coarse", "fine")])


@pytest.fixture(scope="module")
def two_classifiers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits → `coarse` and `fine`, both 10 classes: labels could belong to either head."""
    root = tmp_path_factory.mktemp("two_classifiers", numbered=False)
    model = _saved_model(root, _two_classifiers)
    rng = np.random.default_rng(1)
    pixels = rng.random((120, 8, 8, 1), dtype=np.float32)
    labels = np.argmax(model.predict(pixels, verbose=0)[1], axis=1)  # the fine head is right on every sample
    np.savez(root / "data.npz", pixels=pixels, labels=labels)
    return root


def _labelled_recipe(labels: object) -> str:
    return (
        "name: two-classifiers\nsource: two_classifiers.keras\n"
        f"data:\n  evaluation: {{npz: data.npz, inputs: pixels, labels: {labels}}}\n"
        "outputs:\n  fp32: {stages: [tflite], gates: {accuracy: 0.99}}\n"
    )


def test_labels_that_two_heads_could_hold_must_name_their_output(two_classifiers: Path) -> None:
    recipe = write_recipe(two_classifiers, _labelled_recipe("labels"), "ambiguous.yaml")
    result = edgeport("run", recipe, "--out", two_classifiers / "ambiguous")
    assert result.returncode == 2, result.stderr
    assert "data.evaluation.labels: 2 outputs can hold these labels (coarse, fine)" in result.stderr
    assert "output: coarse" in result.stderr and "Traceback" not in result.stderr
    assert not (two_classifiers / "ambiguous" / "report.json").exists()
    unknown = write_recipe(two_classifiers, _labelled_recipe("{key: labels, output: medium}"), "unknown.yaml")
    result = edgeport("run", unknown, "--out", two_classifiers / "unknown")
    assert result.returncode == 2
    assert "data.evaluation.labels.output: 'medium' is no output of the model (it has coarse, fine)" in result.stderr


def test_named_labels_measure_the_accuracy_of_their_head_only(two_classifiers: Path) -> None:
    recipe = write_recipe(two_classifiers, _labelled_recipe("{key: labels, output: fine}"), "fine.yaml")
    out = two_classifiers / "fine"
    result = edgeport("run", recipe, "--out", out)
    assert result.returncode == 0, result.stderr + result.stdout
    parity = json.loads((out / "report.json").read_text())["outputs"][0]["parity"]
    assert parity["metrics"]["accuracy"] == parity["tensors"]["fine"]["accuracy"] == 1.0
    assert "accuracy" not in parity["tensors"]["coarse"]  # today's first head would have stood for the model
