"""Run an artifact over a dataset in its runtime, and compare two such runs tensor by tensor.

The glue between runtimes and parity, shared by `run` and `compare`; knows no recipe or stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.data import Dataset
from pipeline.parity import ParityAccumulator, ParityResult
from pipeline.plotdata import plot_data
from pipeline.runtimes import align_names, runtime_for
from pipeline.specs import Artifact


@dataclass
class Predictions:
    """What one artifact's runtime produced on the evaluation data, batch by batch."""

    label: str
    runtime: str
    names: list[str]
    batches: list[dict[str, np.ndarray]]


def predict_dataset(
    artifact: Artifact,
    label: str,
    dataset: Dataset,
    batch_size: int,
    threads: int | None = None,
    delegate: str = "xnnpack",
) -> Predictions:
    runtime = runtime_for(artifact, threads=threads, delegate=delegate)
    batches = list(runtime.predict(dataset.batches(batch_size)))
    names = [spec.name for spec in runtime.outputs]
    where = runtime.name if artifact.kind != "tflite" else f"{runtime.name}, {delegate} delegate"
    return Predictions(f"{label} ({where})", runtime.name, names, batches)


def compare(reference: Predictions, candidate: Predictions, dataset: Dataset, batch_size: int) -> ParityResult:
    """Parity of two runs over the same batches; tensors matched by name, else by position.

    The result carries plot data (a bounded sample and an |error| histogram) for the reports to draw.
    """
    mapping = align_names(reference.names, candidate.names, f"{candidate.label} outputs")
    accumulator = ParityAccumulator(reference.label, reference.names, candidate.label)
    labels = dataset.label_batches(batch_size)
    matched = [{name: produced[mapping[name]] for name in reference.names} for produced in candidate.batches]
    for expected, produced, batch_labels in zip(reference.batches, matched, labels, strict=True):
        accumulator.update(expected, produced, batch_labels)
    result = accumulator.result()
    result.plots = plot_data(reference.batches, matched, reference.names)
    return result
