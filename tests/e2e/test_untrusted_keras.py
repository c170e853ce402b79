"""Untrusted Keras models that carry no Lambda, no module and no custom class, yet run code or touch files when
they load (issue #36, probes 1, 2 and the cache): each is built as an attacker would (a real tf_keras or Keras 3
model, its config edited by hand), and `inspect`, `init` and `run` each refuse it with exit 2 naming the element
and its layer, before anything deserializes: no canary written, no recipe or report left behind. Trusted, the
same files load (the payload is live), and a model an earlier stage left in the cache is held to the same list."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.errors import ModelError
from pipeline.sources import load_source

from ..cli import edgeport
from ..helpers import edit_h5_config, edit_keras_config, run_stage
from ..recipes import recipe_file

SECRET = "hunter2\nswordfish\n"


def _layers(config: dict[str, Any]) -> list[dict[str, Any]]:
    return config["config"]["layers"]


def _tfop(function: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A TFOpLambda layer as tf_keras writes one, calling `function` with constant arguments."""
    name = f"tf.{function}"
    config = {"name": name, "trainable": True, "dtype": "float32", "function": function}
    return {"class_name": "TFOpLambda", "config": config, "name": name, "inbound_nodes": [["tf.nn.relu", 0, 0, kwargs]]}


def _plain_h5(path: Path) -> Path:
    """A real tf_keras model: Dense, then tf.nn.relu (a TFOpLambda layer, 'tf.nn.relu')."""
    import tensorflow as tf
    import tf_keras

    inputs = tf_keras.Input((4,), name="x")
    tf_keras.Model(inputs, tf.nn.relu(tf_keras.layers.Dense(3, name="dense")(inputs))).save(path)
    return path


def _tfoplambda_h5(folder: Path, canary: Path) -> Path:
    """Probe 1: three TFOpLambda layers added to a real model, calling TF functions with constant arguments."""

    def edit(config: dict[str, Any]) -> None:
        _layers(config).extend(
            [
                _tfop("io.write_file", {"filename": str(canary), "contents": "pwned"}),
                _tfop("load_op_library", {"library_filename": str(folder / "payload.so")}),
                _tfop("io.read_file", {"filename": str(folder / "secret.txt")}),
            ]
        )

    return edit_h5_config(_plain_h5(folder / "tfop.h5"), edit)


def _lookup_h5(folder: Path, secret: Path) -> Path:
    """Probe 2: tf_keras keeps a StringLookup's vocabulary path in the config and opens it on load."""
    import tf_keras

    inputs = tf_keras.Input((1,), dtype="string", name="words")
    path = folder / "lookup.h5"
    tf_keras.Model(inputs, tf_keras.layers.StringLookup(vocabulary=str(secret), name="lookup")(inputs)).save(path)
    return path


def _lookup_keras(folder: Path, secret: Path) -> Path:
    """Probe 2, Keras 3: a `.keras` keeps its vocabulary in its assets; the attacker writes a path into the config."""
    import keras

    inputs = keras.Input((1,), dtype="string", name="words")
    path = folder / "lookup.keras"
    keras.Model(inputs, keras.layers.StringLookup(vocabulary=["a", "b"], name="lookup")(inputs)).save(path)

    def edit(config: dict[str, Any]) -> None:
        next(layer for layer in _layers(config) if layer["name"] == "lookup")["config"]["vocabulary"] = str(secret)

    return edit_keras_config(path, edit)


def _node_def_h5(folder: Path, canary: Path) -> Path:
    """A class off the list: tf_keras's TensorFlowOpLayer runs whatever NodeDef its config holds (here WriteFile)."""

    def edit(config: dict[str, Any]) -> None:
        layer = next(layer for layer in _layers(config) if layer["class_name"] == "TFOpLambda")
        node_def = {"name": "write", "op": "WriteFile", "input": ["write/filename", "write/contents"], "attr": {}}
        layer["class_name"] = "TensorFlowOpLayer"
        layer["config"] = {
            "name": "write",
            "trainable": True,
            "dtype": "float32",
            "node_def": node_def,
            "constants": {"0": str(canary), "1": "pwned"},
        }

    return edit_h5_config(_plain_h5(folder / "nodedef.h5"), edit)


def _tfsm_keras(folder: Path) -> Path:
    """A class off the list in Keras 3: TFSMLayer loads (and runs) a SavedModel from a path outside the model."""
    import keras

    inputs = keras.Input((4,), name="x")
    path = folder / "tfsm.keras"
    keras.Model(inputs, keras.layers.Dense(2, name="head")(inputs)).save(path)

    def edit(config: dict[str, Any]) -> None:
        layer = next(layer for layer in _layers(config) if layer["name"] == "head")
        layer["class_name"] = "TFSMLayer"
        layer["config"] = {
            "name": "head",
            "trainable": True,
            "filepath": str(folder / "elsewhere"),
            "call_endpoint": "serve",
        }

    return edit_keras_config(path, edit)


