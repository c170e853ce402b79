"""Rescues: what the converters fail on and edgeport gets through, named in the report.

RNNs do not reach TFLite at a free batch ("Lowering tensor list ops is failed"): converted again at fixed shapes,
they run in LiteRT at the fp32 gate; `rescue: false` keeps the converter's error. Real Keras 3 and tf_keras models,
calibrated and evaluated on different seeded data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ..cli import edgeport, run_report
from ..recipes import recipe_file

STEPS, FEATURES = 20, 8


@pytest.fixture(scope="module")
def rnns(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A Keras 3 LSTM → GRU classifier (`.keras`), a tf_keras LSTM classifier (a legacy `.h5` Keras 3 cannot read:
    `time_major`), and sequences: 32 to calibrate, 48 others to evaluate."""
    from pipeline.frameworks import captured_native_output, import_tensorflow

    import_tensorflow()
    import keras
    import tf_keras

    root = tmp_path_factory.mktemp("rnn")
    with captured_native_output():
        keras.utils.set_random_seed(0)
        frames = keras.Input((STEPS, FEATURES), name="frames")
        hidden = keras.layers.GRU(12)(keras.layers.LSTM(16, return_sequences=True)(frames))
        keras.Model(frames, keras.layers.Dense(5, activation="softmax", name="probs")(hidden)).save(root / "rnn.keras")
        tf_keras.utils.set_random_seed(0)
        legacy = tf_keras.Sequential(
            [
                tf_keras.layers.InputLayer((STEPS, FEATURES), name="frames"),
                tf_keras.layers.LSTM(16),
                tf_keras.layers.Dense(5, activation="softmax"),
            ]
        )
        legacy.save(root / "legacy.h5")
    np.savez(
        root / "data.npz",
        calibration=np.random.default_rng(1).normal(size=(32, STEPS, FEATURES)).astype(np.float32),
        evaluation=np.random.default_rng(2).normal(size=(48, STEPS, FEATURES)).astype(np.float32),
    )
    return {"keras3": root / "rnn.keras", "tf_keras": root / "legacy.h5", "data": root / "data.npz"}


def _data(rnns: dict[str, Path]) -> dict[str, object]:
    return {
        "calibration": {"npz": rnns["data"], "inputs": "calibration"},
        "evaluation": {"npz": rnns["data"], "inputs": "evaluation"},
    }


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_an_rnn_converts_at_fixed_shapes_and_passes_fp32(rnns: dict[str, Path], tmp_path: Path, flavour: str) -> None:
    outputs = {
        "fp32": {"stages": ["tflite"], "gates": {"max_abs": 1e-5}},
        "dynamic": {"stages": [{"tflite": {"quantize": "dynamic"}}]},
    }
    if flavour == "tf_keras":  # Keras 3's LSTM + GRU crashes TensorFlow's int8 calibrator (SIGSEGV) at any shape
        outputs["int8"] = {"stages": [{"tflite": {"quantize": "int8"}}]}
    recipe = recipe_file(tmp_path, name=flavour, source=rnns[flavour], data=_data(rnns), outputs=outputs)
    report = run_report(recipe, tmp_path / "out", 0)
    for output in report["outputs"]:
        assert output["status"] == "passed", output
        assert output["parity"]["samples"] == 48  # run one sample at a time: the file's batch is 1
        [rescue] = output["rescues"]
        assert rescue["name"] == "fixed_shapes" and "tensor list" in rescue["raw_error"]
        assert rescue["action"] == f"converted at fixed input shapes frames [1, {STEPS}, {FEATURES}]"
    assert report["outputs"][0]["parity"]["metrics"]["max_abs"] <= 1e-5
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "### Rescues" in markdown and "fixed_shapes: converted at fixed input shapes frames [1, 20, 8]" in markdown
    assert 'name="rescue.fp32.0"' in (tmp_path / "out" / "junit.xml").read_text()


def test_without_the_rescue_the_converter_error_stands(rnns: dict[str, Path], tmp_path: Path) -> None:
    outputs = {"fp32": {"stages": [{"tflite": {"rescue": False}}]}}
    recipe = recipe_file(tmp_path, name="raw", source=rnns["keras3"], data=_data(rnns), outputs=outputs)
    report = run_report(recipe, tmp_path / "out", 3)
    [output] = report["outputs"]
    assert output["status"] == "error" and "tensor list" in output["error"] and output["rescues"] == []
    assert json.loads((tmp_path / "out" / "report.json").read_text())["passed"] is False


def test_a_calibrator_crash_on_a_recurrent_model_names_its_known_cause(rnns: dict[str, Path], tmp_path: Path) -> None:
    """Keras 3's LSTM + GRU in full-integer int8 crashes TensorFlow's calibrator (SIGSEGV; tensorflow#87468): the
    worker dies, the run goes on, and the error says what is known and what converts."""
    outputs = {"int8": {"stages": [{"tflite": {"quantize": "int8"}}]}}
    recipe = recipe_file(tmp_path, name="crash", source=rnns["keras3"], data=_data(rnns), outputs=outputs)
    result = edgeport("run", recipe, "--out", tmp_path / "out")
    [output] = json.loads((tmp_path / "out" / "report.json").read_text())["outputs"]
    if output["status"] != "error":  # a TensorFlow build or CPU where the calibrator holds: nothing to explain
        assert result.returncode in (0, 1) and "Traceback" not in result.stderr
        return
    assert result.returncode == 3 and "killed by SIGSEGV" in output["error"]
    assert "tensorflow#87468" in output["error"] and "quantize: dynamic" in output["error"]
