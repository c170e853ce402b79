"""A cold run with the conversion worker, on a recipe that needs no TensorFlow in the run's process: the worker
describes the source and records its outputs on the evaluation data (pipeline.run.remote), with the same report,
the same refusals and failures (exit 2, same message), and a crash there is one clear line, not a hang."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from pipeline.recipe import load_recipe
from pipeline.run.remote import needs_source_here

from ..cli import edgeport_env, edgeport_watching, imported
from ..recipes import digits_data, recipe_file


def _cli(args: list[str], cache: Path) -> subprocess.CompletedProcess[str]:
    return edgeport_watching(*args, env=edgeport_env(EDGEPORT_CACHE_DIR=cache))


def test_cold_isolated_run_imports_no_tensorflow_and_reports_as_in_process(zoo, tmp_path: Path) -> None:
    outputs = {"fp32": {"stages": ["tflite"]}, "onnx": {"stages": ["onnx"]}}
    recipe = recipe_file(tmp_path, name="remote", source=zoo.keras3, data=digits_data(zoo, limit=64), outputs=outputs)
    assert not needs_source_here(load_recipe(recipe), None)
    cold = _cli(["run", str(recipe), "--out", str(tmp_path / "a")], tmp_path / "cache")
    assert cold.returncode == 0, cold.stderr
    assert not imported(cold, "tensorflow") and "reference source (keras)" in cold.stderr
    isolated = json.loads((tmp_path / "a" / "report.json").read_text())
    assert isolated["cache"]["source_loaded"] is True  # by the worker, on this run's behalf
    # In a process of its own, as a user runs it: this one's TensorFlow may carry state from other tests (a
    # fine-tune's enable_op_determinism picks other kernels, which moves the reference's last bits).
    alone = _cli(["run", str(recipe), "--out", str(tmp_path / "b"), "--no-cache", "--no-isolation"], tmp_path / "nc")
    assert alone.returncode == 0, alone.stderr
    in_process = json.loads((tmp_path / "b" / "report.json").read_text())
    assert isolated["source"] == in_process["source"]
    for one, two in zip(isolated["outputs"], in_process["outputs"], strict=True):
        assert one["parity"]["reference"] == two["parity"]["reference"]
        assert one["parity"]["metrics"] == two["parity"]["metrics"]
    warm = _cli(["run", str(recipe), "--out", str(tmp_path / "c")], tmp_path / "cache")  # what the worker cached
    assert warm.returncode == 0 and not imported(warm, "tensorflow") and "reference source (cached)" in warm.stderr


def test_recipes_that_need_the_model_here_load_it_here(zoo, tmp_path: Path) -> None:
    def needs(stages: list, **extra: object) -> bool:
        outputs = {"out": {"stages": stages, **extra}}
        data = digits_data(zoo, limit=64, calibration=True, fine_tune=True)
        return needs_source_here(
            load_recipe(recipe_file(tmp_path, name="n", source=zoo.keras3, data=data, outputs=outputs)), None
        )

    assert not needs(["tflite", {"litert_quantize": {"mode": "weight_only_int8"}}])
    assert needs([{"prune": {"sparsity": 0.5}}, "tflite"])
    assert needs([{"tflite": {"quantize": "int8", "fallback": "auto"}}])
    assert needs(["tflite"], benchmark={"runs": 2, "warmup": 1})


def test_a_source_that_fails_on_its_data_in_the_worker_is_bad_input(tmp_path: Path) -> None:
    from pipeline.frameworks import import_tensorflow

    import_tensorflow()
    import keras

    series = keras.Input((None, 1), name="series")  # any length: data of length 2 passes the input checks
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Conv1D(2, 5)(series))  # ... and fails here
    keras.Model(series, keras.layers.Dense(2)(pooled)).save(tmp_path / "short.keras")
    np.savez(tmp_path / "short.npz", x=np.zeros((8, 2, 1), np.float32))
    data = {"evaluation": {"npz": "short.npz", "inputs": "x"}}
    recipe = recipe_file(
        tmp_path, name="short", source=tmp_path / "short.keras", data=data, outputs={"fp32": {"stages": ["tflite"]}}
    )
    runs = [
        _cli(["run", str(recipe), "--out", str(tmp_path / "out"), *flag], tmp_path / "c")
        for flag in ([], ["--no-isolation"])
    ]
    messages = []
    for run in runs:
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
        messages.append(next(line for line in run.stderr.splitlines() if line.startswith("edgeport: error:")))
    assert messages[0] == messages[1] and "the source model failed on data.evaluation" in messages[0]
    assert not imported(runs[0], "tensorflow")
    assert not (tmp_path / "out" / "report.json").exists()


def test_a_worker_crash_while_loading_the_source_is_one_clear_line(zoo, tmp_path: Path) -> None:
    (tmp_path / "crashing.py").write_text(
        "import os, signal\n\n\ndef create_model():\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    (tmp_path / "w.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    source = {"builder": "crashing:create_model", "weights": "w.weights.h5", "trusted": True}
    recipe = recipe_file(
        tmp_path, name="crash", source=source, data=digits_data(zoo, limit=8), outputs={"fp32": {"stages": ["tflite"]}}
    )
    run = _cli(["run", str(recipe), "--out", str(tmp_path / "out")], tmp_path / "cache")
    assert run.returncode == 3 and "Traceback" not in run.stderr, run.stderr
    assert "worker process crashed while loading the source model (killed by SIGKILL)" in run.stderr
    assert not imported(run, "tensorflow")
