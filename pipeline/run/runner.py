"""Run a recipe: preflight (source, data), stages per plan, parity in each output's runtime, reports.

The only module that sees every layer; each layer below it knows nothing of the others.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from pipeline.core.artifact import Artifact
from pipeline.core.cpu import cpu_info, describe_cpu
from pipeline.core.leftovers import sweep_work_dirs, work_directory
from pipeline.core.sandbox import Roots, applied, confine, confined_here, describe_available, existing_root
from pipeline.core.tensors import TensorSpec
from pipeline.core.text import one_line
from pipeline.data import Dataset, hygiene_warnings, label_outputs, load_dataset
from pipeline.errors import ModelError, first_line
from pipeline.frameworks import console_log, import_frameworks
from pipeline.provenance import Provenance, git_state, recipe_provenance
from pipeline.recipe import LoadedRecipe
from pipeline.report import REPORT_FILES, write_reports
from pipeline.report.document import build_report, settle_verdict
from pipeline.run.cache import Cache, default_cache_dir
from pipeline.run.checker import Check, CheckerSettings, OutputChecker
from pipeline.run.executor import ChainExecutor, ExecutorSettings, derived_executor
from pipeline.run.lanes import lanes_of, run_in_lanes, why_not_in_lanes
from pipeline.run.outdir import Manifest, prepare_out_dir
from pipeline.run.plan import OutputPlan, check_tensor_gates, plan_recipe
from pipeline.run.publish import STAMPED_KINDS, clear_published, latency_text, output_provenance, publish, verdict
from pipeline.run.remote import Recorder, WorkerSource, needs_source_here
from pipeline.run.reproduce import verify_reproducible
from pipeline.run.result import OutputResult
from pipeline.run.worker import StageWorker
from pipeline.sources import SourceHandle
from pipeline.sources.section import tf1_origin
from pipeline.sources.tf1 import tf1_files
from pipeline.stages import STAGES


@dataclass
class RunOptions:
    out_dir: Path
    only: list[str] | None = None
    trust_model: bool = False
    batch_size: int = 64
    baseline: Path | None = None  # an earlier report.json: regressions against it fail the run
    cache_dir: Path | None = None  # default: pipeline.run.cache.default_cache_dir()
    use_cache: bool = True
    isolate: bool = True  # conversions from the source run in a worker process (crash isolation)
    verify_reproducible: bool = False  # build every output a second time, cache bypassed, and compare
    stage_timeout: float | None = None  # seconds; overrides the recipe's stage_timeout
    jobs: int = 1  # outputs built at once, each lane with its own conversion worker (pipeline.run.lanes)
    # Confine this process (pipeline.core.sandbox) where it loads the model itself: for a process that runs this one
    # recipe and ends (the command line's `run RECIPE`); never for a caller that goes on (a batch, a test).
    confine: bool = False


Log = Callable[[str], None]
DEFAULT_STAGE_TIMEOUT = 1800.0  # seconds: generous; a conversion of a large Keras Application takes under a minute


def stderr_log(message: str) -> None:
    console_log(one_line(message))  # a progress line is one line: a tensor name's newline must not add one


def run_recipe(recipe: LoadedRecipe, options: RunOptions, log: Log = stderr_log) -> dict[str, Any]:
    """Run every selected output; return the report dict (also written to `options.out_dir`)."""
    started, clock = datetime.now(UTC), time.perf_counter()
    selected = [name for name in recipe.spec.outputs if options.only is None or name in options.only]
    manifest = prepare_out_dir(options.out_dir, selected, _files_read(recipe))  # before any work: exit 2 here
    _remove_stale_reports(options.out_dir)
    log(f"edgeport {recipe.spec.name}: {recipe.path.name} → {options.out_dir}")
    if options.baseline is not None:  # a bad baseline is bad input: found before any work, not after
        from pipeline.run.baseline import read_baseline

        read_baseline(options.baseline)
    cache = Cache(options.cache_dir or default_cache_dir(), options.use_cache)
    source = SourceHandle(recipe, recipe.spec.source.trusted or options.trust_model, cache)
    _sweep_work_dirs(log)
    # The work folder exists before the worker: it is one of the roots the worker is confined to.
    with work_directory() as work:
        roots = sandbox_roots(recipe, source.trusted, cache, Path(work))
        worker = StageWorker(roots) if options.isolate else None
        remote = None
        if worker is not None and not needs_source_here(recipe, options.only):
            remote = WorkerSource(worker, recipe, source)  # the worker loads the model: this process imports no TF
            source.describer = remote.describe
        will_confine = remote is None and options.confine  # this process loads the model: confined as the worker is
        if worker is not None and (will_confine or not source.described_from_cache):
            # A cold run: the worker's TensorFlow import overlaps this process's own work. A process that confines
            # itself starts its worker first: one started after could not read its own /proc (see StageWorker.start)
            worker.start()
        pinned = None
        if will_confine:
            git = git_state(recipe.path.parent)  # git cannot run once confined: the provenance's part now
            pinned = (git[0], git[1]) if git else (None, None)
            _confine_here(recipe, options, roots, cache)
        try:
            places = _Places(manifest, Path(work), pinned)
            preflight, results = _run_outputs(recipe, source, cache, (worker, remote), options, places, log)
        finally:
            if worker is not None:
                worker.close()
    held_against = None
    if options.baseline is not None:  # its gates join each output's before any entry is written
        from pipeline.run.baseline import apply_baseline

        held_against = apply_baseline(results, options.baseline)
    data = {section: dataset.describe() for section, dataset in preflight.datasets.items()}
    recipe_fields = {"name": recipe.spec.name, "path": str(recipe.path), "version": recipe.spec.version}
    entries = [result.to_dict() for result in results]
    report = build_report(recipe_fields, preflight.described, data, entries, started, time.perf_counter() - clock)
    report["warnings"] = preflight.warnings
    report["environment"]["sandbox"] = _sandbox_text(worker, source)
    report["cache"] = {
        "enabled": cache.enabled,
        "dir": str(cache.root) if cache.enabled else None,
        "source_loaded": source.loaded,
        "notes": cache.notes,
    }
    if held_against is not None:
        report["baseline"] = held_against
    settle_verdict(report)
    write_reports(report, options.out_dir)
    return report


def _run_outputs(
    recipe: LoadedRecipe,
    source: SourceHandle,
    cache: Cache,
    workers: tuple[StageWorker | None, WorkerSource | None],
    options: RunOptions,
    places: _Places,
    log: Log,
) -> tuple[Preflight, list[OutputResult]]:
    """Preflight, then every output in turn (in lanes where `--jobs` allows), then the rebuilds asked for."""
    (worker, remote), (manifest, work, pinned) = workers, places
    preflight = _preflight(recipe, source, options, log)
    if pinned is not None:
        provenance = replace(preflight.provenance, git_commit=pinned[0], git_dirty=pinned[1])
        preflight = replace(preflight, provenance=provenance)
    plans, datasets = preflight.plans, preflight.datasets
    recorder = remote.recorder(work) if remote is not None else None
    executing, checking = run_settings(recipe, source, datasets, options, log, recorder)
    executor = ChainExecutor(executing, work, cache, worker)
    executor.warm_up(plans)  # the worker's TensorFlow import overlaps the reference predictions below
    checker = OutputChecker(checking, cache)
    preflight.warnings.extend(checker.warnings)  # the source's own (pipeline.run.determinism), once it has run
    lanes = _Lanes(work, manifest, preflight.provenance, log)
    results = lanes.run(plans, options, executor, checker)
    if options.verify_reproducible or any(plan.reproducible_gate for plan in plans):
        rebuild = derived_executor(executor, work / "rebuild", cache=Cache(None, False))
        provenance = preflight.provenance
        verify_reproducible(plans, results, rebuild, checker.acceptor, options.verify_reproducible, provenance)
    return preflight, results


def _sweep_work_dirs(log: Log) -> None:
    left = sweep_work_dirs(Path(tempfile.gettempdir()))  # from runs that were killed (SIGKILL, power loss)
    if left:
        log(f"  removed   {len(left)} work folders stopped runs left in {tempfile.gettempdir()}")


def sandbox_roots(recipe: LoadedRecipe, trusted: bool, cache: Cache, work: Path) -> Roots:
    """What a process that loads this recipe's model may read (the model's files, the cache) and write (the run's
    work folder, where the worker's stages and recordings go; the parent publishes and caches what they made).
    The recipe's folder only where modules are imported from it (a builder, `imports`, a trusted model's classes):
    a model file beside the recipe does not make the recipe's neighbours readable. The data is not among them: the
    parent hands the worker its copies in the work folder."""
    source = recipe.spec.source
    reads = [existing_root(recipe.source_path)]
    reads += [
        existing_root(recipe.resolve(named)) for named in (source.graph, source.checkpoint, source.meta_graph) if named
    ]
    reads += _tf1_files(source, recipe.base_dir)
    if source.builder is not None or source.imports or trusted:
        reads.append(recipe.base_dir)
    if cache.enabled:
        reads.append(cache.root)
    return Roots(tuple(map(str, reads)), (str(work),))


def _tf1_files(source: Any, base_dir: Path) -> list[Path]:
    """The folders of a TF1 source's files, where its `checkpoint` record names them: outside its own folder, a
    trusted source loads them (untrusted, it is refused before this); the load lists their folder for data shards."""
    origin = tf1_origin(source, base_dir)
    if origin is None:
        return []
    try:
        return sorted({file.parent for file in tf1_files(origin)})
    except ModelError:  # the load says what is wrong with them, in its own words
        return []


def _confine_here(recipe: LoadedRecipe, options: RunOptions, roots: Roots, cache: Cache) -> None:
    """Confine this process before it loads the model: it reads what the worker reads, the recipe (its provenance
    hashes it) and the data (it loads it), and writes the out folder, the cache and the work folder. Its temporary
    files (and those of workers it starts from now on) go to the work folder; TensorFlow and tf_keras are imported
    first (Keras reads ~/.keras)."""
    work = roots.writes[0]
    tempfile.tempdir = work
    os.environ["TMPDIR"] = work
    import_frameworks()
    reads = [*roots.reads, str(recipe.path), *(str(existing_root(path)) for _, path in _files_read(recipe))]
    if options.baseline is not None:
        reads.append(str(options.baseline))
    writes = [str(options.out_dir)]
    if cache.enabled:
        with contextlib.suppress(OSError):  # a cache that cannot be made is read-only: the run goes on without it
            cache.root.mkdir(parents=True, exist_ok=True)
        writes.append(str(cache.root))
    confine(reads, writes, own=work, signals=False)  # it must still stop the conversion worker it started before


def _sandbox_text(worker: StageWorker | None, source: SourceHandle) -> str:
    """What confined the processes that loaded the model, for the report's environment: this process's state where
    it loaded the model itself, else the worker's."""
    here = applied()
    if source.loaded and not source.loaded_elsewhere:
        return here.describe() if here is not None else "none (the model was loaded in this process, not confined)"
    if worker is not None and worker.sandbox is not None:
        return worker.sandbox
    if here is not None:
        return here.describe()
    return f"{describe_available()} (no model was loaded: every result came from the cache)"


