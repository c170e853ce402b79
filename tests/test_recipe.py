"""Recipe validation: every mistake names its place and what was expected; no TensorFlow needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import RecipeError
from pipeline.recipe import load_recipe, recipe_schema

from .recipes import write_recipe


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "model.keras").write_bytes(b"placeholder: validate does not load models")
    np.savez(tmp_path / "data.npz", x=np.zeros((4, 8, 8, 1), np.float32), y=np.zeros(4, np.int64))
    return tmp_path


GOOD = """\
name: ok
source: model.keras
data:
  calibration: {npz: data.npz, inputs: x}
  evaluation: {npz: data.npz, inputs: x, labels: y}
outputs:
  fp32: {stages: [tflite]}
  int8:
    stages: [{tflite: {quantize: int8, io: int8}}]
    gates: {cosine: 0.99, accuracy_drop: 0.02}
  onnx: {stages: [{onnx: {opset: 13}}]}
"""


def test_good_recipe_validates_with_typed_options(files: Path) -> None:
    assert load_recipe(write_recipe(files, GOOD.replace("[tflite]}", "[tflite], gates: {float32_noise: 4}}")))
    recipe = load_recipe(write_recipe(files, GOOD))
    int8 = recipe.spec.outputs["int8"]
    assert int8.stages[0].tflite.quantize == "int8"
    assert int8.gates.thresholds() == {"cosine": 0.99, "accuracy_drop": 0.02}
    assert recipe.spec.outputs["onnx"].stages[0].onnx.opset == 13
    assert recipe.source_kind() == "keras"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("quantize: int8, io: int8", "quantise: int8"),
            "outputs.int8.stages[0].tflite.quantise (line 9): unknown key 'quantise'; did you mean 'quantize'?",
        ),
        (("stages: [tflite]", "stages: [tflitee]"), "outputs.fp32.stages[0].tflitee (line 7): unknown stage 'tflitee'"),
        (("cosine: 0.99", "cosine: 2"), "outputs.int8.gates.cosine (line 10): Input should be less than or equal to 1"),
        (("accuracy_drop: 0.02", "max_abss: 0.1"), "unknown key 'max_abss'; did you mean 'max_abs'?"),
        (("opset: 13", "opset: 30"), "outputs.onnx.stages[0].onnx.opset (line 11): Input should be less than"),
        (("quantize: int8, io: int8", "io: int8"), "io: int8 does not go with quantize: none"),
        (("fp32: {stages: [tflite]}", "../x: {stages: [tflite]}"), "outputs (line 6): output name '../x' must match"),
        (
            ("fp32: {stages: [tflite]}", "fp32: {stages: []}"),
            "outputs.fp32.stages (line 7): List should have at least 1",
        ),
        (("name: ok", "name: ok\nextra: 1"), "extra (line 2): unknown key 'extra'"),
        (("inputs: x, labels: y", "labels: y"), "data.evaluation (line 5): npz needs `inputs`"),
        (("stages: [tflite]", "stages: [{tflite: {}, onnx: {}}]"), "names exactly one stage kind (got tflite, onnx)"),
    ],
)
def test_schema_errors_name_the_place(files: Path, change: tuple[str, str], expected: str) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(RecipeError) as error:
        load_recipe(write_recipe(files, text))
    assert expected in str(error.value)


def test_yaml_syntax_error_has_line(files: Path) -> None:
    with pytest.raises(RecipeError, match=r"YAML syntax error at line 3, column \d+"):
        load_recipe(write_recipe(files, "name: x\nsource: m\noutputs: [a: b: c]\n"))


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        pytest.param(
            ("stages: [tflite]", "stages: [tflite, onnx]"),
            r"outputs.fp32.stages\[1\].onnx: onnx takes keras or savedmodel, but stages\[0\] \(tflite\) gives tflite",
            id="chain_that_does_not_type_check",
        ),
        pytest.param(
            ("  calibration: {npz: data.npz, inputs: x}\n", ""),
            r"outputs.int8.stages\[0\].tflite: tflite int8 io=int8 needs data.calibration",
            id="int8_without_calibration_names_the_missing_section",
        ),
        pytest.param(
            ("inputs: x, labels: y", "inputs: x"),
            r"outputs\.int8\.gates: accuracy_drop needs labels",
            id="accuracy_gate_needs_labels",
        ),
        pytest.param(
            ("gates: {cosine: 0.99, accuracy_drop: 0.02}", "gates: {cosine: 0.99, float32_noise: 4}"),
            r"outputs\.int8\.gates\.float32_noise: applies to unquantized tflite and onnx outputs; this output gives "
            r"quantize: int8 tflite",
            id="float32_noise_on_a_quantized_output",
        ),
    ],
)
def test_cross_section_errors_name_the_place(files: Path, change: tuple[str, str], pattern: str) -> None:
    text = GOOD.replace(*change)
    with pytest.raises(RecipeError, match=pattern):
        load_recipe(write_recipe(files, text))


def test_missing_files_and_keys(files: Path) -> None:
    with pytest.raises(RecipeError, match=r"source\.path: .*nope\.keras does not exist"):
        load_recipe(write_recipe(files, GOOD.replace("model.keras", "nope.keras")))
    with pytest.raises(RecipeError, match=r"data.evaluation: key 'labels' is not in data.npz \(it has x, y\)"):
        load_recipe(write_recipe(files, GOOD.replace("labels: y", "labels: labels")))
    with pytest.raises(RecipeError, match=r"not a \.keras/\.h5 file or a SavedModel directory"):
        (files / "model.bin").write_bytes(b"x")
        load_recipe(write_recipe(files, GOOD.replace("model.keras", "model.bin")))


def test_not_a_mapping(files: Path) -> None:
    with pytest.raises(RecipeError, match="a recipe is a YAML mapping"):
        load_recipe(write_recipe(files, "- just\n- a list\n"))
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(files / "absent.yaml")


def test_schema_lists_every_stage_kind() -> None:
    schema = recipe_schema()
    entry = schema["$defs"]["StageEntry"]["properties"]
    assert set(entry) == {"tflite", "onnx", "prune", "qat", "cluster", "litert_quantize"}
    assert schema["additionalProperties"] is False


def test_qat_on_a_keras3_file_is_refused_at_validation(files: Path) -> None:
    text = GOOD.replace("  calibration:", "  fine_tune: {npz: data.npz, inputs: x, labels: y}\n  calibration:").replace(
        "stages: [tflite]", "stages: [qat, {tflite: {quantize: int8}}]"
    )
    with pytest.raises(
        RecipeError, match=r"outputs\.fp32\.stages\[0\]\.qat: qat needs a tf_keras model.*quantize: int8"
    ):
        load_recipe(write_recipe(files, text))
