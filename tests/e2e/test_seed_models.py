"""The seeds' own models, as their users save them, through the four outputs `edgeport init` lists by default:
fp32 TFLite, int8 TFLite, fp32 ONNX and static int8 ONNX, each with its stage's default gates.

Two Sequential models (an MLP on 28×28 inputs, a small CNN with BatchNorm and Dropout on 32×32×3), each trained one
epoch on seeded data, then saved every way training leaves a model: `.keras`, `.h5`, a SavedModel (`model.export`),
`save_weights` with the builder that made it, and a ModelCheckpoint folder of weights with that builder."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ..cli import edgeport
from ..recipes import recipe_file

pytestmark = pytest.mark.slow

BUILDERS = """\
import keras


def mlp():
    return keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def cnn():
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.BatchNormalization(momentum=0.9),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
"""

# What `edgeport init` lists, fp32 and int8 in each format, gates left to each stage's defaults.
OUTPUTS: dict[str, dict[str, Any]] = {
    "fp32": {"stages": ["tflite"]},
    "int8": {"stages": [{"tflite": {"quantize": "int8"}}]},
    "onnx": {"stages": ["onnx"]},
    "onnx-int8": {"stages": [{"onnx": {"quantize": "static"}}]},
}
SAVES = ("keras", "h5", "savedmodel", "weights", "checkpoints")


@dataclass
class Trained:
    """One architecture trained once, saved every way; `sources` maps a save to the recipe's source section."""

    root: Path
    sources: dict[str, Any]


def _data(root: Path, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten classes, each a fixed random pattern under noise: learnable in one epoch, so the outputs are confident."""
    rng = np.random.default_rng(seed)
    patterns = rng.random((10, *shape), dtype=np.float32)
    labels = rng.integers(0, 10, 448)
    images = (0.6 * patterns[labels] + 0.4 * rng.random((448, *shape), dtype=np.float32)).astype(np.float32)
    np.savez(root / "data.npz", x_train=images[:384], y_train=labels[:384], x_test=images[384:], y_test=labels[384:])
    return images[:384], labels[:384]


def _train_and_save(root: Path, architecture: str, shape: tuple[int, ...]) -> Trained:
    from pipeline.frameworks import captured_native_output, import_tensorflow

    import_tensorflow()
    import keras

    (root / "seeds.py").write_text(BUILDERS)
    sys.path.insert(0, str(root))
    try:
        import seeds  # type: ignore[import-not-found]

        x, y = _data(root, shape, seed=len(architecture))
        keras.utils.set_random_seed(0)
        model = getattr(seeds, architecture)()
        model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
        checkpoints = keras.callbacks.ModelCheckpoint(
            str(root / "checkpoints" / "cp-{epoch:02d}.weights.h5"), save_weights_only=True
        )
        with captured_native_output():
            model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[checkpoints])
            model.save(root / "model.keras")
            model.save(root / "model.h5")
            model.export(str(root / "savedmodel"), verbose=False)
            model.save_weights(root / "model.weights.h5")
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("seeds", None)
    builder = {"builder": f"seeds:{architecture}", "trusted": True}
    sources = {
        "keras": "model.keras",
        "h5": "model.h5",
        "savedmodel": "savedmodel",
        "weights": {**builder, "weights": "model.weights.h5"},
        "checkpoints": {**builder, "weights": "checkpoints"},
    }
    return Trained(root=root, sources=sources)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every save of both models, run as one batch (`edgeport run A.yaml B.yaml ...`, TensorFlow imported once):
    recipe name (`mlp-keras`) → its report, with the batch's exit code for it."""
    recipes = []
    for architecture, shape in (("mlp", (28, 28)), ("cnn", (32, 32, 3))):
        trained = _train_and_save(tmp_path_factory.mktemp(architecture), architecture, shape)
        recipes += [_recipe(trained, architecture, save) for save in SAVES]
    out = tmp_path_factory.mktemp("out")
    result = edgeport("run", *recipes, "--out", out, "--no-cache", timeout=1200)
    assert "Traceback" not in result.stderr, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    return {
        entry["name"]: {**_report(out / entry["name"]), "exit_code": entry["exit_code"], "error": entry.get("error")}
        for entry in summary["recipes"]
    }


def _report(folder: Path) -> dict[str, Any]:
    path = folder / "report.json"
    return json.loads(path.read_text()) if path.exists() else {"outputs": []}


def _recipe(trained: Trained, architecture: str, save: str) -> Path:
    return recipe_file(
        trained.root,
        name=f"{architecture}-{save}",
        source=trained.sources[save],
        data={
            "calibration": {"npz": "data.npz", "inputs": "x_train", "limit": 64},
            "evaluation": {"npz": "data.npz", "inputs": "x_test", "labels": "y_test"},
        },
        outputs=OUTPUTS,
        file=f"{save}.yaml",
    )


def _verdicts(report: dict[str, Any]) -> dict[str, str]:
    """output → its status, and for a failure the gate or the error that decided it."""
    verdicts = {}
    for output in report["outputs"]:
        gates = (output.get("parity") or {}).get("gates", [])
        failed = [f"{g['metric']} {g['value']:.4g} {g['op']} {g['threshold']}" for g in gates if not g["passed"]]
        why = [*failed, *([str(output["error"])] if output.get("error") else [])]
        verdicts[output["name"]] = ": ".join([output["status"], *why])
    return verdicts


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
@pytest.mark.parametrize("save", SAVES)
def test_the_seed_model_passes_every_default_output(
    reports: dict[str, dict[str, Any]], architecture: str, save: str
) -> None:
    report = reports[f"{architecture}-{save}"]
    assert _verdicts(report) == dict.fromkeys(OUTPUTS, "passed"), report["error"]
    fp32 = report["outputs"][0]["parity"]["metrics"]
    assert fp32["accuracy"] >= 0.9  # a trained model, confident enough that a class flip would show
    assert report["exit_code"] == 0
