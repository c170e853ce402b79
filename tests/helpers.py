"""Shared test steps: run one stage on a real artifact, and run an artifact in its runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.artifact import Artifact
from pipeline.data import Dataset
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
