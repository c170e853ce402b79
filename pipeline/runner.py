"""Run a recipe: preflight (source, data), stages per plan, parity in each output's runtime, reports.

The only module that sees every layer; each layer below it knows nothing of the others.
"""

from __future__ import annotations

import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import __version__
from pipeline.artifacts import copy_atomic, gzip_size_of, sha256_of, size_of
from pipeline.data import Dataset, load_dataset
from pipeline.errors import EdgeportError, StageError
from pipeline.parity import ParityAccumulator, ParityResult, evaluate_gates
from pipeline.plan import OutputPlan, PlanNode, plan_recipe
from pipeline.recipe import LoadedRecipe
from pipeline.report import REPORT_FILES, write_reports
from pipeline.runtimes import align_names, runtime_for
from pipeline.sources import Source, load_source
from pipeline.specs import Artifact
from pipeline.stages import STAGES, StageContext

REPORTED_PACKAGES = (
    "tensorflow",
    "keras",
    "tf-keras",
    "tensorflow-model-optimization",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "ai-edge-litert",
    "numpy",
    "protobuf",
)
ARTIFACT_FILES = {"tflite": "model.tflite", "onnx": "model.onnx", "keras": "model.keras", "savedmodel": "saved_model"}
RUNTIME_NAMES = {"tflite": "litert", "onnx": "onnxruntime", "keras": "keras", "savedmodel": "savedmodel"}


@dataclass
class RunOptions:
    out_dir: Path
    only: list[str] | None = None
    trust_model: bool = False
    batch_size: int = 64


Log = Callable[[str], None]


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class _NodeResult:
    artifact: Artifact | None
    seconds: float
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Reference:
    runtime: str
    names: list[str]
    batches: list[dict[str, np.ndarray]]


def run_recipe(recipe: LoadedRecipe, options: RunOptions, log: Log = stderr_log) -> dict[str, Any]:
    """Run every selected output; return the report dict (also written to `options.out_dir`)."""
    started, clock = datetime.now(UTC), time.perf_counter()
    out_dir = options.out_dir
    _remove_stale_reports(out_dir)
    source_spec = recipe.spec.source
    log(f"edgeport {recipe.spec.name}: {recipe.path.name} → {out_dir}")
    source = load_source(recipe.source_path, source_spec.signature, source_spec.trusted or options.trust_model)
    plans = plan_recipe(recipe, source.artifact.key, options.only)
    log(
        f"  source    {source.path.name} ({source.format}, {source.artifact.flavour or source.artifact.signature}): "
        f"{', '.join(s.describe() for s in source.inputs)} → {', '.join(s.describe() for s in source.outputs)}"
    )
    datasets = _load_data(recipe, source, plans)
    evaluation = datasets["evaluation"]
    reference = _reference_outputs(source, evaluation, options.batch_size, log)
    executed: dict[str, _NodeResult] = {}
    results = []
    with tempfile.TemporaryDirectory(prefix="edgeport-") as work:
        for number, plan in enumerate(plans, start=1):
            prefix = f"  [{number}/{len(plans)}] {plan.name}"
            results.append(
                _run_output(
                    plan, source, datasets, reference, Path(work), out_dir, executed, options.batch_size, prefix, log
                )
            )
    report = _report(recipe, source, datasets, results, started, time.perf_counter() - clock)
    write_reports(report, out_dir)
    return report


def _remove_stale_reports(out_dir: Path) -> None:
    """A report from an earlier run must never pass for this run's, even if this run stops early."""
    for name in REPORT_FILES:
        (out_dir / name).unlink(missing_ok=True)


def _load_data(recipe: LoadedRecipe, source: Source, plans: list[OutputPlan]) -> dict[str, Dataset]:
    data = recipe.spec.data
    datasets = {"evaluation": load_dataset("evaluation", data.evaluation, recipe, source.inputs)}
    for section in ("calibration", "fine_tune"):
        spec = getattr(data, section)
        if spec is not None:
            datasets[section] = load_dataset(section, spec, recipe, source.inputs)
    return datasets


def _reference_outputs(source: Source, evaluation: Dataset, batch_size: int, log: Log) -> _Reference:
    clock = time.perf_counter()
    runtime = runtime_for(source.artifact)
    try:
        batches = list(runtime.predict(evaluation.batches(batch_size)))
    except Exception as error:  # a source that cannot run its own data is bad input
        raise EdgeportError(f"{source.path}: the source model failed on data.evaluation: {_one_line(error)}") from None
    labels = "with labels" if evaluation.labels is not None else "no labels"
    log(
        f"  reference {runtime.name} on {evaluation.samples} samples ({evaluation.origin}, {labels}) "
        f"{time.perf_counter() - clock:.1f} s"
    )
    return _Reference(runtime=runtime.name, names=[spec.name for spec in runtime.outputs], batches=batches)


