"""A TF1 graph whose `training` switch defaults to True runs its dropout in the reference: `edgeport run` says so
before any gate (console and report), names the switch and the `feeds` line, and neither calls the file's gap
float32 noise nor lets `float32_noise` pass it (before, a file at cosine 0.56 was told to add float32_noise: 4,
and with it passed). The warning comes back on a warm run, whose reference comes from the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..cli import edgeport
from ..recipes import recipe_file
from ..run.test_determinism import tf1_graph


def test_a_live_dropout_is_a_warning_and_float32_noise_excuses_nothing(tmp_path: Path) -> None:
    tf1_graph(tmp_path / "dropout.pb", "dropout")
    np.savez(tmp_path / "data.npz", x=np.random.default_rng(1).random((48, 16), np.float32))
    outputs = {
        "onnx": {"stages": ["onnx"]},
        "tolerant": {"stages": ["onnx"], "gates": {"max_abs": 1e-4, "float32_noise": 4}},
    }
    source = {"graph": "dropout.pb", "outputs": ["y"]}
    data = {"evaluation": {"npz": "data.npz", "inputs": "x"}}
    recipe = recipe_file(tmp_path, name="dropout", source=source, data=data, outputs=outputs)
    for run in ("cold", "warm"):
        result = edgeport("run", recipe, "--out", tmp_path / run)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        report = json.loads((tmp_path / run / "report.json").read_text())
        # (a switch that defaults to True is also a warning of the source's, before anything runs)
        [warning] = [text for text in report["warnings"] if "not deterministic" in text]
        assert f"  warning   {warning}" in result.stderr
        assert warning.startswith("the source is not deterministic: its first batch of 48 run again differs by")
        assert "the training switch `training` defaults to True" in warning
        assert "Fix: add `feeds: {training: false}` to the source." in warning
        onnx, tolerant = report["outputs"]
        assert onnx["status"] == tolerant["status"] == "failed"
        assert onnx["findings"] == tolerant["findings"] == []  # no "float32 noise: add float32_noise: 4"
        [gate] = tolerant["parity"]["gates"]
        assert gate["passed"] is False and gate["threshold"] == 1e-4 and gate["value"] > 1
        assert gate["note"].startswith("float32_noise not applied: the source is not deterministic")
    assert "reference source (cached)" in result.stderr
