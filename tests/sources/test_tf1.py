"""TensorFlow 1 sources: a frozen GraphDef and a Saver checkpoint with its `.meta`, made by a real TF1-style script
(v1 control flow: batch norm under an `is_training` placeholder; dropout under a `keep_prob` default), taken to
fp32 TFLite, int8 TFLite and fp32 ONNX under default gates; each quirk of shipped graphs has a crafted file.

The models are written in a process of their own: `disable_control_flow_v2` is global and must not reach the
other tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.sources.tf1 import Tf1Origin, locate_checkpoint, tf1_key

from ..cli import edgeport, edgeport_env
from ..recipes import write_recipe

TRAIN = """
import sys, numpy as np, tensorflow as tf
v1 = tf.compat.v1
v1.disable_control_flow_v2()  # Switch/Merge, as TF 1.x built tf.cond
if sys.argv[2:] == ["ref"]:
    v1.disable_resource_variables()  # VariableV2, Assign and RefSwitch, as TF 1.x built variables
out = sys.argv[1]
graph = tf.Graph()
with graph.as_default():
    v1.set_random_seed(0)
    x = v1.placeholder(tf.float32, [None, 8, 8, 1], name="x")
    is_training = v1.placeholder(tf.bool, [], name="is_training")
    keep = v1.placeholder_with_default(1.0, [], name="keep_prob")
    kernel = v1.get_variable("conv/w", [3, 3, 1, 4])
    h = tf.nn.conv2d(x, kernel, 1, "SAME")
    gamma = v1.get_variable("bn/gamma", [4], initializer=v1.ones_initializer())
    beta = v1.get_variable("bn/beta", [4], initializer=v1.zeros_initializer())
    mean = v1.get_variable("bn/mean", [4], initializer=v1.zeros_initializer(), trainable=False)
    var = v1.get_variable("bn/var", [4], initializer=v1.ones_initializer(), trainable=False)

    def training():
        m, v = tf.nn.moments(h, [0, 1, 2])
        with tf.control_dependencies([v1.assign(mean, 0.9 * mean + 0.1 * m), v1.assign(var, 0.9 * var + 0.1 * v)]):
            return tf.nn.batch_normalization(h, m, v, beta, gamma, 1e-3)

    h = tf.cond(is_training, training, lambda: tf.nn.batch_normalization(h, mean, var, beta, gamma, 1e-3))
    h = tf.nn.dropout(tf.reshape(tf.nn.relu(h), [-1, 256]), rate=1 - keep)
    logits = tf.matmul(h, v1.get_variable("dense/w", [256, 10])) + v1.get_variable("dense/b", [10])
    probs = tf.nn.softmax(logits, name="probs")
    labels = v1.placeholder(tf.int64, [None], name="labels")
    loss = v1.losses.sparse_softmax_cross_entropy(labels, logits)
    train = v1.train.AdamOptimizer(1e-2).minimize(loss)
    saver = v1.train.Saver()
    rng = np.random.default_rng(0)
    with v1.Session() as session:
        session.run(v1.global_variables_initializer())
        for _ in range(20):
            batch = rng.random((16, 8, 8, 1), np.float32)
            session.run(train, {x: batch, labels: rng.integers(0, 10, 16), is_training: True})
        saver.save(session, out + "/run/model.ckpt")
        frozen = v1.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), ["probs"])
        open(out + "/frozen.pb", "wb").write(frozen.SerializeToString())
        evaluation = np.random.default_rng(2).random((64, 8, 8, 1), np.float32)
        np.savez(out + "/data.npz", calibration=np.random.default_rng(1).random((64, 8, 8, 1), np.float32),
                 evaluation=evaluation, reference=session.run(probs, {x: evaluation, is_training: False}))
    # a graph whose output writes a file when it runs
    written = tf.io.write_file(out + "/written.txt", "ran")
    with tf.control_dependencies([written]):
        tf.identity(probs, name="probs_logged")
    frozen = v1.graph_util.extract_sub_graph(graph.as_graph_def(), ["probs_logged"])
    open(out + "/effects.pb", "wb").write(frozen.SerializeToString())
"""


@dataclass
class Tf1Files:
    root: Path
    frozen: Path
    prefix: Path
    data: Path


def _train(root: Path, *options: str) -> Tf1Files:
    script = root / "train.py"
    script.write_text(TRAIN)
    env = edgeport_env()
    done = subprocess.run(
        [sys.executable, str(script), str(root), *options],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return Tf1Files(root, root / "frozen.pb", root / "run" / "model.ckpt", root / "data.npz")


@pytest.fixture(scope="module")
def tf1(tmp_path_factory: pytest.TempPathFactory) -> Tf1Files:
    return _train(tmp_path_factory.mktemp("tf1"))


RECIPE = """
name: {name}
source: {source}
data:
  calibration: {{npz: data.npz, inputs: calibration}}
  evaluation: {{npz: data.npz, inputs: evaluation}}
