"""TensorFlow 1 models as their authors shipped them (#37): a Saver checkpoint saved to `folder/` (files `.index`,
`.meta`, `.data-00000-of-00001`, a `checkpoint` record naming the author's machine), and a frozen graph whose
`training` PlaceholderWithDefault defaults to True in front of batch norm and dropout.

The models are written by a TF1-style script in a process of its own (`disable_control_flow_v2` is global), once
per module; tests/e2e/test_tf1_real.py takes the same files through `edgeport run`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ModelError
from pipeline.recipe import SourceSpec
from pipeline.sources.graphdef import TrainingSwitch, training_switches
from pipeline.sources.section import tf1_origin
from pipeline.sources.tf1 import Tf1Origin, load_tf1_source, locate_checkpoint, training_switch_warnings

from ..cli import edgeport_env

SHIPPED = """
import os, sys, numpy as np, tensorflow as tf
v1 = tf.compat.v1
v1.disable_control_flow_v2()  # tf.cond as TF 1.x built it: Switch/Merge
out = sys.argv[1]
graph = tf.Graph()
with graph.as_default():
    v1.set_random_seed(0)
    x = v1.placeholder(tf.float32, [None, 6], name="x")
    training = v1.placeholder_with_default(True, [], name="training")
    init = v1.glorot_uniform_initializer(seed=1)
    h = tf.nn.relu(tf.matmul(x, v1.get_variable("d1/w", [6, 16], initializer=init)))
    gamma = v1.get_variable("bn/gamma", [16], initializer=v1.ones_initializer())
    beta = v1.get_variable("bn/beta", [16], initializer=v1.zeros_initializer())
    mean = v1.get_variable("bn/mean", [16], initializer=v1.constant_initializer(0.3), trainable=False)
    var = v1.get_variable("bn/var", [16], initializer=v1.constant_initializer(2.0), trainable=False)

    def batch_statistics():
        m, v = tf.nn.moments(h, [0])
        return tf.nn.batch_normalization(h, m, v, beta, gamma, 1e-3)

    h = tf.cond(training, batch_statistics, lambda: tf.nn.batch_normalization(h, mean, var, beta, gamma, 1e-3))
    h = tf.cond(training, lambda: tf.nn.dropout(h, rate=0.5, seed=3), lambda: h)
    y = tf.identity(tf.matmul(h, v1.get_variable("d2/w", [16, 3], initializer=init)), name="y")
    with v1.Session() as session:
        session.run(v1.global_variables_initializer())
        os.makedirs(out + "/model")
        v1.train.Saver().save(session, out + "/model/")  # as its authors saved it: an empty prefix
        frozen = v1.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), ["y"])
        open(out + "/switch.pb", "wb").write(frozen.SerializeToString())
        x_eval = np.random.default_rng(0).random((32, 6), np.float32)
        np.savez(out + "/data.npz", x=x_eval, reference=session.run(y, {x: x_eval, training: False}))
# switches that keep a graph training, and some that do not
graph = tf.Graph()
with graph.as_default():
    x = v1.placeholder(tf.float32, [None, 6], name="x")
    keep = v1.placeholder_with_default(0.5, [], name="dropout/keep_prob")
    is_training = v1.placeholder_with_default(False, [], name="is_training")
    phase_train = v1.placeholder_with_default(tf.identity(tf.constant(True)), [], name="phase_train")
    unrelated = v1.placeholder_with_default(True, [], name="use_bias")
    flags = tf.cast(is_training, tf.float32) + tf.cast(phase_train, tf.float32) + tf.cast(unrelated, tf.float32)
    tf.identity(x * keep + flags, name="y")
    tf.identity(x * 2.0, name="plain")
    open(out + "/switches.pb", "wb").write(graph.as_graph_def().SerializeToString())
