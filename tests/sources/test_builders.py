"""Sources straight from training: a builder module plus weights saved every way training saves them."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts import sha256_of
from pipeline.errors import ModelError, RecipeError
from pipeline.recipe import load_recipe
from pipeline.sources.weights import locate_weights

from ..cli import edgeport, edgeport_watching, imported
from ..helpers import load_built_source
from ..recipes import write_recipe

MODELS = """\
import keras
import tf_keras


def create_model(num_classes=10, hidden=0, head=False):
    inputs = keras.Input((8, 8, 1), name="pixels")
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    h = keras.layers.Flatten(name="flatten")(h)
    if hidden:
        h = keras.layers.Dense(hidden, activation="relu", name="hidden")(h)
    h = keras.layers.Dense(num_classes, name="logits")(h)
    if head:
        h = keras.layers.Dense(num_classes, name="head")(h)
    return keras.Model(inputs, h)


def create_tf_keras_model(num_classes=10):
    inputs = tf_keras.Input((8, 8, 1), name="pixels")
    h = tf_keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    h = tf_keras.layers.Flatten(name="flatten")(h)
    return tf_keras.Model(inputs, tf_keras.layers.Dense(num_classes, name="logits")(h))


def broken():
    raise ValueError("no GPU found")


def not_a_model():
    return 42
"""

X = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)


@dataclass
class Project:
    """A training project's directory: the builder package and what training left behind."""

    root: Path
    expected: dict[str, np.ndarray]  # weights name → outputs of the model that saved them, on X


def _fit_two_epochs(model, callback) -> None:
    labels = np.arange(len(X)) % 10
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(X, labels, epochs=2, batch_size=8, verbose=0, callbacks=[callback])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    from pipeline.frameworks import captured_native_output, import_tensorflow

    tf = import_tensorflow()
    import keras
    import tf_keras

    root = tmp_path_factory.mktemp("training")
    (root / "mypkg").mkdir()
    (root / "mypkg" / "__init__.py").write_text("")
    (root / "mypkg" / "models.py").write_text(MODELS)
    (root / "mypkg" / "needs_torch.py").write_text("import torch\n")
    sys.path.insert(0, str(root))
    from mypkg.models import create_model, create_tf_keras_model  # type: ignore[import-not-found]

    expected: dict[str, np.ndarray] = {}
    keras.utils.set_random_seed(0)
    with captured_native_output():
        model = create_model()
        model.save_weights(root / "k3.weights.h5")
        expected["k3.weights.h5"] = model(X).numpy()
        tf.train.Checkpoint(model=model).write(str(root / "single" / "model"))
        expected["single"] = expected["k3.weights.h5"]
        for epoch in (1, 2):  # written by `write`: no `checkpoint` file, so the numbers decide
            epoch_model = create_model()
            tf.train.Checkpoint(model=epoch_model).write(str(root / "runs" / f"cp-{epoch:04d}.ckpt"))
            expected[f"cp-{epoch:04d}"] = epoch_model(X).numpy()
        two_dense = create_model(hidden=16)
        two_dense.save_weights(root / "two_dense.weights.h5")
        tf.train.Checkpoint(model=two_dense).write(str(root / "two_dense" / "ckpt"))

        legacy = create_tf_keras_model()
        legacy.save_weights(str(root / "tfk.h5"))
        expected["tfk.h5"] = legacy(X).numpy()
        callback = tf_keras.callbacks.ModelCheckpoint(
            str(root / "tfk_runs" / "cp-{epoch:04d}.ckpt"), save_weights_only=True
        )
        _fit_two_epochs(legacy, callback)
        expected["tfk_runs"] = legacy(X).numpy()
        fitted = create_model()
        callback = keras.callbacks.ModelCheckpoint(
            str(root / "k3_runs" / "cp-{epoch:04d}.weights.h5"), save_weights_only=True
        )
        _fit_two_epochs(fitted, callback)
        expected["k3_runs"] = fitted(X).numpy()
    sys.path.remove(str(root))
    return Project(root=root, expected=expected)


def builder_recipe(project: Project, weights: str, builder: str = "mypkg.models:create_model", extra: str = "") -> Path:
    text = f"""\
name: from-training
source:
  builder: {builder}
  builder_args: {{num_classes: 10}}
  weights: {weights}
  trusted: true
{extra}outputs:
  fp32: {{stages: [tflite]}}
  onnx: {{stages: [{{onnx: {{opset: 17}}}}]}}
"""
    return write_recipe(project.root, text, name=f"recipe-{abs(hash((weights, builder, extra)))}.yaml")


