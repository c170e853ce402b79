"""Data sections: arrays are checked against the model's inputs before any stage runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.core.tensors import TensorSpec
from pipeline.data import load_dataset
from pipeline.errors import DataError
from pipeline.recipe import DataSpec, LoadedRecipe, Recipe

PIXELS = [TensorSpec("pixels", (None, 8, 8, 1), "float32")]


@pytest.fixture
def recipe(tmp_path: Path) -> LoadedRecipe:
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz",
        x=rng.random((10, 8, 8, 1)),
        y=np.arange(10),
        y_short=np.arange(9),
        flat=np.zeros((10, 64)),
        nan=np.full((10, 8, 8, 1), np.nan),
        text=np.array(["a"] * 10),
    )
    spec = Recipe.model_validate({"name": "t", "source": "m.keras", "outputs": {"a": {"stages": ["tflite"]}}})
    return LoadedRecipe(spec=spec, path=tmp_path / "recipe.yaml")


def test_npz_with_limit_labels_and_cast(recipe: LoadedRecipe) -> None:
    spec = DataSpec(npz="d.npz", inputs="x", labels="y", limit=6)
    data = load_dataset("evaluation", spec, recipe.base_dir, PIXELS)
    assert data.samples == 6
    assert data.inputs["pixels"].dtype == np.float32  # float64 in the file, cast without loss of meaning
    assert data.labels is not None and data.labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert [len(b["pixels"]) for b in data.batches(4)] == [4, 2]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (DataSpec(npz="d.npz", inputs="flat"), r"input 'pixels' has shape \[10, 64\], expected shape \[N, 8, 8, 1\]"),
        (DataSpec(npz="d.npz", inputs="x", labels="y_short"), "9 labels for 10 input samples"),
        (DataSpec(npz="d.npz", inputs="nan"), "holds 640 NaN/Inf values"),
        (DataSpec(npz="d.npz", inputs="missing"), "key 'missing' is not in d.npz"),
        (DataSpec(npz="absent.npz", inputs="x"), "absent.npz not found"),
        (DataSpec(npz="d.npz", inputs="x", labels="x"), "expected a 1-D array of integer class ids"),
        (DataSpec(npz="d.npz", inputs={"other": "x"}), "model inputs are pixels; unknown: other; missing: pixels"),
    ],
)
def test_bad_data_is_named(recipe: LoadedRecipe, spec: DataSpec, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_dataset("evaluation", spec, recipe.base_dir, PIXELS)


def test_text_arrays_are_refused(recipe: LoadedRecipe) -> None:
    with pytest.raises(DataError, match="dtype <U1; expected numbers"):
        load_dataset(
            "evaluation",
            DataSpec(npz="d.npz", inputs="text"),
            recipe.base_dir,
            [TensorSpec("pixels", (None,), "float32")],
        )


def test_random_is_seeded_and_shaped(recipe: LoadedRecipe) -> None:
    spec = DataSpec.model_validate({"random": {"samples": 5, "seed": 3, "low": -1, "high": 1}})
    first = load_dataset("calibration", spec, recipe.base_dir, PIXELS)
    second = load_dataset("calibration", spec, recipe.base_dir, PIXELS)
    assert first.inputs["pixels"].shape == (5, 8, 8, 1)
    assert np.array_equal(first.inputs["pixels"], second.inputs["pixels"])
    assert first.inputs["pixels"].min() >= -1 and first.inputs["pixels"].max() < 1


def test_default_evaluation_is_random(recipe: LoadedRecipe) -> None:
    data = load_dataset("evaluation", None, recipe.base_dir, PIXELS)
    assert data.samples == 64 and data.origin.startswith("random(")


def test_random_needs_fixed_shapes(recipe: LoadedRecipe) -> None:
    spec = DataSpec.model_validate({"random": {}})
    with pytest.raises(DataError, match="free dimensions"):
        load_dataset("evaluation", spec, recipe.base_dir, [TensorSpec("seq", (None, None, 4), "float32")])


def test_several_inputs_need_a_mapping(recipe: LoadedRecipe) -> None:
    two = [*PIXELS, TensorSpec("extra", (None, 64), "float32")]
    with pytest.raises(DataError, match="the model has 2 inputs"):
        load_dataset("evaluation", DataSpec(npz="d.npz", inputs="x"), recipe.base_dir, two)
    data = load_dataset(
        "evaluation", DataSpec(npz="d.npz", inputs={"pixels": "x", "extra": "flat"}), recipe.base_dir, two
    )
    assert list(data.inputs) == ["pixels", "extra"]


def test_npy_inputs_and_labels(recipe: LoadedRecipe) -> None:
    rng = np.random.default_rng(1)
    np.save(recipe.base_dir / "x.npy", rng.random((6, 8, 8, 1), dtype=np.float32))
    np.save(recipe.base_dir / "y.npy", np.arange(6))
    data = load_dataset("evaluation", DataSpec(npy="x.npy", labels="y.npy", limit=4), recipe.base_dir, PIXELS)
    assert data.samples == 4 and data.labels is not None and data.labels.tolist() == [0, 1, 2, 3]
    assert data.origin == "x.npy"
