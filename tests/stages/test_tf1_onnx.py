"""TF1 graphs whose recurrence is a control flow v1 loop (`tf.compat.v1.nn.dynamic_rnn`, `tf.compat.v1.scan`:
TensorArrayV3 in a while loop) to ONNX through `edgeport run`, as a user runs it.

Converted from their SavedModel, the loop sat in a function tf2onnx left as a call: "onnx.checker rejected the
exported model: No Op registered for StatefulPartitionedCall". The onnx stage converts TF1 sources from the frozen
GraphDef itself now: the loop becomes an ONNX Scan (dynamic_rnn) or Loop (scan). Tiny seeded graphs (8 units, 6
steps, 4 features), evaluated on 24 sequences."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from ..cli import edgeport_env, run_report
from ..recipes import recipe_file
from .test_rnn_sources import _TF1_RNN, FEATURES, STEPS, UNITS

# A TF1 LSTM as TF1 code builds one: dynamic_rnn over batch-major frames, its variables frozen. In a child process:
# control flow v1 is a process-wide switch, and tf.compat.v1's LSTMCell needs tf_keras (TF_USE_LEGACY_KERAS).
_DYNAMIC_RNN = (
    """
import sys
import numpy as np
import tensorflow as tf
v1 = tf.compat.v1
v1.disable_control_flow_v2()
graph = tf.Graph()
with graph.as_default():
    v1.set_random_seed(0)
    frames = v1.placeholder(tf.float32, [None, STEPS, FEATURES], name="frames")
    steps, _ = v1.nn.dynamic_rnn(v1.nn.rnn_cell.LSTMCell(UNITS), frames, dtype=tf.float32)
    head = tf.constant(np.random.default_rng(0).normal(0, 0.5, (UNITS, 3)).astype(np.float32))
    tf.identity(tf.matmul(steps[:, -1], head), name="probs")
    with v1.Session() as session:
        session.run(v1.global_variables_initializer())
        frozen = v1.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), ["probs"])
open(sys.argv[1], "wb").write(frozen.SerializeToString())
""".replace("STEPS", str(STEPS))
    .replace("FEATURES", str(FEATURES))
    .replace("UNITS", str(UNITS))
)

# The loop each graph's TensorArrays become in ONNX.
_LOOP_OP = {"dynamic_rnn": "Scan", "scan": "Loop"}


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The frozen dynamic_rnn LSTM and tf.scan recurrence graphs (control flow v1), and the data."""
    root = tmp_path_factory.mktemp("tf1-onnx")
    env = edgeport_env(TF_USE_LEGACY_KERAS="1")
    subprocess.run([sys.executable, "-c", _DYNAMIC_RNN, root / "dynamic_rnn.pb"], env=env, check=True)
    subprocess.run([sys.executable, "-c", _TF1_RNN, root / "scan.pb", "v1"], env=env, check=True)
    np.savez(
        root / "data.npz",
        calibration=np.random.default_rng(1).normal(size=(16, STEPS, FEATURES)).astype(np.float32),
        evaluation=np.random.default_rng(2).normal(size=(24, STEPS, FEATURES)).astype(np.float32),
    )
    return {path.stem: path for path in root.iterdir()}


@pytest.mark.parametrize("graph", ["dynamic_rnn", "scan"])
def test_a_tf1_control_flow_v1_rnn_reaches_fp32_onnx_at_the_default_gate(
    graphs: dict[str, Path], tmp_path: Path, graph: str
) -> None:
    """Failed before (every output): "onnx.checker rejected the exported model: No Op registered for
    StatefulPartitionedCall with domain_version of 17"."""
    data = {
        "calibration": {"npz": graphs["data"], "inputs": "calibration"},
        "evaluation": {"npz": graphs["data"], "inputs": "evaluation"},
    }
    outputs = {
        "fp32": {"stages": ["onnx"]},
        "batch1": {"stages": [{"onnx": {"dynamic_batch": False}}]},
        "int8": {"stages": [{"onnx": {"quantize": "static"}}]},
    }
    source = {"graph": graphs[graph], "inputs": ["frames"], "outputs": ["probs"]}
    recipe = recipe_file(tmp_path, name=graph, source=source, data=data, outputs=outputs)
    report = run_report(recipe, tmp_path / "out", 0)
    by_name = {output["name"]: output for output in report["outputs"]}
    for name in ("fp32", "batch1"):
        output = by_name[name]
        assert output["status"] == "passed", output
        assert output["gates_from"] == "default" and output["parity"]["samples"] == 24
        assert output["parity"]["metrics"]["max_abs"] <= 1e-5  # measured 1.2e-7 (dynamic_rnn), 7e-7 (scan)
        assert not output["rescues"]
    model = onnx.load(str(tmp_path / "out" / "fp32" / "model.onnx"))
    ops = {node.op_type for node in model.graph.node}
    assert _LOOP_OP[graph] in ops and not ops & {"StatefulPartitionedCall", "PartitionedCall"}, ops
    assert [value.name for value in model.graph.input] == ["frames"]
    assert [value.name for value in model.graph.output] == ["probs"]
    # Static int8 leaves the loop's body in float (onnxruntime quantizes no subgraph): only the head's MatMul.
    int8 = by_name["int8"]
    assert int8["status"] != "error", int8
    assert int8["stages"][-1]["details"]["ops"]["QuantizeLinear"] > 0