def load(project: Project, weights: str, builder: str = "mypkg.models:create_model", **spec: object):
    return load_built_source(project.root, builder, weights, **spec)


# --- restoring, in process -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "builder", "expected", "form"),
    [
        ("k3.weights.h5", "create_model", "k3.weights.h5", "h5"),
        ("single/model", "create_model", "single", "checkpoint"),
        ("runs", "create_model", "cp-0002", "checkpoint"),
        ("k3_runs", "create_model", "k3_runs", "h5"),
        ("tfk.h5", "create_tf_keras_model", "tfk.h5", "h5"),
        ("tfk_runs", "create_tf_keras_model", "tfk_runs", "checkpoint"),
    ],
)
def test_every_way_training_saves_restores_exactly(
    project: Project, weights: str, builder: str, expected: str, form: str
) -> None:
    source = load(project, weights, f"mypkg.models:{builder}")
    assert source.format == f"builder+{form}"
    assert source.artifact.flavour == ("tf_keras" if "tf_keras" in builder else "keras3")
    restore = source.extra["restore"]
    assert restore["restored"] == 4 and restore["unrestored"] == restore["unused"] == 0
    np.testing.assert_allclose(source.artifact.handle(X).numpy(), project.expected[expected], atol=1e-6)


def test_tf_keras_model_checkpoint_ignores_the_optimizer_state(project: Project) -> None:
    restore = load(project, "tfk_runs", "mypkg.models:create_tf_keras_model").extra["restore"]
    assert restore["attached_as"] == "(root)" and restore["ignored"] > 0  # optimizer slots: not model weights


def test_keras3_weights_into_a_tf_keras_model_is_refused(project: Project) -> None:
    with pytest.raises(ModelError, match=r"Keras 3 \.weights\.h5 layout, but the builder returned a tf_keras model"):
        load(project, "k3.weights.h5", "mypkg.models:create_tf_keras_model")
    with pytest.raises(ModelError, match=r"nothing the model can use.*tf_keras vs Keras 3"):
        load(project, "tfk_runs", "mypkg.models:create_model")


@pytest.mark.parametrize("weights", ["two_dense/ckpt", "two_dense.weights.h5"])
def test_two_dense_weights_into_a_one_dense_model_names_the_variable_and_shapes(project: Project, weights: str) -> None:
    with pytest.raises(ModelError) as error:
        load(project, weights)
    message = str(error.value)
    assert "does not fit the model: variable 'logits/kernel' is [256, 10] in the model" in message
    assert "[256, 16]" in message and "hidden" in message


def test_partial_restore_is_refused_unless_allowed(project: Project) -> None:
    with pytest.raises(ModelError, match=r"partial restore refused: 2 of the model's 6 variables have no saved value"):
        load(project, "single/model", builder_args={"head": True})
    restore = load(project, "single/model", builder_args={"head": True}, allow_partial=True).extra["restore"]
    assert restore["restored"] == 4 and restore["not_restored"] == ["head/kernel", "head/bias"]
    allowed = load(project, "k3.weights.h5", builder_args={"head": True}, allow_partial=True)
    assert allowed.extra["restore"]["unrestored"] == 2


