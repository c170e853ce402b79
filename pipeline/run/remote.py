"""The source through the conversion worker: on a run whose recipe needs no TensorFlow in this process, the worker
describes the source and records its outputs on the evaluation data, so that only one process imports TensorFlow
and loads the model (on 2 cores a second import and load cost about 1.5 s of a 7.5 s cold run).

This process still needs the model for a training stage, `fallback: auto` (parity verdicts on the selection data),
a `benchmark:` (the source's latency in Keras), and a chain that does not start with a conversion; a recipe with
any of them loads the model here, as a run without the worker always does. Knows the worker, the recipe's stage
chains, evaluate's Predictions and the SourceHandle; nothing of parity or reports.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.core.recording import OutputRecording
from pipeline.data import Dataset
from pipeline.errors import StageError
from pipeline.evaluate import ORDERS, Predictions
from pipeline.recipe import LoadedRecipe, stage_of
from pipeline.run.worker import SourceRequest, StageWorker
from pipeline.sources import SourceHandle
from pipeline.stages import STAGES

Recorder = Callable[[Dataset, int], Predictions]


def needs_source_here(recipe: LoadedRecipe, only: list[str] | None) -> bool:
    """Whether an output asks for something of the loaded source model in this process (see the module's note)."""
    for name, output in recipe.spec.outputs.items():
        if only and name not in only:
            continue
        entries = [stage_of(entry) for entry in output.stages]
        if output.benchmark is not None or not STAGES[entries[0][0]].isolatable:
            return True
        if any(STAGES[kind].needs_verdicts(options) for kind, options in entries):
            return True
    return False


class WorkerSource:
    """Asks the worker what the SourceHandle and the reference predictions would otherwise load the model for."""

    def __init__(self, worker: StageWorker, recipe: LoadedRecipe, source: SourceHandle) -> None:
        self.worker, self.source = worker, source
        self._fields = {
            "source_spec": recipe.spec.source.model_dump(mode="json"),
            "base_dir": str(recipe.base_dir),
            "trusted": source.trusted,
        }

    def describe(self) -> dict[str, Any]:
        """What SourceHandle would make of the loaded model (pipeline.sources.describe_source)."""
        return self._ask(SourceRequest(**self._fields))

    def recorder(self, work: Path) -> Recorder:
        """Records the source's outputs on a dataset in the worker, into `work`; as predict_dataset would here."""

        def record(evaluation: Dataset, batch_size: int) -> Predictions:
            directory = work / "reference"
            # Inputs as a recording too: the worker reads them a batch at a time, as it writes the outputs.
            inputs = OutputRecording.record(evaluation.batches(batch_size), list(evaluation.inputs), work / "inputs")
            request = SourceRequest(
                **self._fields, evaluation=str(inputs.directory), directory=str(directory), batch_size=batch_size
            )
            reply = self._ask(request)
            recording = OutputRecording.open(directory)
            if recording is None:
                raise StageError(
                    f"the conversion worker left no complete recording of the source's outputs in {directory}"
                )
            order = ORDERS.get(self.source.kind)
            return Predictions(reply["label"], reply["runtime"], recording, order, determinism=reply.get("determinism"))

        return record

    def _ask(self, request: SourceRequest) -> dict[str, Any]:
        reply = self.worker.source_work(request)
        self.source.loaded_elsewhere = True
        return reply