class _Places(NamedTuple):
    """Where a run writes, and the git state of the recipe's folder when it was taken before confining."""

    manifest: Manifest
    work: Path
    pinned_git: tuple[str | None, bool | None] | None


@dataclass
class Preflight:
    """What a run knows before any stage: the source described, the data loaded, the plans, the data warnings, and
    the provenance every shipped file is stamped with."""

    described: dict[str, Any]
    datasets: dict[str, Dataset]
    plans: list[OutputPlan]
    warnings: list[str]
    provenance: Provenance


def _preflight(recipe: LoadedRecipe, source: SourceHandle, options: RunOptions, log: Log) -> Preflight:
    """The source's tensors, the data, the plans and their tensor gates, checked before any work."""
    described = source.describe()
    log(
        f"  source    {source.path.name} ({described['format']}, {described.get('flavour') or source.signature}): "
        f"{', '.join(s.describe() for s in source.inputs)} → {', '.join(s.describe() for s in source.outputs)}"
    )
    log(f"  cpu       {describe_cpu(cpu_info())}")
    # Every file the run ships says what made it; no clock in it, so cold runs stay byte-identical.
    provenance = recipe_provenance(recipe.path, recipe.spec.name, recipe.spec.version, described["sha256"])
    datasets = _load_data(recipe, source.inputs, source.outputs)
    digests = {section: dataset.digest() for section, dataset in datasets.items()}
    plans = plan_recipe(recipe, source.key, options.only, digests, datasets["evaluation"].sample_shapes())
    check_tensor_gates(recipe, plans, [spec.name for spec in source.outputs], [spec.name for spec in source.inputs])
    calibrated = [
        plan.name for plan in plans if any("calibration" in STAGES[n.kind].required_data(n.options) for n in plan.nodes)
    ]
    warnings = [*described.get("warnings", []), *hygiene_warnings(datasets, calibrated)]
    for warning in warnings:
        log(f"  warning   {warning}")
    return Preflight(described, datasets, plans, warnings, provenance)