@pytest.mark.parametrize(
    ("builder", "message"),
    [
        ("mypkg.needs_torch:create", r"source.builder: cannot import mypkg.needs_torch \(No module named 'torch'\)"),
        ("mypkg.models:missing", "mypkg.models has no function 'missing'"),
        ("mypkg.models:broken", "mypkg.models:broken raised ValueError: no GPU found"),
        ("mypkg.models:not_a_model", "mypkg.models:not_a_model returned int, not a Keras model"),
    ],
)
def test_builder_failures_name_the_module_or_function(project: Project, builder: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        load(project, "k3.weights.h5", builder)


# --- finding weights, without TensorFlow ----------------------------------------------------------


def test_the_checkpoint_file_names_the_latest_before_numbers_do(tmp_path: Path) -> None:
    for name in ("cp-0001.ckpt", "cp-0002.ckpt", "cp-0010.ckpt"):
        (tmp_path / f"{name}.index").write_bytes(b"i")
        (tmp_path / f"{name}.data-00000-of-00001").write_bytes(b"d")
    assert locate_weights(tmp_path).path.name == "cp-0010.ckpt"  # 10 beats 2, though "cp-0002" sorts later as text
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "cp-0002.ckpt"\n')
    picked = locate_weights(tmp_path)
    assert picked.path.name == "cp-0002.ckpt" and picked.picked_from == tmp_path
    assert [f.name for f in picked.files] == ["cp-0002.ckpt.index", "cp-0002.ckpt.data-00000-of-00001"]
    with pytest.raises(ModelError, match=r"no weights there \(no such file, no cp-0099.ckpt.index checkpoint"):
        locate_weights(tmp_path / "cp-0099.ckpt")


# --- validation ------------------------------------------------------------------------------------


def test_validation_needs_trust_and_one_origin(project: Project) -> None:
    untrusted = builder_recipe(project, "k3.weights.h5").read_text().replace("  trusted: true\n", "")
    with pytest.raises(RecipeError, match=r"source \(line 2\): the builder is code; set source.trusted: true"):
        load_recipe(write_recipe(project.root, untrusted, "untrusted.yaml"))
    both = builder_recipe(project, "k3.weights.h5").read_text().replace("source:\n", "source:\n  path: x.keras\n")
    with pytest.raises(RecipeError, match=r"give one of path, builder .* \(got path and builder\)"):
        load_recipe(write_recipe(project.root, both, "both.yaml"))
    with pytest.raises(RecipeError, match=r"source.builder: cannot find module mypkg.nowhere"):
        load_recipe(builder_recipe(project, "k3.weights.h5", "mypkg.nowhere:create"))
    with pytest.raises(RecipeError, match=r"source.weights: .*no weights there"):
        load_recipe(builder_recipe(project, "missing.weights.h5"))
    recipe = load_recipe(builder_recipe(project, "runs"))
    assert recipe.source_kind() == "keras" and recipe.source_path == project.root / "runs"


def test_validate_imports_neither_tensorflow_nor_the_builder(project: Project) -> None:
    recipe = builder_recipe(project, "runs")
    result = edgeport_watching("validate", recipe, modules=("tensorflow", "mypkg"))
    assert result.returncode == 0, result.stderr
    assert not imported(result, "tensorflow") and not imported(result, "mypkg")
    assert "valid recipe 'from-training' (keras source)" in result.stdout
    untrusted = write_recipe(project.root, recipe.read_text().replace("  trusted: true\n", ""), "untrusted.yaml")
    result = edgeport("validate", untrusted)
    assert result.returncode == 2 and "the builder is code; set source.trusted: true" in result.stderr


# --- the command line, end to end -----------------------------------------------------------------


def test_run_from_the_latest_checkpoint_converts_and_records_the_weights(project: Project, tmp_path: Path) -> None:
    result = edgeport("run", builder_recipe(project, "runs"), "--out", tmp_path, "--no-cache")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert [o["status"] for o in report["outputs"]] == ["passed", "passed"]
    source = report["source"]
    assert source["builder"] == "mypkg.models:create_model" and source["builder_args"] == {"num_classes": 10}
    latest = project.root / "runs" / "cp-0002.ckpt"
    assert source["weights"]["path"] == str(latest) and source["weights"]["picked_from"] == str(project.root / "runs")
    assert source["weights"]["files"] == {
        "cp-0002.ckpt.index": sha256_of(latest.with_name("cp-0002.ckpt.index")),
        "cp-0002.ckpt.data-00000-of-00001": sha256_of(latest.with_name("cp-0002.ckpt.data-00000-of-00001")),
    }
    assert source["restore"]["restored"] == 4 and source["restore"]["unrestored"] == 0


def test_run_a_tf_keras_builder_from_model_checkpoint(project: Project, tmp_path: Path) -> None:
    recipe = builder_recipe(project, "tfk_runs", "mypkg.models:create_tf_keras_model")
    result = edgeport("run", recipe, "--out", tmp_path, "--no-cache")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["source"]["flavour"] == "tf_keras" and report["source"]["weights"]["path"].endswith("cp-0002.ckpt")


def test_run_refuses_mismatches_and_accepts_allowed_partial_restores(project: Project, tmp_path: Path) -> None:
    mismatch = edgeport("run", builder_recipe(project, "two_dense/ckpt"), "--out", tmp_path / "m", "--no-cache")
    assert mismatch.returncode == 2
    assert "variable 'logits/kernel' is [256, 10] in the model, but the saved 'hidden/kernel'" in mismatch.stderr
    assert not (tmp_path / "m" / "report.json").exists()

    extra = "  builder_args: {head: true}\n"
    partial = (
        builder_recipe(project, "single/model", extra="")
        .read_text()
        .replace("  builder_args: {num_classes: 10}\n", extra)
    )
    refused = edgeport(
        "run", write_recipe(project.root, partial, "partial.yaml"), "--out", tmp_path / "r", "--no-cache"
    )
    assert refused.returncode == 2 and "partial restore refused" in refused.stderr
    allowed_text = partial.replace("  trusted: true\n", "  trusted: true\n  allow_partial: true\n")
    allowed = edgeport(
        "run", write_recipe(project.root, allowed_text, "allowed.yaml"), "--out", tmp_path / "a", "--no-cache"
    )
    assert allowed.returncode == 0, allowed.stderr
    restore = json.loads((tmp_path / "a" / "report.json").read_text())["source"]["restore"]
    assert restore["unrestored"] == 2 and restore["not_restored"] == ["head/kernel", "head/bias"]


def test_run_with_a_builder_that_cannot_import_names_the_module(project: Project, tmp_path: Path) -> None:
    result = edgeport("run", builder_recipe(project, "k3.weights.h5", "mypkg.needs_torch:create"), "--out", tmp_path)
    assert result.returncode == 2
    assert "source.builder: cannot import mypkg.needs_torch (No module named 'torch')" in result.stderr
    assert "Traceback" not in result.stderr


# --- inspect ---------------------------------------------------------------------------------------


def test_inspect_a_checkpoint_prefix_lists_its_variables(project: Project) -> None:
    result = edgeport("inspect", project.root / "single" / "model")
    assert result.returncode == 0, result.stderr
    assert "checkpoint" in result.stdout and "logits/kernel" in result.stdout and "[256, 10]" in result.stdout
    described = json.loads(edgeport("inspect", project.root / "single" / "model", "--json").stdout)
    assert {v["name"]: v["shape"] for v in described["variables"]}["conv/kernel"] == [3, 3, 1, 4]


def test_inspect_a_checkpoint_directory_names_the_latest(project: Project) -> None:
    described = json.loads(edgeport("inspect", project.root / "runs", "--json").stdout)
    assert described["format"] == "checkpoint directory"
    assert described["latest"] == str(project.root / "runs" / "cp-0002.ckpt")
    assert described["checkpoints"] == ["cp-0001.ckpt", "cp-0002.ckpt"]
    assert len(described["variables"]) == 4


def test_inspect_weights_h5_lists_the_arrays(project: Project) -> None:
    result = edgeport("inspect", project.root / "k3.weights.h5")
    assert result.returncode == 0, result.stderr
    assert "keras3 weights" in result.stdout and "layers/dense/vars/0" in result.stdout and "logits" in result.stdout


def test_inspect_savedmodel_shows_tags_and_signatures(zoo) -> None:
    result = edgeport("inspect", zoo.exported_savedmodel)
    assert result.returncode == 0, result.stderr
    assert "tags     serve" in result.stdout
    assert "signature serving_default" in result.stdout and "[?, 8, 8, 1]" in result.stdout


def test_the_builder_key_covers_every_module_it_imports_from_its_tree(tmp_path: Path) -> None:
    import h5py

    from pipeline.sources.builders import builder_files, builder_key

    package = tmp_path / "net"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text("import numpy\nfrom net import blocks\nfrom .layers import dense\n")
    (package / "blocks.py").write_text("from net.deep import helper\nWIDTH = 16\n")
    (package / "layers.py").write_text("def dense():\n    return 1\n")
    (package / "deep.py").write_text("def helper():\n    return 2\n")
    (package / "unrelated.py").write_text("X = 1\n")
    with h5py.File(tmp_path / "w.weights.h5", "w") as weights:
        weights.create_dataset("kernel", data=[1.0, 2.0])
    names = [path.name for path in builder_files("net.models", tmp_path)]
    assert names == ["__init__.py", "blocks.py", "deep.py", "layers.py", "models.py"]  # numpy is a package version
    before = builder_key("net.models:create", {}, tmp_path / "w.weights.h5", tmp_path)
    (package / "deep.py").write_text("def helper():\n    return 3\n")  # two imports away from the builder
    after = builder_key("net.models:create", {}, tmp_path / "w.weights.h5", tmp_path)
    (package / "unrelated.py").write_text("X = 2\n")
    assert before != after == builder_key("net.models:create", {}, tmp_path / "w.weights.h5", tmp_path)
