"""TensorFlow 1 models as their authors shipped them (#37), through `edgeport validate` and `edgeport run` as a user
runs them: a Saver checkpoint saved to `folder/` whose record names the author's machine, and a frozen graph whose
`training` switch defaults to True, fed `false` by the recipe. Both reach fp32 TFLite and ONNX within default
gates, and neither file has the fed switch as an input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from ai_edge_litert.interpreter import Interpreter

from ..cli import edgeport, run_report
from ..recipes import recipe_file
from ..sources.test_tf1_real import ShippedTf1, build_shipped_tf1

OUTPUTS = {"fp32": {"stages": ["tflite"]}, "onnx": {"stages": ["onnx"]}}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> ShippedTf1:
    return build_shipped_tf1(tmp_path_factory.mktemp("shipped"))


def _recipe(shipped: ShippedTf1, name: str, source: dict) -> Path:
    data = {"evaluation": {"npz": "data.npz", "inputs": "x"}}
    return recipe_file(shipped.root, name=name, source=source, outputs=OUTPUTS, data=data, file=f"{name}.yaml")


def _max_abs(report: dict) -> dict[str, float]:
    return {entry["name"]: entry["parity"]["metrics"]["max_abs"] for entry in report["outputs"]}


def test_a_checkpoint_saved_to_a_folder_reaches_tflite_and_onnx(shipped: ShippedTf1, tmp_path: Path) -> None:
    """Given as `model/`, as its authors restore it; its record names /home/author/model/."""
    recipe = _recipe(shipped, "folder", {"checkpoint": "model/", "feeds": {"training": False}})
    report = run_report(recipe, tmp_path / "folder", 0)
    assert {entry["name"]: entry["status"] for entry in report["outputs"]} == {"fp32": "passed", "onnx": "passed"}
    assert max(_max_abs(report).values()) < 1e-5
    assert report["source"]["format"] == "checkpoint"
    assert (
        f"{shipped.folder / 'checkpoint'}: names /home/author/model/, which is not here; using the empty prefix "
        "(.index, .meta, .data-*) in this directory"
    ) in report["warnings"]


def test_a_training_switch_fed_false_is_folded_into_every_file(shipped: ShippedTf1, tmp_path: Path) -> None:
    recipe = _recipe(shipped, "fed", {"graph": "switch.pb", "outputs": ["y"], "feeds": {"training": False}})
    checked = edgeport("validate", recipe)
    assert checked.returncode == 0 and "warning" not in checked.stderr, checked.stderr
    out = tmp_path / "fed"
    report = run_report(recipe, out, 0)
    assert max(_max_abs(report).values()) < 1e-5 and report["source"]["feeds"] == {"training": False}
    assert not any("training" in warning for warning in report["warnings"])
    # the files answer as the TF1 session did in inference mode, with x their one input
    data = np.load(shipped.data)
    session = onnxruntime.InferenceSession(str(out / "onnx" / "model.onnx"))
    assert [tensor.name for tensor in session.get_inputs()] == ["x"]
    assert np.abs(session.run(None, {"x": data["x"]})[0] - data["reference"]).max() < 1e-5
    interpreter = Interpreter(str(out / "fp32" / "model.tflite"))
    assert len(interpreter.get_input_details()) == 1


def test_an_unfed_training_switch_is_a_warning_at_validate_with_the_line_to_add(shipped: ShippedTf1) -> None:
    line = "add `feeds: {training: false}` to the source"
    for name, source in {
        "unfed-graph": {"graph": "switch.pb", "outputs": ["y"]},
        "unfed-checkpoint": {"checkpoint": "model"},
    }.items():
        checked = edgeport("validate", _recipe(shipped, name, source))
        assert checked.returncode == 0, checked.stderr
        assert "placeholder training defaults to True: the reference and every file it makes run in training" in (
            checked.stderr
        )
        assert line in checked.stderr and "Traceback" not in checked.stderr


def test_init_feeds_a_training_switch_its_inference_value(shipped: ShippedTf1, tmp_path: Path) -> None:
    recipe = tmp_path / "init.yaml"
    written = edgeport("init", shipped.frozen, "--out", recipe)
    assert written.returncode == 0, written.stderr
    assert "feeds training: false: its default keeps the model training" in written.stdout
    assert "source: {graph: " in recipe.read_text() and "outputs: [y], feeds: {training: false}}" in recipe.read_text()
    checked = edgeport("validate", recipe)
    assert checked.returncode == 0 and "warning" not in checked.stderr, checked.stderr
