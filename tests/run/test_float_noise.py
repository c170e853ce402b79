"""An fp32 file that misses an absolute gate by float32 rounding alone is told apart from one that is off: the source
run against itself (one batch against a sample at a time, inputs one ulp off) measures the rounding, and a file
within FLOAT_NOISE_RATIO of it gets a finding saying the gate, not the file, is at fault."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.run.diagnose import FLOAT_NOISE_RATIO, float_noise_finding

from ..cli import run_report
from ..recipes import recipe_file


def _wide_model(path: Path) -> None:
    """Outputs reaching |60|: float32 rounding there is ~1e-5, which a max_abs 1e-5 gate cannot tell from error."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3), name="x")
    hidden = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(inputs)
    hidden = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(hidden)
    hidden = keras.layers.Dense(256, activation="relu")(keras.layers.GlobalAveragePooling2D()(hidden))
    model = keras.Model(inputs, keras.layers.Dense(10)(hidden))
    model.set_weights([weight * 6 for weight in model.get_weights()])
    model.save(path)


def test_a_file_within_the_source_s_own_rounding_gets_a_finding_not_blame(tmp_path: Path) -> None:
    _wide_model(tmp_path / "wide.keras")
    np.savez(tmp_path / "data.npz", x=np.random.default_rng(0).random((48, 16, 16, 3), np.float32))
    outputs = {
        "tight": {"stages": ["tflite"], "gates": {"max_abs": 1e-6}},
        "default": {"stages": ["tflite"]},
    }
    data = {"evaluation": {"npz": tmp_path / "data.npz", "inputs": "x"}}
    recipe = recipe_file(tmp_path, name="wide", source=tmp_path / "wide.keras", data=data, outputs=outputs)
    report = run_report(recipe, tmp_path / "out", 1)
    tight, default = report["outputs"]
    assert tight["status"] == "failed" and default["status"] == "passed" and default["findings"] == []
    [finding] = tight["findings"]
    measured = finding["measured"]
    assert finding["kind"] == "float32_noise" and measured["max_abs"] == tight["parity"]["metrics"]["max_abs"]
    noise = max(measured["source_batch_vs_sample"], measured["source_one_ulp_inputs"])
    assert noise > 0 and measured["max_abs"] <= FLOAT_NOISE_RATIO * noise
    assert 30 < measured["output_scale"] < 1000
    assert "set max_abs:" in finding["fix"]


def test_a_file_well_beyond_the_rounding_gets_none() -> None:
    spreads = {"batch_vs_sample": 2e-6, "one_ulp_inputs": 3e-6}
    assert float_noise_finding(FLOAT_NOISE_RATIO * 3e-6 * 1.01, spreads, 60.0, 32) is None
    assert float_noise_finding(1e-5, {"batch_vs_sample": 0.0, "one_ulp_inputs": 0.0}, 60.0, 32) is None
    assert float_noise_finding(float("nan"), spreads, 60.0, 32) is None
    finding = float_noise_finding(1e-5, spreads, 60.0, 32)
    assert finding is not None and finding["fix"].endswith("max_abs: 2e-05")