outputs:
  fp32: {{stages: [tflite]}}
  int8: {{stages: [{{tflite: {{quantize: int8}}}}]}}
  onnx: {{stages: [onnx]}}
"""


def _run(tf1: Tf1Files, source: str, tmp_path: Path, name: str = "tf1") -> tuple[int, dict, str]:
    """`edgeport run` in a process of its own, as a user runs it (the run confines the process that runs it): its
    exit code, its report (empty when none was written) and what it printed on stderr."""
    recipe = write_recipe(tf1.root, RECIPE.format(name=name, source=source), f"{name}.yaml")
    result = edgeport("run", recipe, "--out", tmp_path / name)
    assert "Traceback" not in result.stderr, result.stderr
    report = tmp_path / name / "report.json"
    return result.returncode, json.loads(report.read_text()) if report.exists() else {}, result.stderr


def _statuses(report: dict) -> dict[str, str]:
    return {entry["name"]: entry["status"] for entry in report["outputs"]}


def test_a_frozen_graph_converts_to_tflite_and_onnx_within_default_gates(tf1: Tf1Files, tmp_path: Path) -> None:
    source = "{graph: frozen.pb, inputs: ['x:0'], outputs: [probs], feeds: {is_training: false}}"
    code, report, _ = _run(tf1, source, tmp_path, "graph")
    assert code == 0, report
    assert _statuses(report) == {"fp32": "passed", "int8": "passed", "onnx": "passed"}
    described = report["source"]
    assert described["format"] == "graph" and described["feeds"] == {"is_training": False}
    # the frozen graph still holds the training branch's variable updates: dropped, and said so
    assert any("variable updates" in repair for repair in described["repairs"])
    by_name = {entry["name"]: entry for entry in report["outputs"]}
    assert by_name["fp32"]["parity"]["metrics"]["max_abs"] < 1e-5
    assert by_name["onnx"]["parity"]["metrics"]["max_abs"] < 1e-5


def test_a_checkpoint_directory_moved_from_its_machine_converts_with_a_warning(tf1: Tf1Files, tmp_path: Path) -> None:
    """Shipped checkpoints name their author's absolute paths; inputs and outputs come from the graph itself."""
    moved = tf1.root / "moved"
    shutil.copytree(tf1.prefix.parent, moved, dirs_exist_ok=True)
    record = '"/home/author/run/model.ckpt"'
    (moved / "checkpoint").write_text(f"model_checkpoint_path: {record}\nall_model_checkpoint_paths: {record}\n")
    code, report, _ = _run(tf1, "{checkpoint: moved, feeds: {is_training: false}}", tmp_path, "ckpt")
    assert code == 0, report
    assert _statuses(report) == {"fp32": "passed", "int8": "passed", "onnx": "passed"}
    assert any("/home/author/run/model.ckpt, which is not here; using model.ckpt" in w for w in report["warnings"])
    assert report["source"]["format"] == "checkpoint"