def run_settings(
    recipe: LoadedRecipe,
    source: SourceHandle,
    datasets: dict[str, Dataset],
    options: RunOptions,
    log: Log,
    recorder: Recorder | None,
) -> tuple[ExecutorSettings, CheckerSettings]:
    """The executor's and the checker's settings for a run: the command line over the recipe, in one place."""
    timeout = options.stage_timeout or recipe.spec.stage_timeout or DEFAULT_STAGE_TIMEOUT
    executing = ExecutorSettings(
        recipe, source, datasets, log, options.batch_size, recipe.spec.fail_on_converter_warnings, timeout
    )
    selection = datasets.get("validation") or datasets.get("calibration")
    checking = CheckerSettings(source, datasets["evaluation"], options.batch_size, log, selection, recorder)
    return executing, checking


@dataclass
class _Lanes:
    """Runs the outputs in lanes when `--jobs` and the recipe allow, each lane's executor derived from the first."""

    work: Path
    manifest: Manifest
    provenance: Provenance  # the run's: each output's file is stamped with it, its name and stages added
    log: Log

    def run(
        self, plans: list[OutputPlan], options: RunOptions, executor: ChainExecutor, checker: OutputChecker
    ) -> list[OutputResult]:
        def output(numbered: tuple[int, OutputPlan], lane: ChainExecutor) -> OutputResult:
            number, plan = numbered
            prefix = f"  [{number}/{len(plans)}] {plan.name}"
            return _output(plan, prefix, lane, checker, (self.manifest, self.provenance), self.log)

        refusal = "--no-isolation" if executor.worker is None else why_not_in_lanes(plans)
        if refusal is None and confined_here():
            refusal = "this process loaded the model and is confined: it can start no further worker"
        lanes = lanes_of(plans)
        if options.jobs == 1 or len(lanes) == 1 or refusal is not None:
            if options.jobs > 1:
                self.log(f"  jobs      outputs one at a time: {refusal or 'they share their first stage'}")
            return [output(numbered, executor) for numbered in enumerate(plans, 1)]
        started: list[StageWorker] = []

        def make_executor(index: int) -> ChainExecutor:
            if index == 0:
                return executor
            assert executor.worker is not None
            worker = StageWorker(executor.worker.roots)
            started.append(worker)
            worker.start()
            return derived_executor(executor, self.work / f"lane{index}", worker=worker)

        self.log(f"  jobs      {min(options.jobs, len(lanes))} lanes, each with its conversion worker")
        try:
            return run_in_lanes(lanes, options.jobs, make_executor, output)
        finally:
            for worker in started:
                worker.close()


