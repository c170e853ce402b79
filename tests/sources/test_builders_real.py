"""Builders as training code writes them: subclassed models (layers in `__init__`, a `call`) that the builder calls
once, in Keras 3 and tf_keras, and weights saved from a model that holds the same layers under other paths."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ModelError

from ..cli import edgeport
from ..helpers import load_built_source
from ..recipes import recipe_file

MODELS = """\
import keras
import numpy as np
import tf_keras


class Net(keras.Model):
    def __init__(self, classes=10, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")
        self.conv2 = keras.layers.Conv2D(4, 3, activation="relu", name="conv2")
        self.flat = keras.layers.Flatten()
        self.head = keras.layers.Dense(classes, name="logits")

    def call(self, pixels):
        return self.head(self.flat(self.conv2(self.conv1(pixels))))


class TwoInputs(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.left = keras.layers.Dense(3, name="left")
        self.right = keras.layers.Dense(3, name="right")

    def call(self, inputs):
        return self.left(inputs["image"]) * self.right(inputs["meta"])


class TfkNet(tf_keras.Model):
    def __init__(self, classes=10, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = tf_keras.layers.Conv2D(4, 3, activation="relu", name="conv1")
        self.flat = tf_keras.layers.Flatten()
        self.head = tf_keras.layers.Dense(classes, name="logits")

    def call(self, pixels):
        return self.head(self.flat(self.conv1(pixels)))


def create_net(classes=10):
    model = Net(classes)
    model(np.zeros((1, 8, 8, 1), "float32"))  # what training code does to build it
    return model


def create_unbuilt_net():
    return Net()


def create_two_inputs():
    model = TwoInputs()
    model({"image": np.zeros((1, 5), "float32"), "meta": np.zeros((1, 2), "float32")})
    return model


def create_tfk_net(classes=10):
    model = TfkNet(classes)
    model(np.zeros((1, 8, 8, 1), "float32"))
    return model


def create_sequential():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv1"),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv2"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, name="logits"),
        ]
    )
"""

X = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
META = {"image": X.reshape(16, -1)[:, :5].copy(), "meta": X.reshape(16, -1)[:, 5:7].copy()}


@dataclass
class Project:
    """A training project's folder: the builder module, the weights it saved, and the outputs those weights give."""

    root: Path
    expected: dict[str, np.ndarray]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    from pipeline.frameworks import captured_native_output, import_tensorflow

    import_tensorflow()
    import keras

    root = tmp_path_factory.mktemp("subclassed")
    (root / "nets.py").write_text(MODELS)
    sys.path.insert(0, str(root))
    import nets  # type: ignore[import-not-found]

    expected: dict[str, np.ndarray] = {}
    keras.utils.set_random_seed(1)
    with captured_native_output():
        net = nets.create_net()
        net.save_weights(root / "net.weights.h5")
        expected["net"] = np.asarray(net(X))
        two = nets.create_two_inputs()
        two.save_weights(root / "two.weights.h5")
        expected["two"] = np.asarray(two(META))
        tfk = nets.create_tfk_net()
        tfk.save_weights(str(root / "tfk" / "ckpt"))  # tf_keras's default: a TF checkpoint
        tfk.save_weights(str(root / "tfk.h5"))
        expected["tfk"] = np.asarray(tfk(X))
        nets.create_sequential().save_weights(root / "sequential.weights.h5")
    sys.path.remove(str(root))
    sys.modules.pop("nets", None)
    return Project(root=root, expected=expected)


def load(project: Project, builder: str, weights: str):
    return load_built_source(project.root, f"nets:{builder}", weights)


# --- class 5: subclassed models from a builder ----------------------------------------------------


@pytest.mark.parametrize(
    ("builder", "weights", "expected", "called_as"),
    [
        ("create_net", "net.weights.h5", "net", "pixels (None, 8, 8, 1) float32"),
        ("create_tfk_net", "tfk", "tfk", "pixels (None, 8, 8, 1) float32"),
        ("create_tfk_net", "tfk.h5", "tfk", "pixels (None, 8, 8, 1) float32"),
    ],
)
def test_a_subclassed_model_the_builder_called_is_sized_by_that_call(
    project: Project, builder: str, weights: str, expected: str, called_as: str
) -> None:
    source = load(project, builder, weights)
    assert [(spec.name, spec.shape) for spec in source.inputs] == [("pixels", (None, 8, 8, 1))]
    assert [spec.shape for spec in source.outputs] == [(None, 10)]
    assert source.extra["called_as"] == called_as and source.extra["restore"]["unrestored"] == 0
    np.testing.assert_allclose(np.asarray(source.artifact.handle(X)), project.expected[expected], atol=1e-6)