def test_a_checkpoint_record_pointing_outside_its_folder_needs_trust(tf1: Tf1Files, tmp_path: Path) -> None:
    """A folder whose `checkpoint` record names a prefix elsewhere would load that other checkpoint: refused
    untrusted, naming the record and the path; trusted, followed with a warning."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "checkpoint").write_text(f'model_checkpoint_path: "{tf1.prefix}"\n')
    source = f"{{checkpoint: {elsewhere}, feeds: {{is_training: false}}}}"
    code, report, err = _run(tf1, source, tmp_path, "outside")
    assert (code, report) == (2, {})
    assert f"refused: {elsewhere / 'checkpoint'}: names {tf1.prefix}, outside {elsewhere}" in err
    # trusted, the record is followed: the sandbox lets the run read the files it names, and says so
    located = locate_checkpoint(Tf1Origin("checkpoint", elsewhere))
    assert located.prefix == tf1.prefix and located.outside is not None
    # the checkpoint it names lies outside the recipe's folder too (trusted, that folder is readable)
    far = tmp_path / "far"
    shutil.copytree(tf1.prefix.parent, far)
    (elsewhere / "checkpoint").write_text(f'model_checkpoint_path: "{far / tf1.prefix.name}"\n')
    trusted = f"{{checkpoint: {elsewhere}, trusted: true, feeds: {{is_training: false}}}}"
    code, report, err = _run(tf1, trusted, tmp_path, "outside-trusted")
    assert code == 0, err
    assert report["environment"]["sandbox"].startswith(("landlock", "none"))
    assert any(f"names {far / tf1.prefix.name}, outside {elsewhere}; loading it" in w for w in report["warnings"])


def test_outputs_whose_file_safe_names_collide_are_refused_naming_both(tmp_path: Path) -> None:
    """`a/b` and `a_b` would both be the signature key `a_b`: one lost, the other mislabelled."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        tf.identity(x * 2.0, name="a/b")
        tf.identity(x * 3.0, name="a_b")
    (tmp_path / "collide.pb").write_bytes(graph.as_graph_def().SerializeToString())
    text = "name: collide\nsource: {graph: collide.pb, outputs: [a/b, a_b]}\noutputs:\n  fp32: {stages: [tflite]}\n"
    result = edgeport("run", write_recipe(tmp_path, text), "--out", tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert "outputs: a/b:0 and a_b:0 both become 'a_b'" in result.stderr
    assert not (tmp_path / "out" / "report.json").exists()


def test_the_reference_is_the_checkpoint_s_own_output(tf1: Tf1Files) -> None:
    """What the frozen SavedModel computes is what the TF1 session computed at training time."""
    from pipeline.sources.tf1 import load_tf1_source

    source = load_tf1_source(Tf1Origin("checkpoint", tf1.prefix, feeds={"is_training": False}), trusted=False)
    data = np.load(tf1.data)
    got = source.artifact.handle.signatures["serving_default"](x=data["evaluation"])["probs"].numpy()
    assert np.abs(got - data["reference"]).max() < 1e-6
    assert [spec.name for spec in source.inputs] == ["x"] and source.inputs[0].shape == (None, 8, 8, 1)


def test_ref_variables_as_tf_1x_made_them_freeze_from_graph_and_checkpoint(tmp_path: Path) -> None:
    """TF 1.x's default variables are refs: `VariableV2`, `Assign` updates and `RefSwitch` in the frozen graph."""
    import tensorflow as tf

    from pipeline.sources.tf1 import load_tf1_source

    files = _train(tmp_path, "ref")
    ops = {node.op for node in tf.compat.v1.GraphDef.FromString(files.frozen.read_bytes()).node}
    assert {"RefSwitch", "Assign"} <= ops
    data = np.load(files.data)
    for origin in (
        Tf1Origin("graph", files.frozen, feeds={"is_training": False}),
        Tf1Origin("checkpoint", files.prefix.parent, feeds={"is_training": False}),  # outputs: the one likely
    ):
        serving = load_tf1_source(origin, trusted=False).artifact.handle.signatures["serving_default"]
        assert np.abs(serving(x=data["evaluation"])["probs"].numpy() - data["reference"]).max() < 1e-6


def test_shapes_the_graph_leaves_open_are_given_by_inputs(tf1: Tf1Files) -> None:
    from pipeline.sources.tf1 import load_tf1_source

    origin = Tf1Origin("graph", tf1.frozen, inputs={"x": (1, 8, 8, 1)}, feeds={"is_training": False})
    assert load_tf1_source(origin, trusted=False).inputs[0].shape == (1, 8, 8, 1)
    wrong_rank = Tf1Origin("graph", tf1.frozen, inputs={"x": (1, 64)}, feeds={"is_training": False})
    with pytest.raises(Exception, match=r"inputs: x:0 has rank 4 in the graph .*the recipe gives \[1, 64\]"):
        load_tf1_source(wrong_rank, trusted=False)


def test_inconsistent_output_shapes_in_a_meta_graph_are_stripped(tf1: Tf1Files) -> None:
    """Exporters wrote `_output_shapes` hints that disagree with the graph; TensorFlow refuses such a .meta."""
    import tensorflow as tf

    from pipeline.sources.tf1 import load_tf1_source

    crafted = tf1.root / "crafted"
    shutil.copytree(tf1.prefix.parent, crafted, dirs_exist_ok=True)
    meta = tf.compat.v1.MetaGraphDef()
    meta.ParseFromString((crafted / "model.ckpt.meta").read_bytes())
    conv = next(node for node in meta.graph_def.node if node.op == "Conv2D")
    conv.attr["_output_shapes"].list.shape[0].CopyFrom(tf.TensorShape([3, 5]).as_proto())
    (crafted / "model.ckpt.meta").write_bytes(meta.SerializeToString())
    with tf.Graph().as_default(), pytest.raises(ValueError, match="_output_shapes"):
        tf.compat.v1.train.import_meta_graph(str(crafted / "model.ckpt.meta"))
    origin = Tf1Origin("checkpoint", crafted / "model.ckpt", outputs=("probs",), feeds={"is_training": False})
    got = load_tf1_source(origin, trusted=False).artifact.handle.signatures["serving_default"]
    data = np.load(tf1.data)
    assert np.abs(got(x=data["evaluation"])["probs"].numpy() - data["reference"]).max() < 1e-6


def test_v1_control_flow_is_in_the_graph_and_fixed_by_the_feed(tf1: Tf1Files) -> None:
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef.FromString(tf1.frozen.read_bytes())
    assert {"Switch", "Merge"} <= {node.op for node in graph_def.node}
    # as shipped, the frozen graph's training branch updates variables that are now constants
    with pytest.raises(ValueError, match="incompatible with expected resource"):
        tf.compat.v1.wrap_function(lambda: tf.graph_util.import_graph_def(graph_def, name=""), [])


def test_bad_names_missing_files_and_unfed_placeholders_are_exit_2(tf1: Tf1Files, tmp_path: Path) -> None:
    cases = {
        "{graph: frozen.pb, outputs: [prob], feeds: {is_training: false}}": (
            "source.graph: outputs: no op named 'prob'; names like it: keep_prob/input, keep_prob, probs"
        ),
        "{graph: frozen.pb, outputs: [probs]}": (
            "output probs depends on placeholder is_training (bool), which is neither an input nor fed; "
            "add it to inputs or to feeds"
        ),
        "{graph: frozen.pb, feeds: {probs: 1}}": "feeds: probs is a Softmax, not a placeholder",
        "{graph: missing.pb}": "source.graph: ",
        "{checkpoint: run/nothing.ckpt}": "no checkpoint there",
        "{graph: frozen.pb, inputs: [x], feeds: {x: 0}}": "x is both an input and fed a constant",
        "{path: frozen.pb}": "looks like a TensorFlow 1 frozen graph; write source: {graph: FILE.pb",
    }
    for index, (source, message) in enumerate(cases.items()):
        code, _, err = _run(tf1, source, tmp_path, f"bad{index}")
        assert code == 2, source
        assert message in err, source


def test_stages_that_train_a_keras_model_are_refused_at_validate(tf1: Tf1Files, capsys) -> None:
    text = RECIPE.format(name="pruned", source="{checkpoint: run, feeds: {is_training: false}}")
    text += "  pruned: {stages: [{prune: {sparsity: 0.5}}, tflite]}\n"
    text = text.replace("data:\n", "data:\n  fine_tune: {npz: data.npz, inputs: calibration}\n")
    assert main(["validate", str(write_recipe(tf1.root, text, "pruned.yaml"))]) == 2
    assert "prune takes keras, but the source (TF1 checkpoint) gives savedmodel" in capsys.readouterr().err


def test_ops_that_write_files_need_trust(tf1: Tf1Files, tmp_path: Path) -> None:
    source = "{graph: effects.pb, outputs: [probs_logged], feeds: {is_training: false}}"
    code, _, err = _run(tf1, source, tmp_path, "fx")
    assert code == 2
    assert "op 'WriteFile' at node 'WriteFile'" in err
    assert not (tf1.root / "written.txt").exists()


def test_the_key_covers_files_names_and_feeds(tf1: Tf1Files, tmp_path: Path) -> None:
    base = Tf1Origin("graph", tf1.frozen, feeds={"is_training": False})
    keys = {
        tf1_key(base),
        tf1_key(Tf1Origin("graph", tf1.frozen, feeds={"is_training": True})),
        tf1_key(Tf1Origin("graph", tf1.frozen, outputs=("probs",), feeds={"is_training": False})),
        tf1_key(Tf1Origin("graph", tf1.frozen, inputs={"x": (1, 8, 8, 1)}, feeds={"is_training": False})),
    }
    copy = tmp_path / "frozen.pb"
    copy.write_bytes(tf1.frozen.read_bytes() + b"\n")
    keys.add(tf1_key(Tf1Origin("graph", copy, feeds={"is_training": False})))
    assert len(keys) == 5
    assert tf1_key(base) == tf1_key(Tf1Origin("graph", tf1.frozen, feeds={"is_training": False}))


def test_inspect_lists_placeholders_outputs_variables_and_version(tf1: Tf1Files) -> None:
    result = edgeport("inspect", tf1.frozen)
    assert result.returncode == 0, result.stderr
    assert "tf1 frozen graph" in result.stdout and "likely outputs  probs" in result.stdout
    assert "keep_prob    []            float32  default" in result.stdout
    result = edgeport("inspect", tf1.prefix, "--json")
    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout)
    assert described["format"] == "tf1 checkpoint" and described["likely_outputs"] == ["probs"]
    assert described["tensorflow_version"] == __import__("tensorflow").__version__
    assert {p["name"] for p in described["placeholders"]} == {"x", "is_training", "keep_prob", "labels"}
    assert "bn/mean" in {v["name"] or v["key"] for v in described["variables"]}
