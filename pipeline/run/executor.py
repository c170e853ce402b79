"""Run an output's chain of stage nodes: from the cache, in the conversion worker, or in this process.

Nodes two outputs share run once. Knows stages, the cache and the worker; nothing of parity or reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import key_of
from pipeline.core.artifact import Artifact
from pipeline.data import Dataset
from pipeline.errors import StageError, first_line
from pipeline.recipe import LoadedRecipe
from pipeline.run.cache import Cache
from pipeline.run.plan import OutputPlan, PlanNode
from pipeline.run.worker import StageRequest, StageWorker, load_saved_keras, save_dataset
from pipeline.sources import SourceHandle, import_source_modules
from pipeline.stages import STAGES, StageContext

Log = Callable[[str], None]
Acceptor = Callable[[Path], bool]


@dataclass
class NodeResult:
    key: str  # the cache key it was built or found under
    artifact: Artifact | None
    seconds: float
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    cache: str = "off"  # off | hit | stored | not stored (the cache could not be written) | not cacheable
    built_seconds: float | None = None  # on a cache hit: what building it cost the first time


@dataclass
class ChainResult:
    """The artifacts of a chain up to its first failure, and one report entry per stage."""

    artifacts: list[Artifact]
    stages: list[dict[str, Any]]
    warnings: list[str]
    error: str | None = None


@dataclass(frozen=True)
class ExecutorSettings:
    """What every executor of one run shares, its lanes' and the rebuild's too: the recipe, its source and data,
    and how stages run. `run_settings` (runner) builds it once; each executor adds its folder, cache and worker."""

    recipe: LoadedRecipe
    source: SourceHandle
    datasets: dict[str, Dataset]
    log: Log
    batch_size: int
    fail_on_warnings: bool
    stage_timeout: float  # seconds a stage may run in the worker before the worker is killed


class ChainExecutor:
    """Runs the nodes of every output's chain once, keeping their results for the outputs that share them."""

    def __init__(self, settings: ExecutorSettings, work: Path, cache: Cache, worker: StageWorker | None) -> None:
        self.settings, self.work, self.cache, self.worker = settings, work, cache, worker
        self.executed: dict[str, NodeResult] = {}
        self.data_files: dict[str, str] | None = None

    def warm_up(self, plans: list[OutputPlan]) -> None:
        """Start the worker now if a conversion will need it, so its TensorFlow import overlaps other work."""
        if self.worker is not None and any(
            self._isolated(plan.nodes[0]) and not self._cached(plan.nodes[0]) for plan in plans
        ):
            self.worker.start()

    def run_chain(self, plan: OutputPlan, prefix: str, accept: Acceptor | None) -> ChainResult:
        """`accept` judges candidate files for a last stage that needs parity verdicts (int8 fallback)."""
        chain = ChainResult([], [], [])
        for node in plan.nodes:
            reused = node.key in self.executed
            if not reused:
                upstream = chain.artifacts[-1] if chain.artifacts else None
                verdicts = accept if node is plan.nodes[-1] and STAGES[node.kind].needs_verdicts(node.options) else None
                keyed = with_upstream_weights(node, upstream)
                self.executed[node.key] = self._cached_or_run(keyed, upstream, f"{prefix}: {node.label}", verdicts)
            result = self.executed[node.key]
            chain.stages.append(_stage_entry(node, result, reused))
            chain.warnings += result.warnings
            if result.artifact is None:
                chain.error = result.error
                break
            chain.artifacts.append(result.artifact)
        return chain

    def _isolated(self, node: PlanNode) -> bool:
        stage = STAGES[node.kind]
        return self.worker is not None and stage.isolatable and not stage.needs_verdicts(node.options)

    def _cached(self, node: PlanNode) -> bool:
        return self.cache.enabled and (self.cache.root / "stages" / node.key / "entry.json").exists()

    def _cached_or_run(
        self, node: PlanNode, upstream: Artifact | None, label: str, accept: Acceptor | None
    ) -> NodeResult:
        """Files that runtimes read as they are (.tflite, .onnx) are cached; in-memory Keras models are rebuilt."""
        cacheable = STAGES[node.kind].cacheable
        hit = self.cache.get_artifact(node.key) if cacheable else None
        if hit is not None:
            self.settings.log(f"{label}: cached (built in {hit.seconds:.1f} s)")
            if hit.artifact.kind == "keras":  # a trained model: later stages and comparisons need it loaded
                source = self.settings.source
                import_source_modules(source.spec, source.base_dir)  # its custom classes, if any
                hit.artifact = load_saved_keras(hit.artifact, source.trusted)
            warnings = list(hit.artifact.warnings)
            result = NodeResult(node.key, hit.artifact, 0.0, warnings=warnings, cache="hit", built_seconds=hit.seconds)
        else:
            result = self._run_node(node, upstream, label, accept)
            if result.artifact is not None and cacheable and self.cache.enabled:
                result.artifact = self.cache.put_artifact(node.key, result.artifact, result.seconds)
                result.cache = "stored" if self.cache.writable else "not stored"
            elif self.cache.enabled:
                result.cache = "not cacheable" if not cacheable else "off"
        if result.artifact is not None and result.warnings and self.settings.fail_on_warnings:
            result.error = f"converter warnings (fail_on_converter_warnings is set): {result.warnings[0]}"
            result.artifact = None
        return result

    def _run_node(self, node: PlanNode, upstream: Artifact | None, label: str, accept: Acceptor | None) -> NodeResult:
        node_dir = self.work / node.key[:16]
        node_dir.mkdir(parents=True, exist_ok=True)
        context = StageContext(
            work_dir=node_dir,
            key=node.key,
            log=lambda message: self.settings.log(f"{label}: {message}"),
            calibration=_batches_of(self.settings.datasets.get("calibration"), self.settings.batch_size),
            fine_tune=self.settings.datasets.get("fine_tune"),
            accept=accept,
            sample_shapes=self.settings.datasets["evaluation"].sample_shapes(),
        )
        self.settings.log(f"{label} ...")
        clock = time.perf_counter()
        try:
            if self._isolated(node) and (upstream is None or saved_fields(upstream) is not None):
                artifact = self._in_worker(node, label, upstream)
            else:
                artifact = STAGES[node.kind]().run(upstream or self.settings.source.artifact, node.options, context)
        except StageError as error:
            return NodeResult(node.key, None, time.perf_counter() - clock, str(error))
        except Exception as error:  # a bug or an unexpected library failure: this output errors, others go on
            return NodeResult(
                node.key, None, time.perf_counter() - clock, f"{type(error).__name__}: {first_line(error)}"
            )
        seconds = time.perf_counter() - clock
        noted = f" ({len(artifact.warnings)} converter warnings)" if artifact.warnings else ""
        self.settings.log(f"{label} done in {seconds:.1f} s{noted}")
        return NodeResult(node.key, artifact, seconds, warnings=list(artifact.warnings))

    def _in_worker(self, node: PlanNode, label: str, upstream: Artifact | None) -> Artifact:
        assert self.worker is not None
        if self.data_files is None:
            self.data_files = {
                section: save_dataset(dataset, self.work / f"{section}.npz")
                for section, dataset in self.settings.datasets.items()
                if section != "evaluation"
            }
        request = _worker_request(self, node, upstream)
        (self.work / node.key[:16]).mkdir(parents=True, exist_ok=True)
        log, timeout = self.settings.log, self.settings.stage_timeout
        return self.worker.run(request, lambda message: log(f"{label}: {message}"), timeout)


