"""The work of `benchmarks/bench.yaml` done by direct library calls: the baseline edgeport is measured against.

Load the Keras model, convert to fp32 TFLite (export + converter) and to ONNX (tf2onnx), run both in
LiteRT and onnxruntime over the evaluation data in batches of 64, and compare with the Keras outputs.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(model_path: str, data_path: str) -> None:
    import keras
    import numpy as np
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx
    from ai_edge_litert.interpreter import Interpreter

    x = np.load(data_path)["x_test"]
    model = keras.saving.load_model(model_path)
    batches = [x[i : i + 64] for i in range(0, len(x), 64)]
    reference = [model.predict_on_batch(b) for b in batches]
    with tempfile.TemporaryDirectory() as work:
        model.export(str(Path(work) / "sm"), verbose=False)
        tflite = tf.lite.TFLiteConverter.from_saved_model(str(Path(work) / "sm")).convert()
    spec = [tf.TensorSpec((None, *x.shape[1:]), tf.float32, name="pixels")]
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)

    runner = Interpreter(model_content=tflite).get_signature_runner()
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for name, run in (
        ("litert", lambda b: next(iter(runner(pixels=b).values()))),
        ("onnxruntime", lambda b: session.run(None, {"pixels": b})[0]),
    ):
        errors = [np.abs(run(b) - r).max() for b, r in zip(batches, reference, strict=True)]
        print(f"{name}: max_abs {max(errors):.3g}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
