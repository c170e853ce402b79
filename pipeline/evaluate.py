"""Run an artifact over a dataset in its runtime, and compare two such runs tensor by tensor.

The glue between runtimes and parity, shared by `run` and `compare`; knows no recipe or stage.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.artifact import Artifact
from pipeline.core.recording import OutputRecording
from pipeline.core.tensors import Order, TensorMatch, match_outputs
from pipeline.data import Dataset
from pipeline.parity import ParityAccumulator, ParityResult
from pipeline.plotdata import PlotData
from pipeline.runtimes import runtime_for


@dataclass
class Predictions:
    """What one artifact's runtime produced on the evaluation data: recorded on disk, read back in chunks."""

    label: str
    runtime: str
    outputs: OutputRecording
    order: Order = None  # what `names`' order means to a `:N` index (pipeline.core.tensors.match_outputs)
    inputs_matched: dict[str, TensorMatch] = field(default_factory=dict)  # source input → the file's, and the rule
    determinism: dict[str, Any] | None = None  # a source's: pipeline.run.determinism.Determinism.to_json()

    @property
    def names(self) -> list[str]:
        return self.outputs.names

    def shapes(self) -> list[tuple[str, tuple[int | None, ...]]]:
        """Each output's per-sample shape, as the runtime produced it (free dimensions resolved)."""
        return self.outputs.shapes()


# A SavedModel runtime lists a signature's outputs sorted by key, a Keras one in model order; other files number
# nothing.
ORDERS: dict[str, Order] = {"savedmodel": "signature", "keras": "model"}


def predict_dataset(
    artifact: Artifact,
    label: str,
    dataset: Dataset,
    batch_size: int,
    threads: int | None = None,
    input_map: dict[str, str] | None = None,
    **settings: str,
) -> Predictions:
    """Run `artifact` over the dataset in its runtime, under the given runtime settings (a delegate, ...)."""
    return predict_batches(artifact, label, dataset.batches(batch_size), threads, input_map=input_map, **settings)


def predict_batches(
    artifact: Artifact,
    label: str,
    batches: Iterable[dict[str, np.ndarray]],
    threads: int | None = None,
    directory: Path | None = None,
    input_map: dict[str, str] | None = None,
    **settings: str,
) -> Predictions:
    """Run `artifact` over input batches, recording its outputs (into `directory` when given, which the caller
    keeps; else a temporary folder that goes with the Predictions). `input_map` pairs source inputs with the
    file's where names and shapes cannot (pipeline.core.tensors.match_inputs)."""
    with runtime_for(artifact, threads, **settings) as runtime:
        names = [spec.name for spec in runtime.outputs]
        recording = OutputRecording.record(runtime.predict(batches, input_map), names, directory)
        label = f"{label} ({runtime.label()})"
        matched = runtime.inputs_matched or {}
        return Predictions(label, runtime.name, recording, ORDERS.get(artifact.kind), matched)


def compare(
    reference: Predictions,
    candidate: Predictions,
    dataset: Dataset,
    tensor_map: dict[str, str] | None = None,
) -> ParityResult:
    """Parity of two runs over the same samples; tensors matched by `match_outputs`' rules, the rule recorded.

    The result carries plot data (a bounded sample and an |error| histogram) for the reports to draw. Both runs
    are read back once, in chunks of the same samples (up to CHUNK_SAMPLES, fewer for large outputs), for the
    metrics and the plot data together: metrics then cost a few numpy calls a chunk, which matters when
    inference itself takes microseconds, and memory stays bounded whatever the number of samples.
    """
    what = f"{candidate.label} outputs"
    matches = match_outputs(reference.shapes(), candidate.shapes(), what, reference.order, tensor_map)
    if reference.outputs.samples != candidate.outputs.samples:
        raise ValueError(
            f"{what}: {candidate.outputs.samples} samples where {reference.label} has {reference.outputs.samples}"
        )
    rows = min(reference.outputs.chunk_rows(), candidate.outputs.chunk_rows())
    expected = _Chunks(reference.outputs, rows, {name: name for name in reference.names})
    produced = _Chunks(candidate.outputs, rows, {name: match.candidate for name, match in matches.items()})
    accumulator = ParityAccumulator(reference.label, reference.names, candidate.label, dataset.labelled_output)
    values = reference.outputs.samples * sum(math.prod(shape) for _, shape in reference.shapes())
    plots = PlotData(reference.names, values)
    start = 0
    for ref, out in zip(expected, produced, strict=True):
        count = len(next(iter(ref.values()))) if ref else 0
        labels = None if dataset.labels is None else dataset.labels[start : start + count]
        accumulator.update(ref, out, labels, observe=plots.add)
        start += count
    result = accumulator.result()
    result.plots = plots.finish(again=partial(_segment, expected, produced, reference.names))
    result.matched = {name: match.to_json() for name, match in matches.items()}
    result.matched_inputs = {name: match.to_json() for name, match in candidate.inputs_matched.items()}
    return result


@dataclass
class _Chunks:
    """A recording's tensors in chunks of `rows` samples, keyed by reference names; iterable more than once
    (the plot data may read some chunks again). Each chunk's arrays are overwritten by the next: the metrics and
    the plot data keep none of them."""

    outputs: OutputRecording
    rows: int
    names: dict[str, str]

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self.outputs.chunks(self.rows, self.names, reuse=True)

    def read(self, chunk: int, key: str) -> np.ndarray:
        """One tensor of one chunk, in an array of its own."""
        start = chunk * self.rows
        return self.outputs.read(self.names[key], start, min(self.rows, self.outputs.samples - start))


def _segment(expected: _Chunks, produced: _Chunks, names: list[str], segment: int) -> tuple[np.ndarray, np.ndarray]:
    """A PlotData segment (one tensor's chunk, as compare adds them) of both runs, read again."""
    chunk, tensor = divmod(segment, len(names))
    return expected.read(chunk, names[tensor]), produced.read(chunk, names[tensor])
