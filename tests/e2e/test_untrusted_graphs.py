"""Graphs that run code or touch files, refused untrusted before anything loads (issue #36, items 3-6).

Each probe is built for real by TensorFlow in a child process: a SavedModel whose resource initializer writes a
file, one whose signature reads one; TF1 graphs that write through a library function (called, or named as the
node's op), read through a FlatMapDataset's TextLineDataset, write with DatasetToTFRecord and DebugIdentity
(file://), read with DecodeProtoV2 (descriptor_source) and LoadAndRemapMatrix (another checkpoint); a Saver
checkpoint whose own restore op waits on a WriteFile. A second child runs each one in TensorFlow with no check and
records what it did, so every refusal below is of a probe that bites. Then `edgeport inspect` and `edgeport run`
(and `init` for one) exit 2 naming the op and where it sits, and the canary file is not written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..cli import edgeport, edgeport_env
from ..recipes import write_recipe

BUILD = """
import sys

import tensorflow as tf
from pathlib import Path
v1 = tf.compat.v1
out = Path(sys.argv[1])
canary = str(out / "canary.txt")
secret = out / "secret.txt"
dumps = out / "dumps"
secret.write_text("the secret\\n")


def frozen(name, effect):
    # a TF1 graph y = 2x whose output waits on effect(x) (a control dependency): running y runs the probe
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        with tf.control_dependencies([effect(x)]):
            tf.identity(x * 2.0, name="y")
    (out / f"{name}.pb").write_bytes(graph.as_graph_def().SerializeToString())


@tf.function
def library_write(x):
    tf.io.write_file(canary, "ran")
    return x


frozen("library_function", lambda x: library_write(x))
frozen("dataset_to_tfrecord", lambda x: tf.raw_ops.DatasetToTFRecord(
    input_dataset=tf.data.Dataset.from_tensors("ran")._variant_tensor, filename=canary, compression_type=""))
frozen("debug_identity", lambda x: tf.raw_ops.DebugIdentity(
    input=x, tensor_name="x:0", debug_urls=[f"file://{dumps}"]))
frozen("decode_proto", lambda x: tf.raw_ops.DecodeProtoV2(
    bytes=tf.constant([b""]), message_type="x.Y", field_names=[], output_types=[],
    descriptor_source=str(secret))[0])


def flat_map(x):
    lines = tf.data.Dataset.from_tensors(str(secret)).flat_map(tf.data.TextLineDataset)
    return v1.data.make_one_shot_iterator(lines).get_next()


frozen("flat_map_text_line", flat_map)

# a node whose op is the library function itself (no call op in between)
graph_def = tf.compat.v1.GraphDef.FromString((out / "library_function.pb").read_bytes())
for node in graph_def.node:
    if node.op in ("StatefulPartitionedCall", "PartitionedCall"):
        function = node.attr["f"].func.name
        node.op = function
        for attr in list(node.attr):
            del node.attr[attr]
(out / "function_as_op.pb").write_bytes(graph_def.SerializeToString())


# SavedModels: an initializer that writes at load; a signature that reads a file
class Writer(tf.saved_model.experimental.TrackableResource):
    def _create_resource(self):
        return tf.raw_ops.HashTableV2(key_dtype=tf.string, value_dtype=tf.int64)

    def _initialize(self):
        with tf.control_dependencies([tf.io.write_file(canary, "ran")]):
            return tf.raw_ops.InitializeTableV2(
                table_handle=self.resource_handle, keys=tf.constant(["a"]), values=tf.constant([1], tf.int64))


module = tf.Module()
module.writer = Writer()
module.serve = tf.function(lambda x: {"y": x * 2.0}, input_signature=[tf.TensorSpec([None, 4], tf.float32)])
tf.saved_model.save(module, str(out / "initializer_writes"), signatures=module.serve.get_concrete_function())

reader = tf.Module()
reader.serve = tf.function(
    lambda x: {"y": x * 2.0, "leak": tf.io.read_file(str(secret))},
    input_signature=[tf.TensorSpec([None, 4], tf.float32)],
)
tf.saved_model.save(reader, str(out / "signature_reads"), signatures=reader.serve.get_concrete_function())

