"""LiteRT runtime: integer I/O quantization, batch resizing, and files without signatures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.runtimes import runtime_for
from pipeline.runtimes.litert import dequantize_output, quantize_input
from pipeline.sources import load_source

from ..helpers import predict, run_stage


def test_quantize_round_trip_follows_scale_and_zero_point() -> None:
    detail = {"dtype": np.int8, "quantization": (0.5, -3)}
    x = np.array([[-1.0, 0.0, 0.74, 1000.0]], np.float32)
    q = quantize_input(x, detail)
    assert q.dtype == np.int8 and q.tolist() == [[-5, -3, -2, 127]]  # clipped at the int8 maximum
    assert dequantize_output(q, detail).tolist() == [[-1.0, 0.0, 0.5, 65.0]]


def test_any_batch_size_runs_and_matches(zoo, tmp_path: Path) -> None:
    artifact = run_stage("tflite", load_source(zoo.keras3).artifact, tmp_path)
    runtime = runtime_for(artifact)
    assert runtime.inputs[0].shape == (None, 8, 8, 1)
    for size in (1, 7, 64, 5):
        out = next(runtime.predict([{"pixels": zoo.x_test[:size]}]))["output_0"]
        assert out.shape == (size, 10)
        assert np.abs(out - zoo.reference[:size]).max() < 1e-4


def test_uint8_io_is_quantized_and_dequantized(zoo, tmp_path: Path) -> None:
    artifact = run_stage(
        "tflite", load_source(zoo.keras3).artifact, tmp_path, calibration=zoo.x_test[:80], quantize="int8", io="uint8"
    )
    runtime = runtime_for(artifact)
    assert runtime.inputs[0].dtype == "uint8" and runtime.outputs[0].dtype == "uint8"
    out = predict(artifact, zoo.x_test)
    assert out.dtype == np.float32  # dequantized for comparison
    assert (out.argmax(1) == zoo.reference.argmax(1)).mean() > 0.97


def test_file_without_signature_runs_by_tensor_index(zoo, tmp_path: Path) -> None:
    """The frozen-function route (tf.saved_model.save sources) gives a .tflite with no signature."""
    artifact = run_stage("tflite", load_source(zoo.saved_savedmodel).artifact, tmp_path)
    runtime = runtime_for(artifact)
    assert runtime.runner is None
    outputs = [runtime.predict_batch({runtime.inputs[0].name: zoo.x_test[:n]}) for n in (3, 9)]
    outputs = [next(iter(output.values())) for output in outputs]
    assert [o.shape for o in outputs] == [(3, 10), (9, 10)]
    assert np.abs(outputs[1] - zoo.reference[:9]).max() < 1e-4