def _run_output(
    plan: OutputPlan,
    source: Source,
    datasets: dict[str, Dataset],
    reference: _Reference,
    work: Path,
    out_dir: Path,
    executed: dict[str, _NodeResult],
    batch_size: int,
    prefix: str,
    log: Log,
) -> dict[str, Any]:
    output_dir = out_dir / plan.name
    for stale in ARTIFACT_FILES.values():  # an artifact left by an earlier run must not pass for this one
        target = output_dir / stale
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    stages, upstream, error, warnings = [], source.artifact, None, []
    for node in plan.nodes:
        reused = node.key in executed
        if not reused:
            executed[node.key] = _run_node(node, upstream, datasets, work, batch_size, f"{prefix}: {node.label}", log)
        result = executed[node.key]
        stages.append(
            {
                "kind": node.kind,
                "label": node.label,
                "seconds": round(result.seconds, 3),
                "reused": reused,
                "key": node.key,
                "warnings": result.warnings,
                "details": result.artifact.details if result.artifact else {},
            }
        )
        warnings += result.warnings
        if result.artifact is None:
            error = result.error
            break
        upstream = result.artifact
    entry: dict[str, Any] = {
        "name": plan.name,
        "status": "error",
        "format": STAGES[plan.nodes[-1].kind].gives,
        "runtime": None,
        "artifact": None,
        "sha256": None,
        "size_bytes": None,
        "gzip_bytes": None,
        "stages": stages,
        "gates_from": plan.gates_from,
        "parity": None,
        "warnings": warnings,
        "error": error,
    }
    if error is not None:
        log(f"{prefix}: error: {error}")
        return entry
    published = output_dir / ARTIFACT_FILES[upstream.kind]
    copy_atomic(upstream.path, published)
    entry.update(
        artifact=published.relative_to(out_dir).as_posix(),
        sha256=sha256_of(published),
        size_bytes=size_of(published),
        gzip_bytes=gzip_size_of(published),
        runtime=RUNTIME_NAMES[upstream.kind],
    )
    try:
        parity = _parity(upstream, reference, datasets["evaluation"], batch_size, plan.gates)
    except Exception as failure:  # a runtime that cannot run the artifact: the output is an error
        entry["error"] = f"{entry['runtime']} could not run the artifact: {_one_line(failure)}"
        log(f"{prefix}: error: {entry['error']}")
        return entry
    entry["parity"] = parity.to_dict()
    entry["status"] = "passed" if parity.passed else "failed"
    log(f"{prefix}: parity in {entry['runtime']} on {parity.samples} samples: {_verdict(parity)}")
    return entry


def _run_node(
    node: PlanNode, upstream: Artifact, datasets: dict[str, Dataset], work: Path, batch_size: int, label: str, log: Log
) -> _NodeResult:
    stage = STAGES[node.kind]()
    node_dir = work / node.key[:16]
    node_dir.mkdir(parents=True, exist_ok=True)
    calibration = datasets.get("calibration")
    context = StageContext(
        work_dir=node_dir,
        key=node.key,
        log=lambda message: log(f"{label}: {message}"),
        calibration=(lambda: calibration.batches(batch_size)) if calibration is not None else None,
    )
    log(f"{label} ...")
    clock = time.perf_counter()
    try:
        artifact = stage.run(upstream, node.options, context)
    except StageError as error:
        return _NodeResult(None, time.perf_counter() - clock, str(error))
    except Exception as error:  # a bug or an unexpected library failure: this output errors, others go on
        return _NodeResult(None, time.perf_counter() - clock, f"{type(error).__name__}: {_one_line(error)}")
    seconds = time.perf_counter() - clock
    log(
        f"{label} done in {seconds:.1f} s"
        + (f" ({len(artifact.warnings)} converter warnings)" if artifact.warnings else "")
    )
    return _NodeResult(artifact, seconds, warnings=list(artifact.warnings))


def _parity(
    artifact: Artifact, reference: _Reference, evaluation: Dataset, batch_size: int, gates: dict[str, float]
) -> ParityResult:
    runtime = runtime_for(artifact)
    mapping = align_names(reference.names, [spec.name for spec in runtime.outputs], f"{runtime.name} outputs")
    accumulator = ParityAccumulator(f"source ({reference.runtime})", reference.names)
    candidates = runtime.predict(evaluation.batches(batch_size))
    for expected, produced, labels in zip(
        reference.batches, candidates, evaluation.label_batches(batch_size), strict=True
    ):
        accumulator.update(expected, {name: produced[mapping[name]] for name in reference.names}, labels)
    result = accumulator.result()
    result.gates = evaluate_gates(result.metrics, gates)
    return result


def _verdict(parity: ParityResult) -> str:
    if parity.nonfinite:
        return f"FAILED ({parity.nonfinite} non-finite values)"
    failed = [gate for gate in parity.gates if not gate.passed]
    if not failed:
        return "passed (" + ", ".join(f"{g.metric} {g.value:.4g} {g.op} {g.threshold:g}" for g in parity.gates) + ")"
    return (
        "FAILED ("
        + ", ".join(
            f"{g.metric} {'n/a' if g.value is None else f'{g.value:.4g}'} not {g.op} {g.threshold:g}" for g in failed
        )
        + ")"
    )


def exit_code_of(outputs: list[dict[str, Any]]) -> int:
    """3 when any output could not be produced or run, else 1 when any gate failed, else 0."""
    statuses = {output["status"] for output in outputs}
    return 3 if "error" in statuses else 1 if "failed" in statuses else 0


def _report(
    recipe: LoadedRecipe,
    source: Source,
    datasets: dict[str, Dataset],
    outputs: list[dict[str, Any]],
    started: datetime,
    seconds: float,
) -> dict[str, Any]:
    code = exit_code_of(outputs)
    return {
        "schema_version": 1,
        "tool": {"name": "edgeport", "version": __version__},
        "recipe": {"name": recipe.spec.name, "path": str(recipe.path)},
        "passed": code == 0,
        "exit_code": code,
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "source": source.describe(),
        "environment": environment(),
        "data": {section: dataset.describe() for section, dataset in datasets.items()},
        "outputs": outputs,
    }


def environment() -> dict[str, Any]:
    packages = {}
    for name in REPORTED_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": packages}


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:500] if text else type(error).__name__