def _refused_everywhere(folder: Path, model: Path, phrases: list[str]) -> None:
    """`inspect`, `init` and `run` on `model`, untrusted: exit 2, each phrase in the one message, nothing written."""
    recipe = recipe_file(folder, name="probe", source=model.name, outputs={"fp32": {"stages": ["tflite"]}})
    written = folder / "init" / "recipe.yaml"
    for command in (
        ("inspect", model),
        ("init", model, "--out", written),
        ("run", recipe, "--out", folder / "out"),
    ):
        result = edgeport(*command, cwd=folder)
        assert result.returncode == 2, (command, result.stderr[-3000:])
        assert "Traceback" not in result.stderr, command
        assert "refused" in result.stderr and str(model.name) in result.stderr, (command, result.stderr[-3000:])
        for phrase in phrases:
            assert phrase in result.stderr, (command, phrase, result.stderr[-3000:])
        assert "--trust-model" in result.stderr, command
    assert not written.exists()
    assert not (folder / "out" / "report.json").exists()


def test_tfoplambda_file_and_library_calls_are_refused_before_any_runs(tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    (tmp_path / "secret.txt").write_text(SECRET)
    model = _tfoplambda_h5(tmp_path, canary)
    _refused_everywhere(
        tmp_path,
        model,
        [
            "TensorFlow function 'io.write_file' called by a TFOpLambda",
            "in layer 'tf.io.write_file'",
            "TensorFlow function 'load_op_library' called by a TFOpLambda (not on the list) in layer "
            "'tf.load_op_library'",
            "'io.read_file'",
        ],
    )
    assert not canary.exists()


@pytest.mark.parametrize("make", [_lookup_h5, _lookup_keras], ids=["tf_keras", "keras3"])
def test_a_vocabulary_path_is_refused_and_the_trusted_load_shows_it_would_be_read(
    tmp_path: Path, make: Callable[[Path, Path], Path]
) -> None:
    secret = tmp_path / "elsewhere" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text(SECRET)
    model = make(tmp_path, secret)
    _refused_everywhere(
        tmp_path, model, [f"a file path as the vocabulary of StringLookup ('{secret}')", "in layer 'lookup'"]
    )
    with pytest.raises(ModelError, match="a file path as the vocabulary"):
        load_source(model)
    trusted = load_source(model, trusted=True).artifact.handle  # in process, unconfined: the path is live
    assert "hunter2" in trusted.get_layer("lookup").get_vocabulary()


def test_tensorflow_op_layer_with_a_node_def_is_a_class_off_the_list(tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    model = _node_def_h5(tmp_path, canary)
    _refused_everywhere(tmp_path, model, ["class TensorFlowOpLayer (runs whatever TensorFlow op", "in layer 'write'"])
    assert not canary.exists()


def test_keras3_tfsmlayer_is_a_class_off_the_list(tmp_path: Path) -> None:
    model = _tfsm_keras(tmp_path)
    _refused_everywhere(tmp_path, model, ["class keras.layers.TFSMLayer (loads the SavedModel", "in layer 'head'"])


def _payload_model(path: Path) -> Path:
    """What an attacker who can write the shared cache leaves: the digits model's input, a Lambda whose code
    creates the file $EDGEPORT_TEST_MARKER names, and its head."""
    import keras

    inputs = keras.Input((8, 8, 1), name="pixels")
    marked = keras.layers.Lambda(
        lambda t: (open(__import__("os").environ["EDGEPORT_TEST_MARKER"], "a").close(), t)[1], name="payload"
    )(inputs)
    keras.Model(inputs, keras.layers.Dense(10, name="logits")(keras.layers.Flatten()(marked))).save(path)
    return path


def test_a_model_from_the_cache_is_held_to_the_same_list(
    zoo, fine_tune, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prune stage's saved model, replaced in place by one with a Lambda: the worker's loader refuses it
    untrusted (before Keras reads it), and trusted the payload runs."""
    from pipeline.run.worker import load_saved_keras

    marker = tmp_path / "payload-ran"
    monkeypatch.setenv("EDGEPORT_TEST_MARKER", str(marker))
    saved = run_stage("prune", load_source(zoo.keras3).artifact, tmp_path / "prune", fine_tune=fine_tune, epochs=1)
    assert load_saved_keras(saved, trusted=False).handle.inputs  # as the stage left it, it loads untrusted
    _payload_model(saved.path)
    marker.unlink(missing_ok=True)  # saving traced the Lambda
    with pytest.raises(ModelError, match="refused: the model runs arbitrary Python code") as refusal:
        load_saved_keras(saved, trusted=False)
    assert "Lambda layer 'payload'" in str(refusal.value) and str(saved.path) in str(refusal.value)
    assert not marker.exists()
    load_saved_keras(saved, trusted=True).handle(np.zeros((1, 8, 8, 1), np.float32))
    assert marker.exists()