# a TF1 checkpoint whose own restore op waits on a WriteFile
graph = tf.Graph()
with graph.as_default():
    x = v1.placeholder(tf.float32, [None, 4], name="x")
    w = v1.get_variable("w", [4, 2])
    tf.identity(tf.matmul(x, w), name="y")
    saver = v1.train.Saver()
    with v1.Session() as session:
        session.run(v1.global_variables_initializer())
        saver.save(session, str(out / "restore" / "model.ckpt"))
meta_path = out / "restore" / "model.ckpt.meta"
meta = v1.MetaGraphDef.FromString(meta_path.read_bytes())
nodes = meta.graph_def.node
filename, contents, write = nodes.add(), nodes.add(), nodes.add()
for const, name, value in ((filename, "evil/filename", canary.encode()), (contents, "evil/contents", b"ran")):
    const.name, const.op = name, "Const"
    const.attr["dtype"].type = tf.string.as_datatype_enum
    const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
write.name, write.op = "evil/write", "WriteFile"
write.input.extend([filename.name, contents.name])
restore = next(node for node in nodes if node.name == meta.saver_def.restore_op_name)
restore.input.append("^evil/write")
meta_path.write_bytes(meta.SerializeToString())
# another checkpoint's values, read by the graph itself
frozen("load_and_remap", lambda x: tf.raw_ops.LoadAndRemapMatrix(
    ckpt_path=str(out / "restore" / "model.ckpt"), old_tensor_name="w", row_remapping=tf.range(4, dtype=tf.int64),
    col_remapping=tf.constant([], tf.int64), initializing_values=tf.constant([], tf.float32), num_rows=4,
    num_cols=2))
"""

CONTROL = """
import json, shutil, sys, tensorflow as tf
from pathlib import Path
v1 = tf.compat.v1
out = Path(sys.argv[1])
canary, secret = out / "canary.txt", (out / "secret.txt").read_text()
FETCH = {"flat_map_text_line": "IteratorGetNext:0", "decode_proto": "DecodeProtoV2:0",
         "load_and_remap": "LoadAndRemapMatrix:0", "debug_identity": "DebugIdentity:0"}


def graph(name):
    graph_def = v1.GraphDef.FromString((out / f"{name}.pb").read_bytes())
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(graph_def, name="")
        with v1.Session(graph=g) as session:
            return session.run(FETCH.get(name, "y:0"), {"x:0": [[1, 2, 3, 4]]})


def evidence(name, run):
    canary.unlink(missing_ok=True)
    try:
        value = run()
        error = ""
    except Exception as caught:
        value, error = None, str(caught)[:300]
    text = repr(value)
    return {"canary": canary.exists(), "secret": secret.strip() in text, "dumps": (out / "dumps").exists(),
            "parsed": "does not represent serialized file descriptor set" in error, "value": text[:200], "error": error}


def restored():
    with tf.Graph().as_default() as g, v1.Session(graph=g) as session:
        saver = v1.train.import_meta_graph(str(out / "restore" / "model.ckpt.meta"))
        saver.restore(session, str(out / "restore" / "model.ckpt"))


found = {name: evidence(name, lambda name=name: graph(name)) for name in (
    "library_function", "function_as_op", "flat_map_text_line", "dataset_to_tfrecord", "debug_identity",
    "decode_proto", "load_and_remap")}
def leak():
    serve = tf.saved_model.load(str(out / "signature_reads")).signatures["serving_default"]
    return serve(x=tf.ones([1, 4]))["leak"].numpy()


