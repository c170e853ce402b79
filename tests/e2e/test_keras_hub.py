"""Models nobody here wrote, called as their authors call them: keras-hub backbones built tiny with random weights
(no preset, nothing downloaded), saved as `.keras`, and taken through fp32 TFLite, int8 TFLite and ONNX with gates.

Their inputs are dicts (`token_ids`, `padding_mask`, ...), their outputs dicts too; a dict-input classifier of our
own goes through `prune`, since fit must get the dict as well."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scripts.zoo import hub_backbones

from ..cli import run_report
from ..recipes import recipe_file

keras_hub = pytest.importorskip("keras_hub")

SEQUENCE, VOCABULARY = 16, 100
FP32 = {"stages": ["tflite"], "gates": {"max_abs": 1e-4}}
# Random weights are int8's worst case; a trained model keeps far more. The gate still catches a broken file.
INT8 = {"stages": [{"tflite": {"quantize": "int8"}}], "gates": {"cosine": 0.95}}
ONNX = {"stages": ["onnx"], "gates": {"max_abs": 1e-4}}
EXACT_GELU = {"vit", "whisper"}  # gelu(approximate=False)


@dataclass
class Backbone:
    model: Path
    data: Path  # npz: one key per model input, 64 samples to evaluate on
    calibration: Path  # 32 other samples, drawn from another seed
    inputs: list[str]


def _text_inputs(rng: np.random.Generator, samples: int) -> dict[str, np.ndarray]:
    mask = np.ones((samples, SEQUENCE), np.int32)
    mask[:, SEQUENCE // 2 :] = rng.integers(0, 2, (samples, SEQUENCE - SEQUENCE // 2))
    mask = np.sort(mask, axis=1)[:, ::-1].copy()  # padding at the end, as tokenizers leave it
    return {"token_ids": rng.integers(0, VOCABULARY, (samples, SEQUENCE)).astype(np.int32), "padding_mask": mask}


def _builders() -> dict[str, Any]:
    """The zoo's tiny backbones (scripts/zoo.py), the four these tests take through every format."""
    return {name: hub_backbones()[name][0] for name in ("bert", "gpt2", "vit", "whisper")}


def _inputs_for(name: str, rng: np.random.Generator, samples: int) -> dict[str, np.ndarray]:
    if name in {"bert", "gpt2"}:
        inputs = _text_inputs(rng, samples)
        if name == "bert":
            inputs["segment_ids"] = np.zeros((samples, SEQUENCE), np.int32)
        return inputs
    if name == "vit":
        return {"images": rng.random((samples, 32, 32, 3), dtype=np.float32)}
    text = _text_inputs(rng, samples)
    return {
        "encoder_features": rng.standard_normal((samples, 32, 8)).astype(np.float32),
        "decoder_token_ids": text["token_ids"],
        "decoder_padding_mask": text["padding_mask"],
    }


@pytest.fixture(scope="session")
def backbones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Backbone]:
    import keras

    root = tmp_path_factory.mktemp("keras_hub")
    made = {}
    for name, build in _builders().items():
        keras.utils.set_random_seed(0)
        model = build()
        inputs = _inputs_for(name, np.random.default_rng(0), 64)
        model.predict_on_batch(inputs)  # called once, as Keras' own export asks
        model.save(root / f"{name}.keras")
        np.savez(root / f"{name}.npz", **inputs)
        np.savez(root / f"{name}_calibration.npz", **_inputs_for(name, np.random.default_rng(1), 32))
        made[name] = Backbone(
            root / f"{name}.keras", root / f"{name}.npz", root / f"{name}_calibration.npz", sorted(inputs)
        )
    return made


def _data(backbone: Backbone) -> dict[str, Any]:
    keys = {name: name for name in backbone.inputs}
    # Calibrated and evaluated on different samples: the same ones would make int8 look better than it is.
    return {
        "calibration": {"npz": backbone.calibration, "inputs": keys},
        "evaluation": {"npz": backbone.data, "inputs": keys},
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bert", "gpt2", "vit", "whisper"])
def test_a_backbone_converts_and_passes_its_gates(backbones: dict[str, Backbone], tmp_path: Path, name: str) -> None:
    backbone = backbones[name]
    outputs = {"fp32": FP32, "int8": INT8, "onnx": ONNX}
    source = {"path": backbone.model, "trusted": True}
    recipe = recipe_file(tmp_path, name=name, source=source, data=_data(backbone), outputs=outputs)
    report = run_report(recipe, tmp_path / "out", 0)
    assert [spec.split(" ")[0] for spec in report["source"]["inputs"]] == backbone.inputs
    for output in report["outputs"]:
        assert output["status"] == "passed", output
        assert output["parity"]["samples"] == 64
        metrics = output["parity"]["metrics"]
        assert metrics["max_abs"] < (1e-4 if output["name"] != "int8" else 10.0)
    # tf2onnx emits Erfc for exact GELU, which ONNX lacks: the rescue rewrites it as 1 - Erf, and says so.
    rescues = {output["name"]: [r["name"] for r in output["rescues"]] for output in report["outputs"]}
    assert rescues == {"fp32": [], "int8": [], "onnx": ["erfc_as_erf"] if name in EXACT_GELU else []}


@pytest.mark.slow
def test_without_the_rescue_exact_gelu_onnx_fails_on_erfc_with_that_as_the_message(
    backbones: dict[str, Backbone], tmp_path: Path
) -> None:
    source = {"path": backbones["vit"].model, "trusted": True}
    onnx = {"stages": [{"onnx": {"rescue": False}}], "gates": {"max_abs": 1e-4}}
    recipe = recipe_file(tmp_path, name="vit", source=source, data=_data(backbones["vit"]), outputs={"onnx": onnx})
    report = run_report(recipe, tmp_path / "out", 3)
    assert "No Op registered for Erfc" in report["outputs"][0]["error"]
    assert report["outputs"][0]["rescues"] == []


def test_a_dict_input_classifier_is_pruned_and_converted(tmp_path: Path) -> None:
    """fit gets the dict the model was built with; a list would fail Keras' structure check."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = {"pixels": keras.Input((8,), name="pixels"), "extra": keras.Input((4,), name="extra")}
    joined = keras.layers.Concatenate()([inputs["pixels"], inputs["extra"]])
    hidden = keras.layers.Dense(32, activation="relu", name="hidden")(joined)
    model = keras.Model(inputs, {"probs": keras.layers.Dense(3, activation="softmax", name="probs")(hidden)})
    model.save(tmp_path / "dict.keras")
    rng = np.random.default_rng(0)
    arrays = {"pixels": rng.random((96, 8), dtype=np.float32), "extra": rng.random((96, 4), dtype=np.float32)}
    np.savez(tmp_path / "train.npz", **{k: v[:64] for k, v in arrays.items()}, y=rng.integers(0, 3, 64))
    np.savez(tmp_path / "test.npz", **{k: v[64:] for k, v in arrays.items()})
    keys = {"pixels": "pixels", "extra": "extra"}
    data = {
        "fine_tune": {"npz": "train.npz", "inputs": keys, "labels": "y"},
        "evaluation": {"npz": "test.npz", "inputs": keys},
    }
    stages = [{"prune": {"sparsity": 0.5, "epochs": 1}}, "tflite"]
    recipe = recipe_file(tmp_path, name="dict", source="dict.keras", data=data, outputs={"pruned": {"stages": stages}})
    report = run_report(recipe, tmp_path / "out", 0)
    [output] = report["outputs"]
    assert output["status"] == "passed"
    assert output["stages"][0]["details"]["sparsity"]["hidden"] == pytest.approx(0.5, abs=0.01)
