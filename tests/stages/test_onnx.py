"""onnx stage: tf2onnx export from Keras 3, tf_keras and both SavedModel kinds, run in onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from pipeline.errors import StageError
from pipeline.sources import load_source

from ..helpers import predict, run_stage


@pytest.mark.parametrize("which", ["keras3", "keras3_h5", "tf_keras_h5", "exported_savedmodel", "saved_savedmodel"])
def test_every_source_kind_exports_and_matches(zoo, tmp_path: Path, which: str) -> None:
    source = load_source(getattr(zoo, which))
    artifact = run_stage("onnx", source.artifact, tmp_path, opset=17)
    model = onnx.load(str(artifact.path))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == 17
    assert artifact.details["nodes"] == len(model.graph.node) and artifact.details["ops"]["Conv"] == 2
    out = predict(artifact, zoo.x_test)
    assert np.abs(out - zoo.reference).max() < 1e-4


def test_legacy_only_h5_exports_through_tf_keras(zoo, tmp_path: Path) -> None:
    source = load_source(zoo.legacy_h5)
    assert source.artifact.flavour == "tf_keras"
    artifact = run_stage("onnx", source.artifact, tmp_path)
    assert np.abs(predict(artifact, zoo.x_test) - zoo.legacy_reference).max() < 1e-4


def test_batch_dimension_is_dynamic_and_names_are_clean(zoo, tmp_path: Path) -> None:
    artifact = run_stage("onnx", load_source(zoo.keras3).artifact, tmp_path, opset=13)
    model = onnx.load(str(artifact.path))
    graph_input = model.graph.input[0]
    assert graph_input.name == "pixels"
    assert graph_input.type.tensor_type.shape.dim[0].dim_param  # symbolic, not a fixed batch
    assert [o.name for o in model.graph.output] == ["logits"]
    assert predict(artifact, zoo.x_test[:3], batch=3).shape == (3, 10)


@pytest.mark.parametrize("per_channel", [False, True])
def test_static_quantization_gives_qdq_pairs_that_match(zoo, tmp_path: Path, per_channel: bool) -> None:
    fp32 = run_stage("onnx", load_source(zoo.keras3).artifact, tmp_path / "fp32")
    static = run_stage(
        "onnx",
        load_source(zoo.keras3).artifact,
        tmp_path / "q",
        zoo.x_test[:100],
        quantize="static",
        per_channel=per_channel,
    )
    ops = static.details["ops"]
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    assert static.path.stat().st_size < 0.5 * fp32.path.stat().st_size
    out = predict(static, zoo.x_test)
    assert (out.argmax(1) == zoo.reference.argmax(1)).mean() > 0.97
    cosines = (out * zoo.reference).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(zoo.reference, axis=1)
    assert cosines.mean() > 0.99


def test_dynamic_quantization_runs(zoo, tmp_path: Path) -> None:
    artifact = run_stage("onnx", load_source(zoo.keras3).artifact, tmp_path, quantize="dynamic")
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & set(artifact.details["ops"])
    out = predict(artifact, zoo.x_test)
    assert (out.argmax(1) == zoo.reference.argmax(1)).mean() > 0.97


@pytest.mark.parametrize("which", ["saved_savedmodel", "legacy_h5"])
def test_static_quantization_from_other_sources(zoo, tmp_path: Path, which: str) -> None:
    source = load_source(getattr(zoo, which))
    artifact = run_stage("onnx", source.artifact, tmp_path, zoo.x_test[:64], quantize="static")
    reference = zoo.legacy_reference if which == "legacy_h5" else zoo.reference
    assert (predict(artifact, zoo.x_test).argmax(1) == reference.argmax(1)).mean() > 0.9


def test_static_quantization_without_calibration_is_a_stage_error(zoo, tmp_path: Path) -> None:
    with pytest.raises(StageError, match=r"needs representative inputs; add data\.calibration"):
        run_stage("onnx", load_source(zoo.keras3).artifact, tmp_path, quantize="static")


def test_fixed_batch_export_runs_any_batch(zoo, tmp_path: Path) -> None:
    artifact = run_stage("onnx", load_source(zoo.exported_savedmodel).artifact, tmp_path, dynamic_batch=False)
    model = onnx.load(str(artifact.path))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    out = predict(artifact, zoo.x_test[:13], batch=5)  # chunks of 1 inside onnxruntime
    assert np.abs(out - zoo.reference[:13]).max() < 1e-4