"""


@dataclass(frozen=True)
class ShippedTf1:
    root: Path
    folder: Path  # the checkpoint saved to `folder/`, its record naming /home/author/model/
    frozen: Path  # the same graph frozen: `training` defaults to True
    switches: Path
    data: Path


def build_shipped_tf1(root: Path) -> ShippedTf1:
    script = root / "shipped.py"
    script.write_text(SHIPPED)
    done = subprocess.run(
        [sys.executable, str(script), str(root)], capture_output=True, text=True, env=edgeport_env(), timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record = '"/home/author/model/"'
    (root / "model" / "checkpoint").write_text(
        f"model_checkpoint_path: {record}\nall_model_checkpoint_paths: {record}\n"
    )
    return ShippedTf1(root, root / "model", root / "switch.pb", root / "switches.pb", root / "data.npz")


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> ShippedTf1:
    return build_shipped_tf1(tmp_path_factory.mktemp("shipped"))


def test_a_checkpoint_saved_to_a_folder_is_found_as_the_folder_its_prefix_or_its_files(shipped: ShippedTf1) -> None:
    assert sorted(file.name for file in shipped.folder.iterdir()) == [
        ".data-00000-of-00001", ".index", ".meta", "checkpoint",
    ]  # fmt: skip
    spec = {"checkpoint": "model/", "feeds": {"training": False}}
    with_slash = tf1_origin(SourceSpec.model_validate(spec), shipped.root)
    assert with_slash is not None and with_slash.path == shipped.folder
    for given in (shipped.folder, shipped.folder / ".index", shipped.folder / ".meta"):
        located = locate_checkpoint(Tf1Origin("checkpoint", given), trusted=False)
        assert (located.folder, located.stem, located.outside) == (shipped.folder, "", None)
        assert located.restore_prefix == f"{shipped.folder}/"
        assert [file.name for file in located.files] == [".meta", ".index", ".data-00000-of-00001"]
    located = locate_checkpoint(Tf1Origin("checkpoint", shipped.folder))
    assert located.warnings == (
        f"{shipped.folder / 'checkpoint'}: names /home/author/model/, which is not here; using the empty prefix "
        "(.index, .meta, .data-*) in this directory",
    )


def test_a_checkpoint_saved_to_a_folder_restores_the_session_s_values(shipped: ShippedTf1) -> None:
    origin = Tf1Origin("checkpoint", shipped.folder, feeds={"training": False})
    source = load_tf1_source(origin, trusted=False)
    data = np.load(shipped.data)
    got = source.artifact.handle.signatures["serving_default"](x=data["x"])["y"].numpy()
    assert np.abs(got - data["reference"]).max() < 1e-6
    assert [spec.name for spec in source.inputs] == ["x"]
    assert source.extra["warnings"][0].endswith("using the empty prefix (.index, .meta, .data-*) in this directory")


def test_a_record_naming_a_copy_s_original_reads_the_copy(shipped: ShippedTf1, tmp_path: Path) -> None:
    """A folder copied from another that still exists: its record names the original, outside; the stem it names
    is here, so the copy is read (never a file outside the folder, so no trust needed), with a warning."""
    copy = tmp_path / "copy"
    shutil.copytree(shipped.folder, copy)
    (copy / "checkpoint").write_text(f'model_checkpoint_path: "{shipped.folder}/"\n')
    located = locate_checkpoint(Tf1Origin("checkpoint", copy), trusted=False)
    assert (located.folder, located.stem, located.outside) == (copy, "", None)
    assert located.warnings == (
        f"{copy / 'checkpoint'}: names {shipped.folder}/, outside this directory; using the empty prefix "
        "(.index, .meta, .data-*) in this directory",
    )
    # a stem that is not here sends the load outside: refused untrusted, as before (#36)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in (".index", ".meta", ".data-00000-of-00001"):
        shutil.copy(shipped.folder / name, elsewhere / f"model.ckpt{name}")
    (copy / "checkpoint").write_text(f'model_checkpoint_path: "{elsewhere}/model.ckpt"\n')
    with pytest.raises(ModelError, match=r"refused: .*copy/checkpoint: names .*elsewhere/model\.ckpt, outside"):
        locate_checkpoint(Tf1Origin("checkpoint", copy), trusted=False)


def test_a_fed_placeholder_with_default_is_a_constant_in_the_graph_every_file_converts(shipped: ShippedTf1) -> None:
    source = load_tf1_source(Tf1Origin("graph", shipped.frozen, feeds={"training": False}), trusted=False)
    data = np.load(shipped.data)
    serving = source.artifact.handle.signatures["serving_default"]
    assert np.abs(serving(x=data["x"])["y"].numpy() - data["reference"]).max() < 1e-6
    assert [spec.name for spec in source.inputs] == ["x"] and source.extra["feeds"] == {"training": False}
    library = serving.graph.as_graph_def().library.function
    nodes = {(node.name, node.op) for function in library for node in function.node_def}
    assert ("training", "Const") in nodes and "PlaceholderWithDefault" not in {op for _, op in nodes}
    assert "warnings" not in source.extra


def test_a_feed_of_the_wrong_type_or_shape_names_the_placeholder(shipped: ShippedTf1) -> None:
    cases = {
        0.5: "feeds: training: 0.5 is not a bool",
        (True, False): r"feeds: training: the placeholder's shape is \[\]; the feed's is \[2\]",
    }
    for value, message in cases.items():
        feed = list(value) if isinstance(value, tuple) else value
        with pytest.raises(ModelError, match=f"switch.pb: source.graph: {message}"):
            load_tf1_source(Tf1Origin("graph", shipped.frozen, feeds={"training": feed}), trusted=False)


def test_training_switches_are_read_from_the_file_s_bytes(shipped: ShippedTf1) -> None:
    meta = (shipped.folder / ".meta").read_bytes()
    assert training_switches(shipped.frozen.read_bytes(), meta=False) == [TrainingSwitch("training", True)]
    assert training_switches(meta, meta=True, outputs=["y"]) == [TrainingSwitch("training", True)]
    assert training_switches(meta, meta=True, outputs=["x"]) == []  # the outputs do not depend on it
    # a keep probability below 1 and a switch whose default is an Identity of True; not a switch defaulting to
    # False, nor a True flag named otherwise
    found = training_switches(shipped.switches.read_bytes(), meta=False)
    assert found == [TrainingSwitch("dropout/keep_prob", 0.5), TrainingSwitch("phase_train", True)]
    assert training_switches(shipped.switches.read_bytes(), meta=False, outputs=["plain"]) == []
    assert training_switches(b"\x0a\xff\xff\xff", meta=False) == []  # malformed: the run reports it


def test_an_unfed_training_switch_is_a_warning_with_the_feeds_line(shipped: ShippedTf1) -> None:
    warnings = training_switch_warnings(Tf1Origin("graph", shipped.frozen))
    assert warnings == [
        f"{shipped.frozen}: source.graph: placeholder training defaults to True: the reference and every file it "
        "makes run in training mode (batch statistics, dropout); add `feeds: {training: false}` to the source"
    ]
    assert training_switch_warnings(Tf1Origin("graph", shipped.frozen, feeds={"training": False})) == []
    # and at run start: the source's own warnings, as the report lists them
    assert load_tf1_source(Tf1Origin("graph", shipped.frozen), trusted=False).extra["warnings"] == warnings
    keep = training_switch_warnings(Tf1Origin("graph", shipped.switches, outputs=("y",), feeds={"phase_train": 0}))
    assert [warning.split(": ", 2)[2] for warning in keep] == [
        "placeholder dropout/keep_prob defaults to 0.5: the reference and every file it makes keep dropout on; "
        "add `feeds: {dropout/keep_prob: 1.0}` to the source"
    ]
