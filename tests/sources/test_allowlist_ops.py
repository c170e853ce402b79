"""The op allowlist (pipeline/sources/allowlist/ops.py) held to tf2onnx's handler registry and to TensorFlow's op
modules, and the checker (pipeline/sources/graphdef.py) on graphs TensorFlow builds for real: the models users
ship pass untrusted; file, Python and printing ops are refused wherever they sit (an unreachable library function,
a saver that is not the saver's, a lookup table reading a path that is not an asset)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import tensorflow as tf

from pipeline.sources.allowlist.ops import (
    ALLOWED_OPS,
    ASSET_OPS,
    NOT_CONVERTED_BY_TF2ONNX,
    REFUSED_THOUGH_TF2ONNX_CONVERTS,
    SAVER_OPS,
)
from pipeline.sources.graphdef import (
    asset_escapes,
    graph_elements_refused,
    meta_graph_elements_refused,
    saved_model_elements_refused,
)

v1 = tf.compat.v1
REGISTERED = set(dir(tf.raw_ops))
# Modules whose every op reads or writes files, runs Python, prints, talks to other processes or parses protos.
_EFFECT_MODULES = (
    "gen_io_ops", "gen_dataset_ops", "gen_experimental_dataset_ops", "gen_debug_ops", "gen_script_ops",
    "gen_summary_ops", "gen_collective_ops", "gen_filesystem_ops", "gen_decode_proto_ops", "gen_encode_proto_ops",
    "gen_checkpoint_ops", "gen_sendrecv_ops", "gen_logging_ops",
)  # fmt: skip
CARRIERS = {
    "ReadFile", "WriteFile", "MatchingFiles", "PyFunc", "PyFuncStateless", "EagerPyFunc", "TextLineDataset",
    "TFRecordDataset", "FixedLengthRecordDataset", "FlatMapDataset", "DatasetToTFRecord", "DebugIdentity",
    "DebugIdentityV2", "DebugIdentityV3", "DecodeProtoV2", "LoadAndRemapMatrix", "PrintV2", "Print",
    "ImmutableConst", "Abort", "RemoteCall", "WriteSummary", "CreateSummaryFileWriter",
}  # fmt: skip


def _saved_model(directory: Path) -> object:
    from tensorflow.core.protobuf import saved_model_pb2

    return saved_model_pb2.SavedModel.FromString((directory / "saved_model.pb").read_bytes())


def _described(refused: list) -> list[str]:
    return [element.describe() for element in refused]


def test_the_differences_from_tf2onnx_are_exactly_the_two_explained_dicts() -> None:
    from tf2onnx import handler, tfonnx  # noqa: F401  (tfonnx imports every handler module)

    convertible = {name for opsets in handler.tf_op.get_opsets().values() for ops in opsets for name in ops}
    convertible &= REGISTERED  # tf2onnx also registers TFLite op names and its own internal ones
    assert sorted(ALLOWED_OPS - convertible) == sorted(NOT_CONVERTED_BY_TF2ONNX)
    assert sorted(convertible - ALLOWED_OPS) == sorted(REFUSED_THOUGH_TF2ONNX_CONVERTS)
    assert all(why.strip() for why in [*NOT_CONVERTED_BY_TF2ONNX.values(), *REFUSED_THOUGH_TF2ONNX_CONVERTS.values()])


def test_every_listed_op_is_one_this_tensorflow_registers() -> None:
    assert sorted((ALLOWED_OPS | SAVER_OPS | ASSET_OPS) - REGISTERED) == []
    assert not (SAVER_OPS | ASSET_OPS) & ALLOWED_OPS


def test_ops_that_touch_files_run_python_or_print_are_not_allowed() -> None:
    assert sorted(CARRIERS & ALLOWED_OPS) == []
    for name in _EFFECT_MODULES:
        module = importlib.import_module(f"tensorflow.python.ops.{name}")
        ops = {op for op in vars(module) if op in REGISTERED and op != "Any"}  # `typing.Any`, not the op
        assert ops, name
        assert sorted(ops & ALLOWED_OPS) == (["Assert"] if name == "gen_logging_ops" else []), name


def test_models_users_ship_pass_untrusted(tmp_path: Path) -> None:
    import keras
    import tf_keras

    cnn = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(),
                            keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])  # fmt: skip
    cnn.export(str(tmp_path / "keras3"), verbose=False)
    lstm = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4), keras.layers.Dense(2)])
    lstm.export(str(tmp_path / "keras3_lstm"), verbose=False)
    gru = tf_keras.Sequential([tf_keras.Input((5, 3)), tf_keras.layers.GRU(4), tf_keras.layers.Dense(2)])
    tf.saved_model.save(gru, str(tmp_path / "tf_keras_gru"))
    for name in ("keras3", "keras3_lstm", "tf_keras_gru"):
        assert _described(saved_model_elements_refused(_saved_model(tmp_path / name))) == [], name


def _saver_graph() -> tuple[tf.Graph, object]:
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        # a constant initializer: a stage run earlier in the process may have turned op determinism on, which
        # refuses an unseeded random one
        weights = v1.get_variable("w", [4, 2], initializer=v1.zeros_initializer())
        tf.identity(tf.matmul(x, weights), name="y")
        return graph, v1.train.Saver().export_meta_graph()


def test_saver_ops_pass_only_inside_the_saver_s_own_closure() -> None:
    _, meta = _saver_graph()
    assert _described(meta_graph_elements_refused(meta)) == []
    without_saver = type(meta)()
    without_saver.CopyFrom(meta)
    without_saver.ClearField("saver_def")
    refused = meta_graph_elements_refused(without_saver)
    assert {(element.op, element.node) for element in refused} == {
        ("SaveV2", "save/SaveV2"),
        ("RestoreV2", "save/RestoreV2"),
    }
    # the model's output waits on the saver's SaveV2: it would write a checkpoint whenever the model runs
    next(node for node in meta.graph_def.node if node.name == "y").input.append("^save/SaveV2")
    assert _described(meta_graph_elements_refused(meta)) == ["op 'SaveV2' at node 'save/SaveV2'"]


def test_a_write_the_restore_op_waits_on_is_refused_as_the_saver_s() -> None:
    _, meta = _saver_graph()
    write = meta.graph_def.node.add()
    write.name, write.op = "evil/write", "WriteFile"
    write.input.extend(["save/Const", "save/Const"])
    restore = next(node for node in meta.graph_def.node if node.name == meta.saver_def.restore_op_name)
    restore.input.append("^evil/write")
    assert _described(meta_graph_elements_refused(meta)) == [
        "op 'WriteFile' at node 'evil/write' (the saver's own restore or save op runs it)"
    ]


def test_a_restore_op_reads_only_the_checkpoint_the_saver_is_given() -> None:
    """A restore op whose path is a constant would load another checkpoint than the one the recipe names."""
    _, meta = _saver_graph()
    elsewhere = meta.graph_def.node.add()
    elsewhere.CopyFrom(next(node for node in meta.graph_def.node if node.name == "save/Const"))
    elsewhere.name, elsewhere.op = "evil/elsewhere", "Const"
    restore = next(node for node in meta.graph_def.node if node.name == "save/RestoreV2")
    assert restore.input[0] == "save/Const" and meta.saver_def.filename_tensor_name == "save/Const:0"
    restore.input[0] = "evil/elsewhere"
    assert _described(meta_graph_elements_refused(meta)) == [
        "op 'RestoreV2' at node 'save/RestoreV2' (reads a checkpoint the saver is not given)"
    ]


def test_a_library_function_no_node_calls_is_checked_too() -> None:
    @tf.function
    def writes(x: tf.Tensor) -> tf.Tensor:
        tf.io.write_file("/nonexistent/canary", "ran")
        return x

    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None], name="x")
        writes(x)
        tf.identity(x, name="y")
    graph_def = graph.as_graph_def()
    called = [node for node in graph_def.node if node.op.endswith("PartitionedCall")]
    graph_def.node.remove(called[0])
    (function,) = [function.signature.name for function in graph_def.library.function]
    refused = _described(graph_elements_refused(graph_def))
    assert refused == [f"op 'WriteFile' at node 'WriteFile' in function '{function}'"]


def test_a_table_reads_a_text_file_only_when_it_is_an_asset_of_the_model(tmp_path: Path) -> None:
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("a\nb\n")
    graph = tf.Graph()
    with graph.as_default():
        keys = v1.placeholder(tf.string, [None], name="keys")
        initializer = tf.lookup.TextFileInitializer(str(vocabulary), tf.string, 0, tf.int64, -1)
        tf.identity(tf.lookup.StaticHashTable(initializer, -1).lookup(keys), name="ids")
    graph_def = graph.as_graph_def()
    reader = next(node for node in graph_def.node if node.op in ASSET_OPS)
    assert _described(graph_elements_refused(graph_def)) == [
        f"op '{reader.op}' at node '{reader.name}' (reads a file that is not an asset)"
    ]
    assert graph_elements_refused(graph_def, asset_tensors=[reader.input[1]]) == []
    # saved the TF2 way, the vocabulary is copied into assets/ and read through the loader's binding: it passes
    module = tf.Module()
    module.table = tf.lookup.StaticHashTable(tf.lookup.TextFileInitializer(str(vocabulary), tf.string, 0,
                                                                           tf.int64, -1), -1)  # fmt: skip
    module.lookup = tf.function(module.table.lookup, input_signature=[tf.TensorSpec([None], tf.string)])
    tf.saved_model.save(module, str(tmp_path / "saved"))
    assert _described(saved_model_elements_refused(_saved_model(tmp_path / "saved"))) == []


@pytest.mark.parametrize(
    ("filename", "escapes"),
    [("vocabulary.txt", False), ("sub/vocabulary.txt", False), ("../secret", True), ("a/../../secret", True),
     ("/etc/passwd", True), ("\\\\server\\share", True), ("C:secret", True), ("", True)],
)  # fmt: skip
def test_an_asset_named_outside_the_model_escapes(filename: str, escapes: bool) -> None:
    assert asset_escapes(filename) is escapes


def test_a_function_the_loader_calls_never_gets_the_saver_s_allowance(tmp_path: Path) -> None:
    """The SavedModel loader calls a signature through the object graph, not through a node: hooking that function
    under the saver's restore op (and dropping its top-level call) must not let it write checkpoints."""
    module = tf.Module()
    module.serve = tf.function(lambda x: {"y": x * 2.0}, input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "saved"), signatures=module.serve.get_concrete_function())
    saved = _saved_model(tmp_path / "saved")
    meta = saved.meta_graphs[0]  # type: ignore[attr-defined]
    assert _described(saved_model_elements_refused(saved)) == []
    (wrapper,) = [name for name in meta.object_graph_def.concrete_functions if "signature_wrapper" in name]
    kept = [node for node in meta.graph_def.node if not ("f" in node.attr and node.attr["f"].func.name == wrapper)]
    del meta.graph_def.node[:]
    meta.graph_def.node.extend(kept)
    call = meta.graph_def.node.add()
    call.name, call.op = "evil/call", "StatefulPartitionedCall"
    call.attr["f"].func.name = wrapper
    next(node for node in meta.graph_def.node if node.name == meta.saver_def.restore_op_name).input.append("^evil/call")
    function = next(function for function in meta.graph_def.library.function if function.signature.name == wrapper)
    save = function.node_def.add()
    save.name, save.op = "evil/save", "SaveV2"
    assert _described(saved_model_elements_refused(saved)) == [
        f"op 'SaveV2' at node 'evil/save' in function '{wrapper}'"
    ]
