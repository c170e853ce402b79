"""Custom classes: a `.keras` whose layer was registered in the author's training script loads with `imports`
naming the module that registers it now, is refused untrusted naming the class and its module, and `imports` or
`--import` without trust is bad input (importing runs code).

The model is saved by a real script in a process of its own (so `my>Scale` lives in its `__main__`), and the runs
that must find the class go through the CLI in fresh processes, where nothing registered it beforehand."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import ModelError
from pipeline.sources.imports import import_modules

from ..cli import edgeport, edgeport_env
from ..recipes import write_recipe

LAYER = '''
import keras


@keras.saving.register_keras_serializable(package="my")
class Scale(keras.layers.Layer):
    """Multiplies by a learned vector: a layer Keras does not have."""

    def build(self, input_shape):
        self.factor = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="factor")

    def call(self, inputs):
        return inputs * self.factor + 0.5
'''

TRAIN = """
import sys
import numpy as np
import keras
{layer}
keras.utils.set_random_seed(0)
inputs = keras.Input((8,), name="x")
hidden = Scale(name="scale")(keras.layers.Dense(16, activation="relu")(inputs))
model = keras.Model(inputs, keras.layers.Dense(4, name="y")(hidden))
model.get_layer("scale").set_weights([np.linspace(0.5, 1.5, 16, dtype="float32")])
model.save(sys.argv[1])
"""


def _python(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = edgeport_env()
    return subprocess.run(
        [sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with `model.keras` (its Scale layer defined in the training script's __main__) and `mylayers.py`,
    the module that registers the same class for conversion."""
    root = tmp_path_factory.mktemp("custom")
    (root / "train.py").write_text(TRAIN.format(layer=LAYER))
    (root / "mylayers.py").write_text(textwrap.dedent(LAYER))
    done = _python(root / "train.py", root / "model.keras", cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    return root


def _recipe(folder: Path, source: str) -> Path:
    outputs = "outputs:\n  fp32: {stages: [tflite], gates: {max_abs: 1.0e-5}}\n  onnx: {stages: [onnx]}\n"
    return write_recipe(folder, f"name: custom\nsource: {source}\n{outputs}")


def test_untrusted_it_is_refused_naming_class_and_module(custom: Path, tmp_path: Path, capsys) -> None:
    recipe = _recipe(custom, "model.keras")
    assert main(["run", str(recipe), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert (
        "refused: the model needs custom classes" in err and "my>Scale (no module recorded: a training script)" in err
    )
    assert "source.trusted: true" in err and "source.imports" in err
    assert not (tmp_path / "out" / "report.json").exists()
    assert main(["inspect", str(custom / "model.keras")]) == 2
    assert "my>Scale (no module recorded: a training script)" in capsys.readouterr().err


def test_imports_or_import_without_trust_are_bad_input(custom: Path, capsys) -> None:
    recipe = _recipe(custom, "{path: model.keras, imports: [mylayers]}")
    assert main(["validate", str(recipe)]) == 2
    assert "imports run the modules' code; set source.trusted: true" in capsys.readouterr().err
    missing = _recipe(custom, "{path: model.keras, trusted: true, imports: [nosuchlayers]}")
    assert main(["validate", str(missing)]) == 2
    assert "source.imports: cannot find module nosuchlayers" in capsys.readouterr().err
    assert main(["inspect", str(custom / "model.keras"), "--import", "mylayers"]) == 2
    assert "--import runs the module's code: pass --trust-model too" in capsys.readouterr().err


def test_trusted_it_needs_the_module_and_passes_with_imports(custom: Path, tmp_path: Path) -> None:
    # Trusted, edgeport imports what the config names; a script's __main__ is no module, so the class is missing.
    alone = edgeport("run", _recipe(custom, "{path: model.keras, trusted: true}"), cwd=tmp_path)
    assert alone.returncode == 2, alone.stderr[-2000:]
    assert (
        "custom classes edgeport cannot find" in alone.stderr
        and "a training script's own class has none to import" in alone.stderr
    )

    recipe = _recipe(custom, "{path: model.keras, trusted: true, imports: [mylayers]}")
    done = edgeport("run", recipe, "--out", tmp_path / "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [output["status"] for output in report["outputs"]] == ["passed", "passed"]
    assert report["outputs"][0]["parity"]["metrics"]["max_abs"] <= 1e-5

    inspected = edgeport(
        "inspect",
        custom / "model.keras",
        "--trust-model",
        "--import",
        "mylayers",
        "--json",
        cwd=custom,
    )
    assert inspected.returncode == 0, inspected.stderr[-2000:]
    assert json.loads(inspected.stdout)["signatures"]["(keras call)"]["inputs"][0]["name"] == "x"
    assert "oneDNN" not in inspected.stderr  # TensorFlow imported quietly, with edgeport's settings, before the module


def test_a_module_is_imported_from_the_folder_which_is_then_off_the_path(tmp_path: Path) -> None:
    (tmp_path / "edgeport_probe_module.py").write_text("VALUE = 42\n")
    before = list(sys.path)
    import_modules(["edgeport_probe_module"], tmp_path, "source.imports")
    assert sys.modules["edgeport_probe_module"].VALUE == 42 and sys.path == before
    with pytest.raises(ModelError, match=r"source.imports: cannot import edgeport_absent \(No module named"):
        import_modules(["edgeport_absent"], tmp_path, "source.imports")
