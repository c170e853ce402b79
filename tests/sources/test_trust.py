"""Trust: a model file that carries Python code is refused, untrusted, before any loader deserializes it — by
`run`, `inspect` and `compare` alike. Each carrier is a real model whose payload touches a marker file when it
runs, so each test also shows the payload is live (trusted, it runs) and never ran (untrusted)."""

from __future__ import annotations

import base64
import json
import marshal
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.errors import ModelError
from pipeline.sources import load_source
from pipeline.sources.trust import MAX_CONFIG_BYTES

from ..cli import edgeport
from ..recipes import recipe_file

# What an attacker would ship: lambdas that do their own work (create the marker file), then what the layer
# expects. The path comes from the environment, so that the code, and the source Keras 3 serializes, live here;
# names are literals because a deserialized lambda sees its loader's globals, not this module's.
PAYLOADS = {
    "i, o": lambda i, o: (open(__import__("os").environ["EDGEPORT_TEST_MARKER"], "a").close(), o)[1],
    "path, value": lambda path, value: (open(__import__("os").environ["EDGEPORT_TEST_MARKER"], "a").close(), 1)[1],
    "t": lambda t: (open(__import__("os").environ["EDGEPORT_TEST_MARKER"], "a").close(), t)[1],
    "y, p": lambda y, p: (open(__import__("os").environ["EDGEPORT_TEST_MARKER"], "a").close(), (y - p) ** 2)[1],
}


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file a payload creates when it runs; subprocesses inherit the variable."""
    path = tmp_path / "payload-ran"
    monkeypatch.setenv("EDGEPORT_TEST_MARKER", str(path))
    return path


def _payload(arguments: str):
    return PAYLOADS[arguments]


def _residual_wrapper_h5(path: Path) -> Path:
    import tf_keras
    from tf_keras.src.layers.rnn.cell_wrappers import ResidualWrapper

    cell = ResidualWrapper(tf_keras.layers.LSTMCell(4), residual_fn=_payload("i, o"))
    inputs = tf_keras.Input((5, 4), name="series")
    tf_keras.Model(inputs, tf_keras.layers.RNN(cell)(inputs)).save(path)
    return path


def _dropout_wrapper_h5(path: Path) -> Path:
    import tf_keras
    from tf_keras.src.layers.rnn.cell_wrappers import DropoutWrapper

    visitor = _payload("path, value")
    cell = DropoutWrapper(tf_keras.layers.GRUCell(4), dropout_state_filter_visitor=visitor)
    inputs = tf_keras.Input((5, 4), name="series")
    tf_keras.Model(inputs, tf_keras.layers.RNN(cell)(inputs)).save(path)
    return path


def _keras3_activation_h5(path: Path) -> Path:
    import keras

    inputs = keras.Input((3,), name="v")
    keras.Model(inputs, keras.layers.Dense(2, activation=_payload("t"), name="head")(inputs)).save(path)
    return path


def _keras3_loss_keras(path: Path) -> Path:
    import keras

    inputs = keras.Input((3,), name="v")
    # Named: an auto-named Dense would move the names later tests in this process get (dense → dense_1).
    model = keras.Model(inputs, keras.layers.Dense(2, name="score")(inputs), name="scorer")
    model.compile(loss=_payload("y, p"))
    model.save(path)
    return path


CARRIERS = {
    "residual_fn": (_residual_wrapper_h5, "residual.h5", "a lambda as residual_fn of layer 'residual_wrapper'"),
    "dropout_visitor": (
        _dropout_wrapper_h5,
        "dropout.h5",
        "a lambda as dropout_fn of layer 'dropout_wrapper'",  # tf_keras keeps the visitor under this name
    ),
    "activation": (_keras3_activation_h5, "activation.h5", "marshalled bytecode in layer 'head'"),
    "loss": (_keras3_loss_keras, "loss.keras", "a lambda function in layer 'scorer'"),
}


@pytest.mark.parametrize("carrier", sorted(CARRIERS))
def test_each_carrier_is_refused_untrusted_and_its_payload_never_runs(
    tmp_path: Path, marker: Path, carrier: str
) -> None:
    make, filename, phrase = CARRIERS[carrier]
    model = make(tmp_path / filename)
    marker.unlink(missing_ok=True)  # building and saving may have called it
    with pytest.raises(ModelError, match="refused: the model runs arbitrary Python code") as refusal:
        load_source(model)
    assert phrase in str(refusal.value) and "source.trusted: true" in str(refusal.value)
    assert str(model) in str(refusal.value)
    assert not marker.exists()


def test_the_residual_payload_is_live_when_trusted(tmp_path: Path, marker: Path) -> None:
    """Without this, a refusal could be refusing a file whose code never runs anyway."""
    model = _residual_wrapper_h5(tmp_path / "residual.h5")
    marker.unlink(missing_ok=True)
    loaded = load_source(model, trusted=True)
    loaded.artifact.handle(np.zeros((1, 5, 4), np.float32))
    assert loaded.artifact.flavour == "tf_keras" and marker.exists()


def test_run_inspect_and_compare_refuse_it_with_exit_2_and_no_payload(tmp_path: Path, marker: Path) -> None:
    model = _residual_wrapper_h5(tmp_path / "residual.h5")
    marker.unlink(missing_ok=True)
    recipe = recipe_file(tmp_path, name="untrusted", source="residual.h5", outputs={"fp32": {"stages": ["tflite"]}})
    for command in (("run", recipe, "--out", tmp_path / "out"), ("inspect", model), ("compare", model, model)):
        result = edgeport(*command)
        assert result.returncode == 2, (command, result.stderr)
        assert "residual_fn" in result.stderr and "Traceback" not in result.stderr
        assert not marker.exists(), command
    assert not (tmp_path / "out" / "report.json").exists()


def _h5_with_config(path: Path, config: dict) -> Path:
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = json.dumps(config)
    return path


def test_bytecode_under_any_key_is_found(tmp_path: Path) -> None:
    """A carrier tf_keras knows by another name: a base64 code object is refused wherever it sits."""
    code = base64.b64encode(marshal.dumps((lambda: 0).__code__)).decode()
    layer = {"class_name": "Dense", "config": {"name": "head", "units": 2, "hidden": {"spare": [code, None]}}}
    path = _h5_with_config(tmp_path / "hidden.h5", {"class_name": "Sequential", "config": {"layers": [layer]}})
    with pytest.raises(ModelError, match="marshalled bytecode in layer 'head'"):
        load_source(path)


def test_plain_models_pass_the_scan(zoo) -> None:
    for model in (zoo.keras3, zoo.keras3_h5, zoo.tf_keras_h5, zoo.legacy_h5):
        assert load_source(model).inputs


def test_a_config_that_inflates_past_the_bound_is_refused_before_reading(tmp_path: Path) -> None:
    """A small .keras whose config.json inflates to gigabytes: refused from its declared size, trusted or not."""
    import zipfile

    path = tmp_path / "bomb.keras"
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("config.json", "w", force_zip64=True) as member,
    ):
        block = b" " * (1 << 20)
        for _ in range(MAX_CONFIG_BYTES // len(block) + 1):
            member.write(block)
    assert path.stat().st_size < 1 << 20
    for trusted in (False, True):
        with pytest.raises(ModelError, match=r"config\.json inflates to .* bytes .*at most"):
            load_source(path, trusted=trusted)
