"""tflite stage: real conversions of the digits CNN from every source kind, run in LiteRT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import StageError
from pipeline.runtimes import runtime_for
from pipeline.sources import load_source

from ..helpers import predict, run_stage, top1_agreement


@pytest.mark.parametrize(
    ("quantize", "io", "max_relative", "min_top1"),
    [
        ("none", "float32", 1e-5, 1.0),
        ("float16", "float32", 1e-3, 1.0),
        ("dynamic", "float32", 1e-2, 0.98),
        ("int8", "int8", 0.1, 0.97),
        ("int8", "uint8", 0.1, 0.97),
        ("int8", "float32", 0.1, 0.97),
    ],
)
def test_keras3_to_tflite_modes(
    zoo, tmp_path: Path, quantize: str, io: str, max_relative: float, min_top1: float
) -> None:
    """Errors relative to the logits' range (~36): an int8 step is 1/255 of it; outliers clip at a few steps."""
    source = load_source(zoo.keras3)
    artifact = run_stage("tflite", source.artifact, tmp_path, calibration=zoo.x_test[:100], quantize=quantize, io=io)
    assert artifact.path.stat().st_size > 0
    runtime = runtime_for(artifact)
    assert runtime.inputs[0].dtype == ("float32" if io == "float32" else io)
    out = predict(artifact, zoo.x_test)
    assert np.isfinite(out).all()
    spread = zoo.reference.max() - zoo.reference.min()
    assert np.abs(out - zoo.reference).max() < max_relative * spread
    assert np.abs(out - zoo.reference).mean() < max_relative * spread / 10
    assert top1_agreement(out, zoo.reference) >= min_top1


def test_int8_is_smaller_than_fp32(zoo, tmp_path: Path) -> None:
    source = load_source(zoo.keras3)
    fp32 = run_stage("tflite", source.artifact, tmp_path / "fp32")
    int8 = run_stage("tflite", source.artifact, tmp_path / "int8", calibration=zoo.x_test[:50], quantize="int8")
    assert int8.path.stat().st_size < 0.5 * fp32.path.stat().st_size


@pytest.mark.parametrize("which", ["exported_savedmodel", "saved_savedmodel"])
def test_savedmodel_sources_give_finite_matching_files(zoo, tmp_path: Path, which: str) -> None:
    """tf.saved_model.save(keras3_model) silently converts to a NaN model; the stage must not."""
    source = load_source(getattr(zoo, which))
    artifact = run_stage("tflite", source.artifact, tmp_path)
    out = predict(artifact, zoo.x_test)
    assert np.isfinite(out).all()
    assert np.abs(out - zoo.reference).max() < 1e-4
    if which == "saved_savedmodel":
        assert any("frozen concrete function" in warning for warning in artifact.warnings)


def test_h5_written_by_tf_keras_with_plain_layers_loads_in_keras3(zoo, tmp_path: Path) -> None:
    source = load_source(zoo.tf_keras_h5)
    assert source.artifact.flavour == "keras3"
    artifact = run_stage("tflite", source.artifact, tmp_path, calibration=zoo.x_test[:50], quantize="int8")
    out = predict(artifact, zoo.x_test)
    assert top1_agreement(out, zoo.reference) >= 0.97


def test_legacy_only_h5_goes_through_tf_keras(zoo, tmp_path: Path) -> None:
    """DepthwiseConv2D in a tf_keras .h5 does not load in Keras 3 (COMPAT.md): tf_keras serves it."""
    source = load_source(zoo.legacy_h5)
    assert source.artifact.flavour == "tf_keras"
    for quantize in ("none", "int8"):
        artifact = run_stage(
            "tflite", source.artifact, tmp_path / quantize, calibration=zoo.x_test[:50], quantize=quantize
        )
        out = predict(artifact, zoo.x_test)
        if quantize == "none":
            assert np.abs(out - zoo.legacy_reference).max() < 1e-4
        assert top1_agreement(out, zoo.legacy_reference) >= 0.95


def test_unsupported_op_is_a_stage_error_naming_it(zoo, tmp_path: Path) -> None:
    source = load_source(zoo.bincount_keras)
    with pytest.raises(StageError, match="DenseBincount"):
        run_stage("tflite", source.artifact, tmp_path)
    assert not (tmp_path / "model.tflite").exists()


@pytest.mark.parametrize("io", ["float32", "int16"])
def test_int16x8_quantization(zoo, tmp_path: Path, io: str) -> None:
    source = load_source(zoo.keras3)
    artifact = run_stage("tflite", source.artifact, tmp_path, calibration=zoo.x_test[:100], quantize="int16x8", io=io)
    assert runtime_for(artifact).inputs[0].dtype == io
    out = predict(artifact, zoo.x_test)
    assert top1_agreement(out, zoo.reference) >= 0.97


def test_select_tf_ops_convert_what_builtins_cannot(zoo, tmp_path: Path) -> None:
    source = load_source(zoo.bincount_keras)
    artifact = run_stage("tflite", source.artifact, tmp_path, supported_ops=["builtins", "select_tf_ops"])
    assert artifact.path.stat().st_size > 0
    assert any("FlexDenseBincount" in warning for warning in artifact.warnings)
    runtime = runtime_for(artifact)
    with pytest.raises(RuntimeError, match="TF Select \\(Flex\\) ops FlexDenseBincount"):
        runtime.predict_batch({"tokens": np.zeros((2, 4), np.int32)})


def test_delegates_agree_on_the_digits_model(zoo, tmp_path: Path) -> None:
    artifact = run_stage(
        "tflite", load_source(zoo.keras3).artifact, tmp_path, calibration=zoo.x_test[:50], quantize="int8"
    )
    with_xnnpack = runtime_for(artifact, delegate="xnnpack").predict_batch({"pixels": zoo.x_test})
    plain = runtime_for(artifact, delegate="none").predict_batch({"pixels": zoo.x_test})
    a, b = next(iter(with_xnnpack.values())), next(iter(plain.values()))
    assert (a.argmax(1) == b.argmax(1)).mean() > 0.97