def _output(
    plan: OutputPlan,
    prefix: str,
    executor: ChainExecutor,
    checker: OutputChecker,
    shipping: tuple[Manifest, Provenance],
    log: Log,
) -> OutputResult:
    """Build one output's chain, publish its file, check it; its result, written once every gate is in."""
    manifest, provenance = shipping
    result = OutputResult.for_plan(plan)
    clear_published(manifest, plan.name)
    chain = executor.run_chain(plan, prefix, checker.acceptor(plan))
    result.stages, result.warnings, result.error = chain.stages, chain.warnings, chain.error
    last = plan.nodes[-1]
    if STAGES[last.kind].needs_verdicts(last.options) and checker.settings.selection is not None and chain.stages:
        chain.stages[-1]["details"] = {**chain.stages[-1]["details"], "selected_on": checker.settings.selection.section}
    if chain.error is None:
        _publish_and_check(plan, chain.artifacts, result, checker, (manifest, output_provenance(provenance, plan)))
    if result.error is not None:
        log(f"{prefix}: error: {result.error}")
        return result
    assert result.check is not None
    if result.latency is not None:
        log(f"{prefix}: latency {latency_text(result.latency)}")
    _log_check(result.check, f"{prefix}: ", result.published["runtime"], log)
    return result


def _publish_and_check(
    plan: OutputPlan,
    chain: list[Artifact],
    result: OutputResult,
    checker: OutputChecker,
    shipping: tuple[Manifest, Provenance],
) -> None:
    """Each step's failure makes the output an error (exit 3) with one line, and the other outputs go on."""
    manifest, provenance = shipping
    final = chain[-1]
    try:
        result.published = publish(final, manifest, plan.name, provenance)
    except Exception as failure:  # a full disk, or a converter's file the provenance stamp cannot parse
        result.error = f"could not publish the artifact to {manifest.out_dir / plan.name}: {first_line(failure)}"
        return
    if final.kind in STAMPED_KINDS:  # parity, targets and latency measure the stamped file that ships
        final = replace(final, path=manifest.out_dir / result.published["artifact"])
        chain = [*chain[:-1], final]
    try:
        result.check = checker.check(plan, chain)
    except Exception as failure:  # a runtime that cannot run the artifact: the output is an error
        result.error = f"{result.published['runtime']} could not run the artifact: {first_line(failure)}"
        return
    if plan.benchmark is not None:
        try:
            result.latency = checker.latency(plan, final)
        except Exception as failure:  # the runtime ran parity but not the timed batch: say so, keep the parity
            result.error = f"latency measurement failed: {first_line(failure)}"


