"""Make a legacy tf_keras twin of the demo digits CNN: `artifacts/models/digits_cnn_legacy.h5`.

The demo CNN of scripts/make_demo_model.py on the same data, built and trained with tf_keras (Keras 2)
and saved as HDF5, plus one DepthwiseConv2D layer: Keras 3 reads a plain tf_keras .h5 (and edgeport
would then treat it as Keras 3), but not that layer, so this file loads as tf_keras and recipes on it
exercise the tfmot path (prune, qat, cluster). tfmot never prunes the depthwise kernel.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for scripts.make_demo_model

from scripts.make_demo_model import digits_cnn, load_data, log, train


def build_and_train(x_train: Any, y_train: Any, epochs: int = 12, seed: int = 0) -> Any:
    import tf_keras  # never tf.keras: what it resolves to depends on TF_USE_LEGACY_KERAS

    tf_keras.utils.set_random_seed(seed)
    model = digits_cnn(tf_keras, name="digits_cnn_legacy", depthwise=True)
    return train(model, tf_keras, x_train, y_train, epochs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("artifacts"), help="output root")
    parser.add_argument("--force", action="store_true", help="rebuild even if the file exists")
    args = parser.parse_args(argv)
    model_path = args.out / "models" / "digits_cnn_legacy.h5"
    if model_path.exists() and not args.force:
        print(f"exists: {model_path}")
        return 0
    model_path.parent.mkdir(parents=True, exist_ok=True)
    data = load_data()
    log("training tf_keras CNN")
    start = time.perf_counter()
    model = build_and_train(data["x_train"], data["y_train"])
    _, accuracy = model.evaluate(data["x_test"], data["y_test"], verbose=0)
    print(f"test accuracy {accuracy:.4f} (trained in {time.perf_counter() - start:.1f} s)")
    tmp_model = model_path.with_name(f".{model_path.stem}.{os.getpid()}.tmp.h5")
    model.save(tmp_model, include_optimizer=False)
    os.replace(tmp_model, model_path)
    log(f"wrote {model_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
