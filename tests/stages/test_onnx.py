"""onnx stage: tf2onnx export from Keras 3, tf_keras and both SavedModel kinds, run in onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

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
