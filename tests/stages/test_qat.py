"""qat stage: tfmot quantization-aware training of a tf_keras model, then int8 TFLite and QDQ ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from pipeline.errors import StageError
from pipeline.runtimes import runtime_for
from pipeline.sources import load_source

from ..helpers import predict, run_stage, top1_agreement


@pytest.fixture(scope="module")
def qat(tf_keras_digits, fine_tune, tmp_path_factory):
    return run_stage("qat", tf_keras_digits, tmp_path_factory.mktemp("qat"), fine_tune=fine_tune, epochs=1)


def test_qat_model_keeps_accuracy_and_marks_itself(qat, zoo) -> None:
    assert qat.details["qat"] is True and qat.flavour == "tf_keras" and qat.path.suffix == ".h5"
    assert {"conv2d", "dense", "logits"} <= set(qat.details["quantized_layers"])
    accuracy = float((predict(qat, zoo.x_test).argmax(axis=1) == zoo.y_test).mean())
    assert accuracy >= 0.93
    assert qat.details["fine_tune_after"]["accuracy"] > 0.95


def test_qat_model_becomes_an_all_int8_tflite(qat, zoo, tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    artifact = run_stage("tflite", qat, tmp_path, calibration=zoo.x_test[:50], quantize="int8", io="int8")
    assert runtime_for(artifact).inputs[0].dtype == "int8"
    ops = {op["op_name"] for op in Interpreter(model_path=str(artifact.path))._get_ops_details()}
    assert "DEQUANTIZE" not in ops and "QUANTIZE" not in ops  # int8 from end to end
    reference = predict(qat, zoo.x_test)
    out = predict(artifact, zoo.x_test)
    assert top1_agreement(out, reference) >= 0.97
    assert np.abs(out - reference).max() < 0.05 * (reference.max() - reference.min())


def test_qat_model_exports_to_onnx_as_qdq_pairs(qat, zoo, tmp_path: Path) -> None:
    artifact = run_stage("onnx", qat, tmp_path)
    ops = [node.op_type for node in onnx.load(str(artifact.path)).graph.node]
    assert ops.count("QuantizeLinear") == ops.count("DequantizeLinear") >= 4
    assert top1_agreement(predict(artifact, zoo.x_test), predict(qat, zoo.x_test)) >= 0.97


def test_keras3_model_is_refused_with_the_post_training_route(zoo, fine_tune, tmp_path: Path) -> None:
    with pytest.raises(StageError, match=r"Keras 3.*quantize: int8"):
        run_stage("qat", load_source(zoo.keras3).artifact, tmp_path, fine_tune=fine_tune)