def test_a_subclassed_model_called_on_a_dict_keeps_the_dict_keys_as_inputs(project: Project) -> None:
    source = load(project, "create_two_inputs", "two.weights.h5")
    assert sorted((spec.name, spec.shape) for spec in source.inputs) == [("image", (None, 5)), ("meta", (None, 2))]
    np.testing.assert_allclose(np.asarray(source.artifact.handle(META)), project.expected["two"], atol=1e-6)


def test_a_subclassed_model_never_called_is_refused_naming_the_builder_and_the_fix(project: Project) -> None:
    with pytest.raises(ModelError) as error:
        load(project, "create_unbuilt_net", "net.weights.h5")
    message = str(error.value)
    assert message.startswith("source.builder: nets:create_unbuilt_net returned a subclassed Net it never called")
    assert "call it once in the builder on a batch shaped like your data" in message
    assert "weights.h5" not in message  # the weights are not the problem


def test_run_subclassed_builders_of_both_kerases_to_tflite_and_onnx(project: Project, tmp_path: Path) -> None:
    np.savez(project.root / "x.npz", x=X)
    recipes = [
        recipe_file(
            project.root,
            name=name,
            source={"builder": f"nets:{builder}", "weights": weights, "trusted": True},
            data={"evaluation": {"npz": "x.npz", "inputs": "x"}},
            outputs={"fp32": {"stages": ["tflite"]}, "onnx": {"stages": [{"onnx": {"opset": 17}}]}},
            file=f"{name}.yaml",
        )
        for name, builder, weights in (
            ("keras3", "create_net", "net.weights.h5"),
            ("tf-keras", "create_tfk_net", "tfk"),
        )
    ]
    result = edgeport("run", *recipes, "--out", tmp_path, "--no-cache")  # one batch: TensorFlow imported once
    assert result.returncode == 0, result.stderr
    for name in ("keras3", "tf-keras"):
        report = json.loads((tmp_path / name / "report.json").read_text())
        assert [output["status"] for output in report["outputs"]] == ["passed", "passed"]
        assert all(output["parity"]["metrics"]["max_abs"] < 1e-5 for output in report["outputs"])
        assert report["source"]["called_as"] == "pixels (None, 8, 8, 1) float32"


# --- class 6: weights kept under other paths --------------------------------------------------------


def test_weights_under_other_paths_show_both_sides_with_shapes(project: Project) -> None:
    with pytest.raises(ModelError) as error:
        load(project, "create_net", "sequential.weights.h5")
    lines = str(error.value).splitlines()
    assert "nothing the model can use" in lines[0] and "the shapes match one for one" in lines[0]
    assert lines[1].split() == ["model", "(6", "variables)", "|", "file", "(6", "values)"]
    model_side, file_side = (side.strip() for side in lines[2].split("|"))
    assert model_side == "conv1/kernel [3, 3, 1, 4] at conv1/vars/0"
    assert file_side == "conv1[0] [3, 3, 1, 4] at layers/conv2d/vars/0"
    assert lines[-1].strip() == "... and 2 more in the model and 2 more in the file"


def test_weights_of_another_architecture_say_so(project: Project) -> None:
    with pytest.raises(ModelError, match=r"another architecture\?\n  model \(6 variables\)") as error:
        load(project, "create_net", "two.weights.h5")
    message = str(error.value)
    assert "the shapes match one for one" not in message
    assert "conv1/kernel [3, 3, 1, 4] at conv1/vars/0  |  left[0] [5, 3] at layers/" in message
    assert message.endswith("... and 2 more in the model")


# --- a ModelCheckpoint folder of whole models ------------------------------------------------------


def test_a_folder_of_whole_model_checkpoints_names_its_files(project: Project) -> None:
    from pipeline.sources import load_source

    sys.path.insert(0, str(project.root))
    try:
        import nets  # type: ignore[import-not-found]

        model = nets.create_sequential()
        (project.root / "ck").mkdir()
        for epoch in (1, 2):  # what ModelCheckpoint("ck/cp-{epoch:02d}.keras") leaves
            model.save(project.root / "ck" / f"cp-{epoch:02d}.keras")
    finally:
        sys.path.remove(str(project.root))
        sys.modules.pop("nets", None)
    with pytest.raises(ModelError, match=r"it holds Keras model files \(cp-01\.keras, cp-02\.keras\): give one as"):
        load_source(project.root / "ck")