def _log_check(check: Check, prefix: str, runtime: str, log: Log) -> None:
    log(f"{prefix}parity in {runtime} on {check.parity.samples} samples: {verdict(check.parity)}")
    for comparison in check.comparisons:
        if comparison.result.gates:
            log(f"{prefix}{comparison.result.candidate}: {verdict(comparison.result)}")
    for finding in check.findings:
        log(f"{prefix}finding: {finding['message']} Fix: {finding['fix']}.")


def _files_read(recipe: LoadedRecipe) -> list[tuple[str, Path]]:
    """The source and every data file of the recipe: what the run must never write over."""
    source = recipe.spec.source
    role = "source weights" if source.builder is not None else f"source {source.tf1_kind or 'model'}"
    files = [(role, recipe.source_path)]
    for section in ("calibration", "evaluation", "fine_tune", "validation"):
        spec = getattr(recipe.spec.data, section)
        for relative in (spec.npz, spec.npy, spec.labels_key if spec.npy else None) if spec is not None else ():
            if relative is not None:
                files.append((f"data.{section} file", recipe.resolve(relative)))
    return files


def _remove_stale_reports(out_dir: Path) -> None:
    """A report from an earlier run must never pass for this run's, even if this run stops early."""
    for name in REPORT_FILES:
        (out_dir / name).unlink(missing_ok=True)


def _load_data(recipe: LoadedRecipe, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> dict[str, Dataset]:
    data = recipe.spec.data
    datasets = {"evaluation": load_dataset("evaluation", data.evaluation, recipe.base_dir, inputs)}
    for section in ("calibration", "fine_tune", "validation"):
        spec = getattr(data, section)
        if spec is not None:
            datasets[section] = load_dataset(section, spec, recipe.base_dir, inputs)
    shapes = [(spec.name, tuple(spec.shape[1:])) for spec in outputs]
    for section in ("evaluation", "validation"):  # the data parity measures accuracy on
        if section in datasets:
            label_outputs(datasets[section], shapes, f"data.{section}")
    return datasets
