"""Data hygiene: the report warns when the gates are measured on the data quantization was tuned on, or when
int8 is calibrated on random inputs; random integer inputs are not all zeros."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.tensors import TensorSpec
from pipeline.data import load_dataset
from pipeline.recipe import DataSpec, load_recipe
from pipeline.report.text import summary
from pipeline.run import RunOptions, run_recipe

from ..recipes import recipe_file


def _warnings(zoo, tmp_path: Path, calibration: dict, evaluation: np.ndarray) -> tuple[list[str], str]:
    """calibration: {"inputs": "x_cal" | "x_eval"} reads data.npz (x_cal: the first 80 test samples); else as given."""
    tmp_path.mkdir(exist_ok=True)
    npz = tmp_path / "data.npz"
    with np.load(zoo.digits_npz) as data:
        np.savez(npz, x_cal=data["x_test"][:80], x_eval=evaluation)
    data = {
        "calibration": {"npz": npz, **calibration} if "inputs" in calibration else calibration,
        "evaluation": {"npz": npz, "inputs": "x_eval"},
    }
    outputs = {"int8": {"stages": [{"tflite": {"quantize": "int8"}}]}}
    recipe = recipe_file(tmp_path, name="hygiene", source=zoo.keras3, data=data, outputs=outputs)
    report = run_recipe(load_recipe(recipe), RunOptions(out_dir=tmp_path / "out"), log=print)
    return report["warnings"], summary(report)


def test_calibrating_on_the_evaluation_samples_is_warned(zoo, tmp_path: Path) -> None:
    same, printed = _warnings(zoo, tmp_path, {"inputs": "x_eval"}, zoo.x_test[:80])
    assert len(same) == 1 and "are the same samples" in same[0] and "warning: data.calibration" in printed
    assert "are the same samples" in (tmp_path / "out" / "report.md").read_text()


def test_a_partial_overlap_is_counted(zoo, tmp_path: Path) -> None:
    evaluation = np.concatenate([zoo.x_test[:30], zoo.x_test[100:150]])  # 30 of 80 also calibrate
    (overlap,), _ = _warnings(zoo, tmp_path, {"inputs": "x_cal"}, evaluation)
    assert overlap.startswith("30 of the 80 evaluation samples are also calibration samples")


def test_held_out_data_gets_no_warning_but_random_calibration_does(zoo, tmp_path: Path) -> None:
    held_out, _ = _warnings(zoo, tmp_path / "a", {"inputs": "x_cal"}, zoo.x_test[100:180])
    assert held_out == []
    (random,), _ = _warnings(zoo, tmp_path / "b", {"random": {"samples": 32}}, zoo.x_test[100:180])
    assert "calibrated on random inputs" in random and "int8" in random


def test_random_integer_inputs_cover_both_bounds(tmp_path: Path) -> None:
    spec = DataSpec.model_validate({"random": {"samples": 200, "seed": 0}})
    tokens = TensorSpec(name="tokens", shape=(None, 4), dtype="int32")
    values = load_dataset("evaluation", spec, tmp_path, [tokens]).inputs["tokens"]
    assert set(np.unique(values)) == {0, 1}  # [0, 1] inclusive: not all zeros
