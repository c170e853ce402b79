"""Shared test steps: run one stage on a real artifact, run an artifact in its runtime, compare two arrays, check
what a batch of recipes left."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.artifact import Artifact
from pipeline.data import Dataset
from pipeline.parity import ParityAccumulator, ParityResult
from pipeline.runtimes import runtime_for
from pipeline.stages import STAGES, StageContext


def run_stage(
    kind: str,
    upstream: Artifact,
    work: Path,
    calibration: np.ndarray | None = None,
    *,
    fine_tune: Dataset | None = None,
    **options: object,
) -> Artifact:
    stage = STAGES[kind]
    batches = None
    if calibration is not None:
        batches = lambda: iter([{"pixels": calibration}])  # noqa: E731
    work.mkdir(parents=True, exist_ok=True)
    context = StageContext(work_dir=work, key=f"test-{kind}", calibration=batches, fine_tune=fine_tune)
    return stage().run(upstream, stage.Options(**options), context)


def predict(artifact: Artifact, x: np.ndarray, batch: int = 64) -> np.ndarray:
    runtime = runtime_for(artifact)
    name = runtime.inputs[0].name
    outputs = [
        next(iter(out.values())) for out in runtime.predict({name: x[i : i + batch]} for i in range(0, len(x), batch))
    ]
    return np.concatenate(outputs)


def top1_agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(axis=1) == b.argmax(axis=1)).mean())


def compare_arrays(
    reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None, *, batch: int
) -> ParityResult:
    """Parity of output `y` through the real accumulator, fed `batch` samples at a time."""
    accumulator = ParityAccumulator("source", ["y"])
    for start in range(0, len(reference), batch):
        part = None if labels is None else labels[start : start + batch]
        accumulator.update({"y": reference[start : start + batch]}, {"y": candidate[start : start + batch]}, part)
    return accumulator.result()


def assert_batch_summary(out: Path, code: int) -> dict[str, Any]:
    """What any executor (here, --jobs, Dask) must leave for the batch first, second (+ onnx), strict, broken d.yaml:
    the verdicts and the worst exit code, each recipe's folder, one junit suite per recipe in order, summary.md.
    Returns summary.json."""
    summary = json.loads((out / "summary.json").read_text())
    verdicts = {recipe["name"]: recipe["exit_code"] for recipe in summary["recipes"]}
    assert verdicts == {"first": 0, "second": 0, "strict": 1, "d": 2}  # d.yaml cannot be read: named by its file
    assert code == summary["exit_code"] == 2  # the worst: bad input beats a failed gate
    assert (out / "first" / "report.json").is_file() and (out / "second" / "onnx" / "model.onnx").is_file()
    suites = ET.parse(out / "junit.xml").getroot().findall("testsuite")
    assert [suite.get("name") for suite in suites] == [
        "edgeport.first",
        "edgeport.second",
        "edgeport.strict",
        "edgeport.d",
    ]
    assert "| strict | exit 1 | 0/1 | fp32 |" in (out / "summary.md").read_text()
    return summary


def saved_hub_backbone(name: str, folder: Path, samples: dict[str, tuple[int, int]]) -> tuple[Path, dict[str, str]]:
    """The zoo's keras-hub backbone `name`, built tiny with seeded random weights and saved as folder/NAME.keras,
    with npz files of its inputs (`samples`: file stem → (seed, count)); the model file and the npz keys by input."""
    import keras

    from scripts.zoo import hub_backbones

    builder, make = hub_backbones()[name]
    keras.utils.set_random_seed(0)
    model = builder()
    model.predict_on_batch(make(np.random.default_rng(0), 2))
    model.save(folder / f"{name}.keras")
    for stem, (seed, count) in samples.items():
        np.savez(folder / f"{stem}.npz", **make(np.random.default_rng(seed), count))
    return folder / f"{name}.keras", {input_name: input_name for input_name in model.input}


def checked_result(name: str, **metrics: float) -> Any:
    """An output's result as the checker leaves it, without running anything: the given metrics and one passed
    cosine gate, for the code that judges results afterwards (baseline, rebuild)."""
    from pipeline.parity import GateResult
    from pipeline.run.checker import Check
    from pipeline.run.result import OutputResult

    gate = GateResult("cosine", ">=", 0.9, 0.99, True)
    parity = ParityResult("keras", "litert", 10, dict(metrics), {}, 0, gates=[gate])
    return OutputResult(name=name, format="tflite", gates_from="tflite", check=Check(parity, [], []))


def edit_h5_config(path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """Rewrite a Keras `.h5` file's model config in place, as an attacker would: `edit` changes the parsed JSON."""
    import h5py

    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        edit(config)
        handle.attrs["model_config"] = json.dumps(config)
    return path


def edit_keras_config(path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """Rewrite config.json inside a `.keras` archive, every other member as it was."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def load_built_source(root: Path, builder: str, weights: str, **spec: Any) -> Any:
    """`source: {builder, weights, trusted: true, ...}` of a recipe in `root`, loaded as a run loads it."""
    from pipeline.recipe import SourceSpec
    from pipeline.sources import load_source_spec

    source = SourceSpec(builder=builder, weights=weights, trusted=True, **spec)  # type: ignore[arg-type]
    return load_source_spec(source, root, trusted=True)
