"""An fp32 file that misses an absolute gate by float32 rounding alone is told apart from one that is off: the source
run against itself (one batch against a sample at a time, inputs one ulp off) measures the rounding, and a file
within FLOAT_NOISE_RATIO of it gets a finding saying the gate, not the file, is at fault."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.parity import GateResult
from pipeline.run.diagnose import FLOAT_NOISE_RATIO, float_noise_finding, within_float32_noise

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
        "tolerant": {"stages": ["tflite"], "gates": {"max_abs": 1e-6, "float32_noise": FLOAT_NOISE_RATIO}},
    }
    data = {"evaluation": {"npz": tmp_path / "data.npz", "inputs": "x"}}
    recipe = recipe_file(tmp_path, name="wide", source=tmp_path / "wide.keras", data=data, outputs=outputs)
    report = run_report(recipe, tmp_path / "out", 1)
    tight, default, tolerant = report["outputs"]
    assert tight["status"] == "failed" and default["status"] == "passed" and default["findings"] == []
    [finding] = tight["findings"]
    measured = finding["measured"]
    assert finding["kind"] == "float32_noise" and measured["max_abs"] == tight["parity"]["metrics"]["max_abs"]
    noise = measured["source_one_ulp_inputs"]  # the batch-against-sample spread is reported, not counted
    assert noise > 0 and measured["max_abs"] <= FLOAT_NOISE_RATIO * noise
    assert 30 < measured["output_scale"] < 1000
    assert "set max_abs:" in finding["fix"] and "float32_noise: 4" in finding["fix"]
    # The same file, gated with float32_noise: its max_abs gate passes at 4× the spread the finding measured.
    [gate] = tolerant["parity"]["gates"]
    assert tolerant["status"] == "passed" and tolerant["findings"] == []
    assert gate["passed"] is True and gate["value"] == measured["max_abs"] > 1e-6
    assert gate["threshold"] == FLOAT_NOISE_RATIO * noise and "the recipe's threshold was 1e-06" in gate["note"]


def test_a_file_well_beyond_the_rounding_gets_none() -> None:
    spreads = {"batch_vs_sample": 2e-6, "one_ulp_inputs": 3e-6}
    assert float_noise_finding(FLOAT_NOISE_RATIO * 3e-6 * 1.01, spreads, 60.0, 32) is None
    assert float_noise_finding(1e-5, {"batch_vs_sample": 0.0, "one_ulp_inputs": 0.0}, 60.0, 32) is None
    assert float_noise_finding(float("nan"), spreads, 60.0, 32) is None
    finding = float_noise_finding(1e-5, spreads, 60.0, 32)
    assert finding is not None and "set max_abs: 2e-05," in finding["fix"]


def test_float32_noise_raises_only_a_failed_whole_output_max_abs_gate_and_only_as_far_as_the_spread() -> None:
    spreads = {"batch_vs_sample": 2e-6, "one_ulp_inputs": 3e-6}
    missed = GateResult("max_abs", "<=", 1e-6, 1e-5, False)
    raised = within_float32_noise(missed, spreads, 4)
    assert raised.passed and raised.threshold == 4 * 3e-6 and "spread 3e-06" in (raised.note or "")
    assert within_float32_noise(missed, spreads, 3) == missed  # 1e-5 > 3 × 3e-6: still failed, as it was
    boxes = GateResult("max_abs", "<=", 1e-6, 1e-5, False, tensor="boxes")
    cosine = GateResult("cosine", ">=", 0.99, 0.5, False)
    nan = GateResult("max_abs", "<=", 1e-6, float("nan"), False)
    for gate in (boxes, cosine, nan):
        assert within_float32_noise(gate, spreads, 100) == gate
    # A model whose outputs depend on the batch's other samples (keras-hub XLNet: 1e-2 one batch against a sample
    # at a time) does not pass a file that far off: only the inputs-one-ulp-off spread counts.
    batch_dependent = {"batch_vs_sample": 1.2e-2, "one_ulp_inputs": 0.0}
    off = GateResult("max_abs", "<=", 1e-4, 4.7e-2, False)
    assert within_float32_noise(off, batch_dependent, 4) == off
    assert float_noise_finding(4.7e-2, batch_dependent, 60.0, 16) is None
