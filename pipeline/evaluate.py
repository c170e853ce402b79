"""Run an artifact over a dataset in its runtime, and compare two such runs tensor by tensor.

The glue between runtimes and parity, shared by `run` and `compare`; knows no recipe or stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.core.artifact import Artifact
from pipeline.core.tensors import Order, match_outputs
from pipeline.data import Dataset
from pipeline.parity import ParityAccumulator, ParityResult
from pipeline.plotdata import plot_data
from pipeline.runtimes import runtime_for


@dataclass
class Predictions:
    """What one artifact's runtime produced on the evaluation data, batch by batch."""

    label: str
    runtime: str
    names: list[str]
    batches: list[dict[str, np.ndarray]]
    order: Order = None  # what `names`' order means to a `:N` index (pipeline.core.tensors.match_outputs)

    def shapes(self) -> list[tuple[str, tuple[int | None, ...]]]:
        """Each output's per-sample shape, as the runtime produced it (free dimensions resolved)."""
        first = self.batches[0] if self.batches else {}
        return [(name, tuple(first[name].shape[1:]) if name in first else ()) for name in self.names]


# A SavedModel runtime lists a signature's outputs sorted by key, a Keras one in model order; other files number
# nothing.
ORDERS: dict[str, Order] = {"savedmodel": "signature", "keras": "model"}


def predict_dataset(
    artifact: Artifact, label: str, dataset: Dataset, batch_size: int, threads: int | None = None, **settings: str
) -> Predictions:
    """Run `artifact` over the dataset in its runtime, under the given runtime settings (a delegate, ...)."""
    with runtime_for(artifact, threads, **settings) as runtime:
        batches = list(runtime.predict(dataset.batches(batch_size)))
        names = [spec.name for spec in runtime.outputs]
        return Predictions(f"{label} ({runtime.label()})", runtime.name, names, batches, ORDERS.get(artifact.kind))


def compare(
    reference: Predictions,
    candidate: Predictions,
    dataset: Dataset,
    batch_size: int,
    tensor_map: dict[str, str] | None = None,
) -> ParityResult:
    """Parity of two runs over the same batches; tensors matched by `match_outputs`' rules, the rule recorded.

    The result carries plot data (a bounded sample and an |error| histogram) for the reports to draw.
    Runtime batches are merged into chunks of up to CHUNK_SAMPLES first: metrics then cost a few numpy
    calls a chunk instead of a few dozen a batch, which matters when inference itself takes microseconds.
    """
    what = f"{candidate.label} outputs"
    matches = match_outputs(reference.shapes(), candidate.shapes(), what, reference.order, tensor_map)
    mapping = {name: match.candidate for name, match in matches.items()}
    accumulator = ParityAccumulator(reference.label, reference.names, candidate.label)
    matched = [{name: produced[mapping[name]] for name in reference.names} for produced in candidate.batches]
    expected_chunks = _chunks(reference.batches, reference.names)
    produced_chunks = _chunks(matched, reference.names)
    label_chunks = _label_chunks(dataset, batch_size, len(expected_chunks))
    for expected, produced, labels in zip(expected_chunks, produced_chunks, label_chunks, strict=True):
        accumulator.update(expected, produced, labels)
    result = accumulator.result()
    result.plots = plot_data(expected_chunks, produced_chunks, reference.names)
    result.matched = {name: match.to_json() for name, match in matches.items()}
    return result


CHUNK_SAMPLES = 8192


def _chunks(batches: list[dict[str, np.ndarray]], names: list[str]) -> list[dict[str, np.ndarray]]:
    chunks, pending, count = [], [], 0
    for batch in batches:
        pending.append(batch)
        count += len(next(iter(batch.values())))
        if count >= CHUNK_SAMPLES:
            chunks.append({name: np.concatenate([b[name] for b in pending]) for name in names})
            pending, count = [], 0
    if pending:
        chunks.append({name: np.concatenate([b[name] for b in pending]) for name in names})
    return chunks


def _label_chunks(dataset: Dataset, batch_size: int, count: int) -> list[np.ndarray | None]:
    if dataset.labels is None:
        return [None] * count
    sizes = [len(b) for b in dataset.label_batches(batch_size) if b is not None]
    chunks, start, pending = [], 0, 0
    for size in sizes:
        pending += size
        if pending >= CHUNK_SAMPLES:
            chunks.append(dataset.labels[start : start + pending])
            start, pending = start + pending, 0
    if pending:
        chunks.append(dataset.labels[start : start + pending])
    return chunks
