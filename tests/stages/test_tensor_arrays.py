"""TF1 control flow v1 TensorArrays rewritten as tensor lists: the same outputs, no array op left; a graph with an
array op the rewrite does not know stays as it was. Graphs built by TF1 code in a child process (control flow v1 is
a process-wide switch), run in a TensorFlow session here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.stages.tensor_arrays import tensor_arrays_as_lists

from ..cli import edgeport_env

# A recurrence over time-major frames (tf.scan: unstack, a while loop that reads and writes, stack), and with
# "concat" one more array read back with TensorArrayConcatV3.
_GRAPH = """
import sys
import numpy as np
import tensorflow as tf
v1 = tf.compat.v1
v1.disable_control_flow_v2()
graph = tf.Graph()
with graph.as_default():
    x = v1.placeholder(tf.float32, [None, 5, 3], name="x")
    w = tf.constant(np.random.default_rng(0).normal(0, 0.5, (3, 4)).astype(np.float32))
    start = tf.zeros(tf.stack([tf.shape(x)[0], 4]))
    steps = v1.scan(lambda h, x_t: tf.tanh(tf.matmul(x_t, w) + h), tf.transpose(x, [1, 0, 2]), start)
    if sys.argv[2] == "concat":
        steps += tf.reduce_sum(v1.TensorArray(tf.float32, size=5).unstack(steps).concat())
    tf.identity(steps, name="y")
    open(sys.argv[1], "wb").write(graph.as_graph_def().SerializeToString())
"""


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from pipeline.frameworks import import_tensorflow

    tf = import_tensorflow()
    root = tmp_path_factory.mktemp("tensor-arrays")
    found = {}
    for kind in ("scan", "concat"):
        path = root / f"{kind}.pb"
        subprocess.run([sys.executable, "-c", _GRAPH, path, kind], env=edgeport_env(), check=True)
        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString(Path(path).read_bytes())
        found[kind] = graph_def
    return found


def _run(graph_def: Any, x: np.ndarray) -> np.ndarray:
    from pipeline.frameworks import import_tensorflow

    tf = import_tensorflow()
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            return session.run("y:0", {"x:0": x})


def _rewritten(graph_def: Any) -> tuple[Any, list[str]]:
    copied = type(graph_def)()
    copied.CopyFrom(graph_def)
    return copied, tensor_arrays_as_lists(copied.node)


def test_arrays_become_tensor_lists_with_the_same_outputs(graphs: dict[str, Any]) -> None:
    lists, arrays = _rewritten(graphs["scan"])
    assert arrays == ["scan/TensorArray", "scan/TensorArray_1"]
    ops = {node.op for node in lists.node}
    assert not {op for op in ops if op.startswith("TensorArray")}, ops
    assert {"TensorListFromTensor", "TensorListGetItem", "TensorListSetItem", "TensorListStack"} <= ops
    x = np.random.default_rng(1).normal(size=(3, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(_run(lists, x), _run(graphs["scan"], x))


def test_a_graph_with_an_array_op_it_does_not_know_stays_as_it_was(graphs: dict[str, Any]) -> None:
    unchanged, arrays = _rewritten(graphs["concat"])
    assert arrays == [] and unchanged == graphs["concat"]
    assert "TensorArrayConcatV3" in {node.op for node in unchanged.node}
