"""Recurrent models to fp32 TFLite from every source kind, through `edgeport run` as a user runs it.

Keras 3 LSTMs and GRUs with dropout (a trace advanced their dropout seeds: "the converted model still reads
variables"), SavedModels made by `model.export` and by `tf.saved_model.save` (the fixed-shape
rescue was Keras-only: "Lowering tensor list ops is failed"), and TF1 graphs whose loop is a `tf.scan`, in control
flow v2 (tensor lists) and v1 (TensorArrayV3, converted as tensor lists); an array op with no list form
(TensorArrayConcatV3) is an error naming the ops and what to do.
Tiny seeded models (8 units, 6 steps, 4 features); evaluated on 24 sequences."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ..cli import edgeport_env, run_report
from ..recipes import recipe_file

STEPS, FEATURES, UNITS = 6, 4, 8

# A TF1 graph as TF1 code builds one: a recurrence written with tf.scan over time-major frames, frozen. Built in a
# child process: control flow v1 is a process-wide switch.
_TF1_RNN = (
    """
import sys
import numpy as np
import tensorflow as tf
v1 = tf.compat.v1
if sys.argv[2] != "v2":
    v1.disable_control_flow_v2()
graph = tf.Graph()
with graph.as_default():
    frames = v1.placeholder(tf.float32, [None, STEPS, FEATURES], name="frames")
    rng = np.random.default_rng(0)
    w = tf.constant(rng.normal(0, 0.5, (FEATURES, UNITS)).astype(np.float32))
    u = tf.constant(rng.normal(0, 0.5, (UNITS, UNITS)).astype(np.float32))
    start = tf.zeros(tf.stack([tf.shape(frames)[0], UNITS]))
    steps = v1.scan(lambda h, x: tf.tanh(tf.matmul(x, w) + tf.matmul(h, u)), tf.transpose(frames, [1, 0, 2]), start)
    last = steps[-1]
    if sys.argv[2] == "v1concat":  # an array op no rewrite turns into a tensor list's
        last += 0.0 * tf.reduce_sum(v1.TensorArray(tf.float32, size=STEPS).unstack(steps).concat())
    tf.identity(tf.matmul(last, tf.constant(rng.normal(0, 0.5, (UNITS, 3)).astype(np.float32))), name="probs")
    open(sys.argv[1], "wb").write(graph.as_graph_def().SerializeToString())
""".replace("STEPS", str(STEPS))
    .replace("FEATURES", str(FEATURES))
    .replace("UNITS", str(UNITS))
)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two-layer Keras 3 LSTM and GRU classifiers with dropout and recurrent dropout (`.keras`), the GRU also as a
    `model.export` SavedModel, an LSTM without dropout through `tf.saved_model.save`, TF1 graphs in both control
    flows, and the data."""
    from pipeline.frameworks import captured_native_output, import_tensorflow

    tf = import_tensorflow()
    import keras

    root = tmp_path_factory.mktemp("rnn-sources")
    with captured_native_output():
        for kind, layer in (("lstm", keras.layers.LSTM), ("gru", keras.layers.GRU)):
            keras.utils.set_random_seed(0)
            frames = keras.Input((STEPS, FEATURES), name="frames")
            hidden = layer(UNITS, return_sequences=True, dropout=0.2, recurrent_dropout=0.2)(frames)
            hidden = layer(UNITS, dropout=0.2)(hidden)
            model = keras.Model(frames, keras.layers.Dense(3, name="probs")(hidden))
            model.save(root / f"{kind}.keras")
        model.export(str(root / "exported"), verbose=False)  # the GRU: its seeds' writes sit in the signature
        # tf.saved_model.save refuses a model with dropout seeds ("an 'untracked' resource"): one without
        plain = keras.Sequential([keras.Input((STEPS, FEATURES)), keras.layers.LSTM(UNITS), keras.layers.Dense(3)])
        tf.saved_model.save(plain, str(root / "saved"))
    for flow in ("v2", "v1", "v1concat"):
        subprocess.run([sys.executable, "-c", _TF1_RNN, root / f"scan_{flow}.pb", flow], env=edgeport_env(), check=True)
    np.savez(
        root / "data.npz",
        calibration=np.random.default_rng(1).normal(size=(16, STEPS, FEATURES)).astype(np.float32),
        evaluation=np.random.default_rng(2).normal(size=(24, STEPS, FEATURES)).astype(np.float32),
    )
    return {path.stem: path for path in root.iterdir()}


