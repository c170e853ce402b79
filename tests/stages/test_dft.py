"""FFTs no converter takes, traced as DFT matrix products: keras-hub FNet (the real part of a 2-D FFT mixes its
tokens) reaches fp32 TFLite and ONNX with the `fft_as_matmul` rescue named; `rescue: false` keeps the raw error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.stages.dft import fails_on_fft, fft_as_matmul

from ..cli import run_report
from ..helpers import saved_hub_backbone
from ..recipes import recipe_file


def test_fft2_inside_the_context_is_matrix_products_computing_the_fft() -> None:
    from pipeline.frameworks import import_tensorflow

    tf = import_tensorflow()
    import keras

    values = np.random.default_rng(0).normal(size=(2, 2, 6, 10)).astype(np.float32)
    spec = tf.TensorSpec([None, 6, 10], tf.float32)

    def ops_of(function: tf.types.experimental.GenericFunction) -> set[str]:
        return {op.type for op in function.get_concrete_function(spec, spec).graph.get_operations()}

    with fft_as_matmul():
        traced = tf.function(lambda real, imaginary: keras.ops.fft2((real, imaginary)))
        real, imaginary = traced(values[0], values[1])
        assert not ops_of(traced) & {"FFT2D", "Complex"}
    expected = np.fft.fft2(values[0].astype(np.float64) + 1j * values[1])
    np.testing.assert_allclose(real.numpy(), expected.real, atol=2e-5)
    np.testing.assert_allclose(imaginary.numpy(), expected.imag, atol=2e-5)
    untouched = tf.function(lambda real, imaginary: keras.ops.fft2((real, imaginary)))
    assert "FFT2D" in ops_of(untouched)  # outside the context Keras's FFT is back


def test_the_converters_fft_errors_are_recognised_and_others_are_not() -> None:
    assert fails_on_fft("ops missing from the TFLite builtins: Complex, FFT2D (they need TF Select / Flex ops")
    assert fails_on_fft("onnx.checker rejected the exported model: No Op registered for Complex with domain_version")
    assert not fails_on_fft("Lowering tensor list ops is failed. Please consider using Select TF ops")
    assert not fails_on_fft("No Op registered for Erfc with domain_version of 17")


@pytest.mark.slow
def test_fnet_reaches_tflite_and_onnx_with_its_ffts_as_matrix_products(tmp_path: Path) -> None:
    pytest.importorskip("keras_hub")
    model, keys = saved_hub_backbone("f_net", tmp_path, {"data": (1, 8)})
    data = {"evaluation": {"npz": tmp_path / "data.npz", "inputs": keys}}
    outputs = {
        "tflite": {"stages": ["tflite"]},
        "onnx": {"stages": ["onnx"]},
        "raw": {"stages": [{"onnx": {"rescue": False}}]},
    }
    source = {"path": model, "trusted": True}
    recipe = recipe_file(tmp_path, name="f_net", source=source, data=data, outputs=outputs)
    tflite, onnx, raw = run_report(recipe, tmp_path / "o", 3)["outputs"]  # 3: the raw output's export error
    for output in (tflite, onnx):
        assert output["status"] == "passed" and output["parity"]["metrics"]["max_abs"] < 1e-5, output["name"]
        [rescue] = output["rescues"]
        assert rescue["name"] == "fft_as_matmul" and "Complex" in rescue["raw_error"]
    assert tflite["parity"]["samples"] == 8 and "[1, 16]" in tflite["rescues"][0]["action"]
    assert raw["status"] == "error" and "No Op registered for Complex" in raw["error"]
