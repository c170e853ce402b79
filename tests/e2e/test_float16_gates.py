"""float16's default gates are relative to the outputs' scale: a float16 file of logits reaching |60|, as close to
its source as 11-bit weights allow (cosine 0.99999995), passes by default (it missed the absolute `max_abs 0.01`
that stood before, at 0.036); a float16 file whose weights float16 flushes to zero fails them still."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..cli import edgeport
from ..recipes import recipe_file
from ..run.test_float_noise import _wide_model


def _flushed_model(path: Path) -> None:
    """A first layer whose weights (~1e-7) float16 holds only as subnormals, on inputs (~1e6) that make them count."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32,), name="x")
    hidden = keras.layers.Dense(64, activation="tanh")
    model = keras.Model(inputs, keras.layers.Dense(4)(hidden(inputs)))
    kernel, bias = hidden.get_weights()
    hidden.set_weights([kernel * 2e-7, bias])
    model.save(path)


def test_float16_defaults_pass_a_file_at_its_rounding_and_fail_one_that_is_off(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    _wide_model(tmp_path / "wide.keras")
    np.savez(tmp_path / "wide.npz", x=rng.random((16, 16, 16, 3), np.float32))
    _flushed_model(tmp_path / "flushed.keras")
    np.savez(tmp_path / "flushed.npz", x=rng.normal(0, 1e6, (64, 32)).astype(np.float32))
    half = {"float16": {"stages": [{"tflite": {"quantize": "float16"}}]}}
    recipes = [
        recipe_file(tmp_path, name=name, source=tmp_path / f"{name}.keras", outputs=half, file=f"{name}.yaml",
                    data={"evaluation": {"npz": tmp_path / f"{name}.npz", "inputs": "x"}})
        for name in ("wide", "flushed")
    ]  # fmt: skip
    result = edgeport("run", *recipes, "--out", tmp_path / "out")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    reports = {name: json.loads((tmp_path / "out" / name / "report.json").read_text()) for name in ("wide", "flushed")}
    (wide,), (flushed,) = reports["wide"]["outputs"], reports["flushed"]["outputs"]
    metrics = wide["parity"]["metrics"]
    assert wide["status"] == "passed" and metrics["max_abs"] > 1e-2 and metrics["cosine"] > 0.99999
    gates = {gate["metric"]: gate["threshold"] for gate in wide["parity"]["gates"]}
    assert gates == {"nrmse": 1e-2, "min_cosine": 0.999}
    assert flushed["status"] == "failed"
    assert {gate["metric"] for gate in flushed["parity"]["gates"] if not gate["passed"]} == {"nrmse", "min_cosine"}