def _recipe(models: dict[str, Path], tmp_path: Path, source: object, outputs: dict[str, object]) -> Path:
    data = {
        "calibration": {"npz": models["data"], "inputs": "calibration"},
        "evaluation": {"npz": models["data"], "inputs": "evaluation"},
    }
    return recipe_file(tmp_path, name="rnn", source=source, data=data, outputs=outputs)


def _passes_fp32_at_fixed_shapes(
    report: dict[str, object], input_name: str, cause: str = "Lowering tensor list ops is failed"
) -> dict[str, object]:
    [output] = report["outputs"]  # type: ignore[index]
    assert output["status"] == "passed", output
    assert output["parity"]["samples"] == 24
    assert output["parity"]["metrics"]["max_abs"] <= 1e-5  # measured 6e-8 .. 1.5e-7
    [rescue] = output["rescues"]
    assert rescue["name"] == "fixed_shapes" and cause in rescue["raw_error"]
    assert "\\n" not in rescue["raw_error"]  # the converter's advice held a literal backslash-n
    assert rescue["action"] == f"converted at fixed input shapes {input_name} [1, {STEPS}, {FEATURES}]"
    return output


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_a_keras3_rnn_with_dropout_reaches_fp32_tflite_without_variables(
    models: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    """Failed before: "the converted model still reads variables (ASSIGN_VARIABLE, READ_VARIABLE, VAR_HANDLE)"."""
    recipe = _recipe(models, tmp_path, models[kind], {"fp32": {"stages": ["tflite"]}})
    _passes_fp32_at_fixed_shapes(run_report(recipe, tmp_path / "out", 0), "frames")
    _assert_no_variable_ops(tmp_path / "out" / "fp32" / "model.tflite")


@pytest.mark.parametrize(("saved", "input_name"), [("exported", "frames"), ("saved", "inputs")])
def test_a_savedmodel_rnn_is_converted_at_fixed_shapes(
    models: dict[str, Path], tmp_path: Path, saved: str, input_name: str
) -> None:
    """Failed before: "Lowering tensor list ops is failed" (the rescue was tried for Keras sources only)."""
    outputs = {"fp32": {"stages": ["tflite"]}}
    _passes_fp32_at_fixed_shapes(
        run_report(_recipe(models, tmp_path, models[saved], outputs), tmp_path / "out", 0), input_name
    )
    _assert_no_variable_ops(tmp_path / "out" / "fp32" / "model.tflite")


@pytest.mark.parametrize("flow", ["v2", "v1"])
def test_a_tf1_graph_rnn_is_converted_at_fixed_shapes(models: dict[str, Path], tmp_path: Path, flow: str) -> None:
    """Control flow v1 failed before: "ops missing from the TFLite builtins: TensorArrayGatherV3, ..."; the
    rescue converts its arrays as tensor lists now."""
    source = {"graph": models[f"scan_{flow}"], "inputs": ["frames"], "outputs": ["probs"]}
    recipe = _recipe(models, tmp_path, source, {"fp32": {"stages": ["tflite"]}})
    cause = "ops missing from the TFLite builtins: TensorArrayGatherV3" if flow == "v1" else "tensor list"
    _passes_fp32_at_fixed_shapes(run_report(recipe, tmp_path / "out", 0), "frames", cause)
    _assert_no_variable_ops(tmp_path / "out" / "fp32" / "model.tflite")


def test_an_array_op_without_a_list_form_names_the_ops_and_the_fix(models: dict[str, Path], tmp_path: Path) -> None:
    source = {"graph": models["scan_v1concat"], "inputs": ["frames"], "outputs": ["probs"]}
    recipe = _recipe(models, tmp_path, source, {"fp32": {"stages": ["tflite"]}})
    [output] = run_report(recipe, tmp_path / "out", 3)["outputs"]
    assert output["status"] == "error"
    assert "TensorArrayConcatV3" in output["error"] and "TensorArrayV3" in output["error"]
    assert "control flow v1" in output["error"] and "select_tf_ops" in output["error"]
    assert output["error"].count("TensorArrayConcatV3") == 1, output["error"]  # the rescue's try does not repeat it


def _assert_no_variable_ops(path: Path) -> None:
    from pipeline.frameworks import litert_interpreter

    ops = {op["op_name"] for op in litert_interpreter(path.read_bytes())._get_ops_details()}
    assert not ops & {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"}, ops
