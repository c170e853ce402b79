"""Index math done in float (T5's relative-position buckets) is left out of static quantization: quantized, its range
holds log(0) = -inf and the Gather after it reads index -2147483592."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.stages.onnx_index_math import float_index_math

from ..cli import run_report
from ..helpers import saved_hub_backbone
from ..recipes import recipe_file


def _graph() -> object:
    """positions (int) → Cast float → Div → Log → Mul → Cast int → Gather a table; and x (float) → MatMul →
    Cast int, which is model data, not index math."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Cast", ["positions"], ["p_float"], to=TensorProto.FLOAT, name="to_float"),
        helper.make_node("Div", ["p_float", "eight"], ["ratio"], name="truediv"),
        helper.make_node("Log", ["ratio"], ["log"], name="Log"),
        helper.make_node("Mul", ["log", "eight"], ["scaled"], name="mul"),
        helper.make_node("Cast", ["scaled"], ["bucket"], to=TensorProto.INT64, name="to_int"),
        helper.make_node("Gather", ["table", "bucket"], ["bias"], name="gather"),
        helper.make_node("MatMul", ["x", "weights"], ["logits"], name="dense"),
        helper.make_node("Mul", ["logits", "eight"], ["wide"], name="data_mul"),
        helper.make_node("Cast", ["wide"], ["classes"], to=TensorProto.INT64, name="data_to_int"),
    ]
    initializers = [
        helper.make_tensor("eight", TensorProto.FLOAT, [], [8.0]),
        helper.make_tensor("table", TensorProto.FLOAT, [4, 2], np.arange(8.0).tolist()),
        helper.make_tensor("weights", TensorProto.FLOAT, [3, 3], np.eye(3).ravel().tolist()),
    ]
    inputs = [
        helper.make_tensor_value_info("positions", TensorProto.INT64, [None]),
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3]),
    ]
    outputs = [
        helper.make_tensor_value_info("bias", TensorProto.FLOAT, None),
        helper.make_tensor_value_info("classes", TensorProto.INT64, None),
    ]
    graph = helper.make_graph(nodes, "buckets", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_float_arithmetic_between_integer_casts_is_index_math_and_model_data_is_not() -> None:
    assert float_index_math(_graph()) == ["truediv", "Log", "mul"]


@pytest.mark.slow
def test_t5s_relative_position_buckets_stay_float_and_its_static_int8_file_runs(tmp_path: Path) -> None:
    pytest.importorskip("keras_hub")
    model, keys = saved_hub_backbone("t5", tmp_path, {"eval": (1, 8), "calibration": (2, 16)})
    data = {
        "evaluation": {"npz": tmp_path / "eval.npz", "inputs": keys},
        "calibration": {"npz": tmp_path / "calibration.npz", "inputs": keys},
    }
    outputs = {
        "int8": {"stages": [{"onnx": {"quantize": "static"}}]},
        "raw": {"stages": [{"onnx": {"quantize": "static", "rescue": False}}]},
    }
    source = {"path": model, "trusted": True}
    recipe = recipe_file(tmp_path, name="t5", source=source, data=data, outputs=outputs)
    rescued, raw = run_report(recipe, tmp_path / "o", 3)["outputs"]  # 3: the raw file cannot run
    assert rescued["status"] == "passed", rescued["parity"]["metrics"]
    [rescue] = rescued["rescues"]
    assert rescue["name"] == "float_index_math" and "Log" in rescue["action"]
    assert raw["status"] == "error" and "indices element out of data bounds" in raw["error"]