def _batches_of(dataset: Dataset | None, size: int) -> Callable[[], Iterator[dict[str, np.ndarray]]] | None:
    return None if dataset is None else lambda: dataset.batches(size)


def _worker_request(executor: ChainExecutor, node: PlanNode, upstream: Artifact | None) -> StageRequest:
    """What the worker needs to run a node: all as files and JSON, since it shares no memory with us."""
    return StageRequest(
        kind=node.kind,
        options=node.options.model_dump(mode="json"),
        source_spec=executor.settings.recipe.spec.source.model_dump(mode="json"),
        base_dir=str(executor.settings.recipe.base_dir),
        trusted=executor.settings.source.trusted,
        work_dir=str(executor.work / node.key[:16]),
        key=node.key,
        data_files=executor.data_files or {},
        batch_size=executor.settings.batch_size,
        upstream=None if upstream is None else saved_fields(upstream),
        sample_shapes=executor.settings.datasets["evaluation"].sample_shapes(),
    )


def with_upstream_weights(node: PlanNode, upstream: Artifact | None) -> PlanNode:
    """After a training stage, a node's key also covers the weights that stage trained: the cache can then never
    pair a conversion with another training run's model, whatever the options say."""
    digest = (upstream.details or {}).get("weights_sha256") if upstream is not None else None
    if digest is None:
        return node
    return replace(node, key=key_of(node.key, digest))


def saved_fields(artifact: Artifact) -> dict[str, Any] | None:
    """How a worker can load a Keras model an earlier stage saved; None when it lives only in memory."""
    if artifact.kind != "keras" or not artifact.path.is_file() or artifact.path.suffix not in {".keras", ".h5"}:
        return None
    return artifact.to_json()


def _stage_entry(node: PlanNode, result: NodeResult, reused: bool) -> dict[str, Any]:
    return {
        "kind": node.kind,
        "label": node.label,
        "seconds": 0.0 if reused else round(result.seconds, 3),
        "reused": reused,
        "cache": result.cache,
        "built_seconds": None if result.built_seconds is None else round(result.built_seconds, 3),
        "key": result.key,
        "warnings": result.warnings,
        "details": result.artifact.details if result.artifact else {},
    }


def derived_executor(
    executor: ChainExecutor, work: Path, cache: Cache | None = None, worker: StageWorker | None = None
) -> ChainExecutor:
    """An executor of the same run in another work folder: a lane's (its own worker) or the rebuild's (no cache).
    The one place an executor is made from another; `run_recipe` makes the first."""
    return ChainExecutor(executor.settings, work, cache or executor.cache, worker or executor.worker)
