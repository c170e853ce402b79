"""One canonical graph: every Keras model converts to ONNX from the serving SavedModel its TFLite outputs read, never
through tf2onnx's `from_keras`. Each model is one of the shapes that failed there, built as a user builds it:

- a `Sequential` MLP saved with `model.save()` (tf2onnx's `from_keras`: KeyError 'keras_tensor_N', every time);
- a model returning a dict of two outputs of one shape (the ONNX file's `b` held `a`'s tensor: a swap only a
  same-shape pair hides from the matcher);
- a nested model called twice, whose two outputs share its name (the run died: "no complete recording").

Parity (max_abs at float32 rounding) proves each ONNX output holds its own tensor: a swapped pair differs by O(1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from ..cli import run_report
from ..recipes import recipe_file


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import keras

    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("one-graph")
    rng = np.random.default_rng(0)
    sequential = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    sequential.save(root / "sequential.keras")
    values = keras.Input((4,), name="values")
    a, b = keras.layers.Dense(3, name="a")(values), keras.layers.Dense(3, name="b")(values)
    keras.Model(values, {"second": b, "first": a}).save(root / "dict.keras")
    inner = keras.Model(values, keras.layers.Dense(3, name="head")(values), name="inner")
    outer_input = keras.Input((4,), name="values")
    keras.Model(outer_input, [inner(outer_input), inner(outer_input * 2.0)]).save(root / "nested.keras")
    np.savez(
        root / "data.npz",
        images=rng.random((48, 28, 28)).astype(np.float32),
        values=rng.normal(size=(48, 4)).astype(np.float32),
    )
    return {path.stem: path for path in root.iterdir()}


@pytest.mark.parametrize(
    ("model", "inputs", "names"),
    [
        ("sequential", "images", None),
        ("dict", "values", ["first", "second"]),
        ("nested", "values", ["inner", "inner_1"]),
    ],
)
def test_keras_models_reach_onnx_and_tflite_from_one_trace(
    models, tmp_path: Path, model: str, inputs: str, names: list[str] | None
) -> None:
    recipe = recipe_file(
        tmp_path,
        name=model,
        source=models[model],
        data={"evaluation": {"npz": models["data"], "inputs": inputs}},
        outputs={"onnx": {"stages": ["onnx"]}, "tflite": {"stages": ["tflite"]}},
    )
    report = run_report(recipe, tmp_path / "out", 0)
    for output in report["outputs"]:
        assert output["status"] == "passed", output
        assert output["parity"]["metrics"]["max_abs"] < 1e-5, output["parity"]["metrics"]
    graph = onnx.load(str(tmp_path / "out" / "onnx" / "model.onnx")).graph
    outputs = sorted(value.name for value in graph.output)
    if names is not None:  # the file's outputs carry the model's own names, as the reference records them
        assert outputs == names
        matched = report["outputs"][0]["parity"]["matched"]  # paired by name, not by a guess of position
        assert {name: pair["rule"] for name, pair in matched.items()} == dict.fromkeys(names, "name")


def test_an_output_of_unknown_rank_is_described_and_named_where_onnx_needs_its_rank(tmp_path: Path) -> None:
    """`tf.squeeze` with no axis over a free batch leaves its output's rank unknown: inspect and the TFLite output
    go on; ONNX, which declares every output's rank, fails naming the output and the fix (was: exit 3, as_list())."""
    import tensorflow as tf

    class Squeezed(tf.Module):
        def __init__(self) -> None:
            self.kernel = tf.Variable(np.random.default_rng(0).normal(size=(3, 3, 3, 1)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32, name="image")])
        def __call__(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"mask": tf.squeeze(tf.sigmoid(tf.nn.conv2d(image, self.kernel, 1, "SAME")))}

    module = Squeezed()
    tf.saved_model.save(module, str(tmp_path / "squeezed"), signatures=module.__call__)
    np.savez(tmp_path / "images.npz", x=np.random.default_rng(1).random((8, 8, 8, 3)).astype(np.float32))
    recipe = recipe_file(
        tmp_path,
        name="squeezed",
        source=tmp_path / "squeezed",
        data={"evaluation": {"npz": tmp_path / "images.npz", "inputs": "x"}},
        outputs={"onnx": {"stages": ["onnx"]}, "tflite": {"stages": ["tflite"]}},
    )
    report = run_report(recipe, tmp_path / "out", 3)  # an output that could not be built
    assert report["source"]["outputs"] == ["mask [?] float32"]
    onnx_output, tflite_output = report["outputs"]
    assert tflite_output["status"] == "passed", tflite_output
    assert onnx_output["status"] == "error"
    assert "outputs of unknown rank: mask" in onnx_output["error"] and "give it its axis" in onnx_output["error"]