found["initializer_writes"] = evidence("initializer", lambda: tf.saved_model.load(str(out / "initializer_writes")))
found["signature_reads"] = evidence("signature_reads", leak)
found["restore"] = evidence("restore", restored)
canary.unlink(missing_ok=True)
shutil.rmtree(out / "dumps", ignore_errors=True)
print(json.dumps(found))
"""

# probe → (the model as `inspect` takes it, the recipe's source, what the refusal names)
PROBES = {
    "initializer_writes": (
        "initializer_writes", "initializer_writes",
        "op 'WriteFile' at node 'WriteFile' in function '__inference__initializer_",
    ),
    "signature_reads": (
        "signature_reads", "signature_reads", "op 'ReadFile' at node 'ReadFile' in function '__inference_<lambda>_",
    ),
    "library_function": (
        "library_function.pb", "{graph: library_function.pb, outputs: [y]}",
        "op 'WriteFile' at node 'WriteFile' in function '__inference_library_write_",
    ),
    "function_as_op": (
        "function_as_op.pb", "{graph: function_as_op.pb, outputs: [y]}",
        "op 'WriteFile' at node 'WriteFile' in function '__inference_library_write_",
    ),
    "flat_map_text_line": (
        "flat_map_text_line.pb", "{graph: flat_map_text_line.pb, outputs: [y]}",
        "op 'TextLineDataset' at node 'TextLineDataset' in function '__inference_Dataset_flat_map_read_one_file_",
    ),
    "dataset_to_tfrecord": (
        "dataset_to_tfrecord.pb", "{graph: dataset_to_tfrecord.pb, outputs: [y]}",
        "op 'DatasetToTFRecord' at node 'DatasetToTFRecord'",
    ),
    "debug_identity": (
        "debug_identity.pb", "{graph: debug_identity.pb, outputs: [y]}", "op 'DebugIdentity' at node 'DebugIdentity'",
    ),
    "decode_proto": (
        "decode_proto.pb", "{graph: decode_proto.pb, outputs: [y]}", "op 'DecodeProtoV2' at node 'DecodeProtoV2'",
    ),
    "load_and_remap": (
        "load_and_remap.pb", "{graph: load_and_remap.pb, outputs: [y]}",
        "op 'LoadAndRemapMatrix' at node 'LoadAndRemapMatrix'",
    ),
    "restore": (
        "restore/model.ckpt", "{checkpoint: restore/model.ckpt, outputs: [y]}",
        "op 'WriteFile' at node 'evil/write' (the saver's own restore or save op runs it)",
    ),
}  # fmt: skip
# what each probe did when TensorFlow ran it unchecked
BITES = {
    "initializer_writes": "canary", "signature_reads": "secret", "library_function": "canary",
    "function_as_op": "canary", "flat_map_text_line": "secret", "dataset_to_tfrecord": "canary",
    "debug_identity": "dumps", "decode_proto": "parsed", "restore": "canary",
}  # fmt: skip


def _python(script: str, *args: str | Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        env=edgeport_env(TF_CPP_MIN_LOG_LEVEL="2"),
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("probes")
    _python(BUILD, root)
    return root


def _untouched(root: Path) -> None:
    assert not (root / "canary.txt").exists()
    assert not (root / "dumps").exists()


def test_every_probe_bites_when_tensorflow_runs_it_unchecked(probes: Path) -> None:
    found = json.loads(_python(CONTROL, probes).splitlines()[-1])
    assert {name: found[name][effect] for name, effect in BITES.items()} == dict.fromkeys(BITES, True), found
    assert not found["load_and_remap"]["error"] and "0." in found["load_and_remap"]["value"]  # another model's w
    _untouched(probes)


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_inspect_refuses_the_probe_naming_the_op_and_where(probes: Path, probe: str) -> None:
    model, _, named = PROBES[probe]
    result = edgeport("inspect", model, cwd=probes)
    assert result.returncode == 2, result.stderr
    assert "refused" in result.stderr and named in result.stderr and "--trust-model" in result.stderr
    assert "Traceback" not in result.stderr
    _untouched(probes)


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_run_refuses_the_probe_before_anything_loads(probes: Path, probe: str, tmp_path: Path) -> None:
    _, source, named = PROBES[probe]
    text = f"name: {probe}\nsource: {source}\noutputs:\n  fp32: {{stages: [tflite]}}\n"
    recipe = write_recipe(probes, text, f"{probe}.yaml")
    result = edgeport("run", recipe, "--out", tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert named in result.stderr and "source.trusted: true" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "report.json").exists()
    _untouched(probes)


def test_init_refuses_a_savedmodel_whose_initializer_writes(probes: Path, tmp_path: Path) -> None:
    result = edgeport("init", probes / "initializer_writes", "--out", tmp_path / "recipe.yaml")
    assert result.returncode == 2, result.stderr
    assert PROBES["initializer_writes"][2] in result.stderr
    assert not (tmp_path / "recipe.yaml").exists()
    _untouched(probes)
