"""Make the demo source model and data: a small Keras 3 CNN trained on sklearn's digits."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if TYPE_CHECKING:
    import keras


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_data(seed: int = 0, n_train: int = 1437) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    tr, te = order[:n_train], order[n_train:]
    return {"x_train": x[tr], "y_train": y[tr], "x_test": x[te], "y_test": y[te]}


def digits_cnn(api: ModuleType, name: str = "digits_cnn", depthwise: bool = False) -> Any:
    """The demo CNN in `api`: Keras 3 (`keras`) or legacy (`tf_keras`, with `depthwise` for a layer
    Keras 3 cannot read back from a legacy .h5)."""
    layers = api.layers
    inputs = api.Input((8, 8, 1), name="pixels")
    h = layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    if depthwise:
        h = layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
    h = layers.MaxPooling2D(2)(h)
    h = layers.Conv2D(32, 3, padding="same", activation="relu")(h)
    h = layers.Flatten()(h)
    h = layers.Dense(32, activation="relu")(h)
    return api.Model(inputs, layers.Dense(10, name="logits")(h), name=name)


def train(model: Any, api: ModuleType, x_train: np.ndarray, y_train: np.ndarray, epochs: int) -> Any:
    loss = api.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=api.optimizers.Adam(1e-2), loss=loss, metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, shuffle=True, verbose=0)
    return model


def build_and_train(x_train: np.ndarray, y_train: np.ndarray, epochs: int = 12, seed: int = 0) -> keras.Model:
    import keras  # Keras 3, imported late so the "exists" path stays fast; never tf.keras

    keras.utils.set_random_seed(seed)
    return train(digits_cnn(keras), keras, x_train, y_train, epochs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("artifacts"), help="output root")
    parser.add_argument("--force", action="store_true", help="rebuild even if the files exist")
    args = parser.parse_args(argv)
    model_path = args.out / "models" / "digits_cnn.keras"
    data_path = args.out / "data" / "digits.npz"
    if model_path.exists() and data_path.exists() and not args.force:
        print(f"exists: {model_path} and {data_path}")
        return 0
    for path in (model_path, data_path):
        path.parent.mkdir(parents=True, exist_ok=True)

    log("loading sklearn digits")
    data = load_data()
    tmp_data = data_path.with_name(f".{data_path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp_data, **data)
    os.replace(tmp_data, data_path)
    log(f"wrote {data_path} ({len(data['x_train'])} train / {len(data['x_test'])} test)")

    log("training CNN")
    start = time.perf_counter()
    model = build_and_train(data["x_train"], data["y_train"], epochs=12, seed=0)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(data["x_test"], data["y_test"], verbose=0)
    print(f"test accuracy {accuracy:.4f} (trained in {seconds:.1f} s)")

    tmp_model = model_path.with_name(f".{model_path.stem}.{os.getpid()}.tmp.keras")
    model.save(tmp_model)
    os.replace(tmp_model, model_path)
    log(f"wrote {model_path}")
    if accuracy < 0.95:
        log(f"warning: test accuracy {accuracy:.4f} is below the expected 0.95")
    return 0


if __name__ == "__main__":
    sys.exit(main())
