"""Source loading: every model kind, trust, and a clear ModelError for every broken file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ModelError
from pipeline.sources import load_source


def test_keras3_source_describes_its_tensors(zoo) -> None:
    source = load_source(zoo.keras3)
    assert source.format == "keras" and source.artifact.flavour == "keras3"
    assert [s.describe() for s in source.inputs] == ["pixels [?, 8, 8, 1] float32"]
    assert [s.describe() for s in source.outputs] == ["logits [?, 10] float32"]
    assert len(source.sha256) == 64


def test_savedmodel_source_uses_the_signature(zoo) -> None:
    source = load_source(zoo.exported_savedmodel)
    assert source.format == "savedmodel" and source.artifact.signature == "serving_default"
    assert [s.name for s in source.inputs] == ["pixels"] and source.outputs[0].shape == (None, 10)


def test_lambda_needs_trust(zoo) -> None:
    with pytest.raises(ModelError, match=r"refused: .*arbitrary Python code.*source\.trusted: true.*--trust-model"):
        load_source(zoo.lambda_keras)
    model = load_source(zoo.lambda_keras, trusted=True).artifact.handle
    assert np.allclose(model(np.ones((1, 4), np.float32)).numpy().shape, (1, 2))


def test_legacy_h5_lambda_is_refused_before_tf_keras_can_load_it(tmp_path: Path) -> None:
    """tf_keras loads Lambda layers from .h5 even in safe mode, so edgeport reads the config first."""
    import tf_keras

    inputs = tf_keras.Input((3,), name="v")
    model = tf_keras.Model(inputs, tf_keras.layers.Lambda(lambda t: t + 1.0, name="plus_one")(inputs))
    model.save(tmp_path / "lambda.h5")
    with pytest.raises(ModelError, match="Lambda layer 'plus_one'"):
        load_source(tmp_path / "lambda.h5")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.keras", b"", "the file is empty"),
        ("random.keras", os.urandom(300), "cannot load the model"),
        ("random.h5", os.urandom(300), "not a readable HDF5 model"),
        ("model.onnx", b"x", "unknown model format"),
    ],
)
def test_broken_files_are_model_errors(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelError, match=message) as error:
        load_source(path)
    assert str(path) in str(error.value)


def test_truncated_keras_file(zoo, tmp_path: Path) -> None:
    data = zoo.keras3.read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"cut\.keras: cannot load the model"):
        load_source(tmp_path / "cut.keras")


def test_weights_only_h5_is_named(zoo, tmp_path: Path) -> None:
    import keras

    model = keras.saving.load_model(zoo.keras3)
    model.save_weights(tmp_path / "digits.weights.h5")
    with pytest.raises(ModelError, match="without a model config"):
        load_source(tmp_path / "digits.weights.h5")


def test_directories_that_are_not_savedmodels(zoo, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a SavedModel"):
        load_source(tmp_path)
    broken = tmp_path / "broken_sm"
    shutil.copytree(zoo.exported_savedmodel, broken)
    (broken / "saved_model.pb").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot load the SavedModel"):
        load_source(broken)
    with pytest.raises(ModelError, match="no signature 'nope' \\(it has serve, serving_default\\)"):
        load_source(zoo.exported_savedmodel, signature="nope")
