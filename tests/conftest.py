"""Small real models and data, built once per test session and shared by every test."""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for scripts.make_demo_model

# Each test session gets its own stage cache: nothing read from, or left in, the user's cache.
os.environ["EDGEPORT_CACHE_DIR"] = tempfile.mkdtemp(prefix="edgeport-test-cache-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # as edgeport sets it: warnings are captured


@dataclass
class Zoo:
    """Paths of the shared test models and data."""

    root: Path
    digits_npz: Path
    keras3: Path  # Keras 3 .keras, the digits CNN
    keras3_h5: Path  # the same model saved by Keras 3 as legacy .h5
    tf_keras_h5: Path  # the same weights in a tf_keras model, legacy .h5 (Keras 3 can read it)
    legacy_h5: Path  # a tf_keras model with DepthwiseConv2D: Keras 3 cannot read it, tf_keras must
    exported_savedmodel: Path  # model.export(...)
    saved_savedmodel: Path  # tf.saved_model.save(keras3_model): the silent-NaN route in TFLite
    lambda_keras: Path  # a Keras 3 model with a Lambda layer (needs trust)
    bincount_keras: Path  # a model whose op TFLite builtins lack (DenseBincount)
    x_test: np.ndarray
    y_test: np.ndarray
    reference: np.ndarray  # the Keras 3 model's logits on x_test
    legacy_reference: np.ndarray  # the legacy model's outputs on x_test


def _digits_model(tmp: Path) -> tuple:
    from scripts.make_demo_model import build_and_train, load_data

    data = load_data()
    np.savez(tmp / "digits.npz", **data)
    model = build_and_train(data["x_train"], data["y_train"], epochs=4)
    return model, data


def _tf_keras_twin(model, path: Path) -> None:
    import tf_keras

    from scripts.make_demo_model import digits_cnn

    twin = digits_cnn(tf_keras)
    twin.set_weights(model.get_weights())
    twin.save(path)


def _legacy_only_model(path: Path, x: np.ndarray) -> np.ndarray:
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input((8, 8, 1), name="pixels")
    h = tf_keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    h = tf_keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
    h = tf_keras.layers.GlobalAveragePooling2D()(h)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(10, name="scores")(h))
    model.save(path)
    return model(x, training=False).numpy()


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    from pipeline.frameworks import captured_native_output, import_tensorflow

    tf = import_tensorflow()
    import keras

    root = tmp_path_factory.mktemp("zoo")
    with captured_native_output():
        model, data = _digits_model(root)
        model.save(root / "digits.keras")
        model.save(root / "digits_k3.h5")
        _tf_keras_twin(model, root / "digits_tfk.h5")
        legacy_reference = _legacy_only_model(root / "legacy.h5", data["x_test"])
        model.export(str(root / "exported_sm"), verbose=False)
        tf.saved_model.save(model, str(root / "saved_sm"))

        inputs = keras.Input((4,), name="values")
        doubled = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
        keras.Model(inputs, keras.layers.Dense(2)(doubled)).save(root / "lambda.keras")

        tokens = keras.Input((4,), name="tokens", dtype="int32")
        counts = keras.layers.CategoryEncoding(num_tokens=8, output_mode="count")(tokens)
        keras.Model(tokens, keras.layers.Dense(3)(counts)).save(root / "bincount.keras")
        reference = model(data["x_test"], training=False).numpy()
    return Zoo(
        root=root,
        digits_npz=root / "digits.npz",
        keras3=root / "digits.keras",
        keras3_h5=root / "digits_k3.h5",
        tf_keras_h5=root / "digits_tfk.h5",
        legacy_h5=root / "legacy.h5",
        exported_savedmodel=root / "exported_sm",
        saved_savedmodel=root / "saved_sm",
        lambda_keras=root / "lambda.keras",
        bincount_keras=root / "bincount.keras",
        x_test=data["x_test"],
        y_test=data["y_test"],
        reference=reference,
        legacy_reference=legacy_reference,
    )


@pytest.fixture(scope="session")
def tf_keras_digits(zoo: Zoo):
    """The digits CNN as a tf_keras model artifact (the tfmot path): zoo.tf_keras_h5 read by tf_keras."""
    import tf_keras

    from pipeline.core.artifact import Artifact

    model = tf_keras.models.load_model(zoo.tf_keras_h5, compile=False)
    return Artifact(kind="keras", path=zoo.tf_keras_h5, key="tf-keras-digits", flavour="tf_keras", handle=model)


@pytest.fixture(scope="session")
def fine_tune(zoo: Zoo):
    """The digits training split as data.fine_tune would deliver it."""
    from pipeline.data import Dataset

    with np.load(zoo.digits_npz) as data:
        return Dataset(section="fine_tune", origin="test", inputs={"pixels": data["x_train"]}, labels=data["y_train"])
