"""Run a recipe: preflight (source, data), stages per plan, parity in each output's runtime, reports.

The only module that sees every layer; each layer below it knows nothing of the others.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import key_of
from pipeline.cache import Cache, default_cache_dir
from pipeline.cpu import cpu_info, describe_cpu
from pipeline.data import Dataset, load_dataset
from pipeline.diagnose import graph_optimization_finding
from pipeline.errors import EdgeportError, StageError, first_line
from pipeline.evaluate import Predictions, compare, predict_dataset
from pipeline.isolation import StageRequest, StageWorker, save_dataset
from pipeline.latency import feed_for, measure_latency
from pipeline.output_entry import clear_published, empty_entry, latency_text, publish, verdict
from pipeline.parity import GateResult, ParityResult, gate_result
from pipeline.plan import OutputPlan, PlanNode, check_tensor_gates, plan_recipe
from pipeline.recipe import LoadedRecipe, RuntimeSpec
from pipeline.report import REPORT_FILES, write_reports
from pipeline.report.document import build_report
from pipeline.runtimes import runtime_for
from pipeline.source_handle import SourceHandle
from pipeline.specs import Artifact, TensorSpec
from pipeline.stages import STAGES, StageContext

CACHEABLE_KINDS = {"tflite", "onnx"}


@dataclass
class RunOptions:
    out_dir: Path
    only: list[str] | None = None
    trust_model: bool = False
    batch_size: int = 64
    baseline: Path | None = None  # an earlier report.json: regressions against it fail the run
    cache_dir: Path | None = None  # default: pipeline.cache.default_cache_dir()
    use_cache: bool = True
    isolate: bool = True  # conversions from the source run in a worker process (crash isolation)


Log = Callable[[str], None]


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class _NodeResult:
    artifact: Artifact | None
    seconds: float
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    cache: str = "off"  # off | hit | stored | not cacheable
    built_seconds: float | None = None  # on a cache hit: what building it cost the first time


def run_recipe(recipe: LoadedRecipe, options: RunOptions, log: Log = stderr_log) -> dict[str, Any]:
    """Run every selected output; return the report dict (also written to `options.out_dir`)."""
    started, clock = datetime.now(UTC), time.perf_counter()
    _remove_stale_reports(options.out_dir)
    log(f"edgeport {recipe.spec.name}: {recipe.path.name} → {options.out_dir}")
    if options.baseline is not None:  # a bad baseline is bad input: found before any work, not after
        from pipeline.baseline import read_baseline

        read_baseline(options.baseline)
    cache = Cache(options.cache_dir or default_cache_dir(), options.use_cache)
    source = SourceHandle(recipe, recipe.spec.source.trusted or options.trust_model, cache)
    worker = StageWorker() if options.isolate else None
    if worker is not None and not source.described_from_cache:
        worker.start()  # a cold run: the worker's TensorFlow import overlaps this process's own
    try:
        described, datasets, results = _run_outputs(recipe, source, cache, worker, options, log)
    finally:
        if worker is not None:
            worker.close()
    report = _report(recipe, described, datasets, results, started, time.perf_counter() - clock)
    report["cache"] = {
        "enabled": cache.enabled,
        "dir": str(cache.root) if cache.enabled else None,
        "source_loaded": source.loaded,
        "notes": cache.notes,
    }
    if options.baseline is not None:
        from pipeline.baseline import apply_baseline

        apply_baseline(report, options.baseline)
    write_reports(report, options.out_dir)
    return report


def _run_outputs(
    recipe: LoadedRecipe, source: SourceHandle, cache: Cache, worker: StageWorker | None, options: RunOptions, log: Log
) -> tuple[dict[str, Any], dict[str, Dataset], list[dict[str, Any]]]:
    """Preflight (source tensors, data, plan), then every output in turn."""
    described = source.describe()
    log(
        f"  source    {source.path.name} ({described['format']}, {described.get('flavour') or source.signature}): "
        f"{', '.join(s.describe() for s in source.inputs)} → {', '.join(s.describe() for s in source.outputs)}"
    )
    log(f"  cpu       {describe_cpu(cpu_info())}")
    datasets = _load_data(recipe, source.inputs)
    digests = {section: dataset.digest() for section, dataset in datasets.items()}
    plans = plan_recipe(recipe, source.key, options.only, digests)
    check_tensor_gates(recipe, plans, [spec.name for spec in source.outputs])
    with tempfile.TemporaryDirectory(prefix="edgeport-") as work:
        run = _RecipeRun(recipe, source, datasets, Path(work), options, cache, log, plans, worker)
        results = [run.output(plan, f"  [{n}/{len(plans)}] {plan.name}") for n, plan in enumerate(plans, 1)]
    return described, datasets, results


def _remove_stale_reports(out_dir: Path) -> None:
    """A report from an earlier run must never pass for this run's, even if this run stops early."""
    for name in REPORT_FILES:
        (out_dir / name).unlink(missing_ok=True)


def _load_data(recipe: LoadedRecipe, inputs: list[TensorSpec]) -> dict[str, Dataset]:
    data = recipe.spec.data
    datasets = {"evaluation": load_dataset("evaluation", data.evaluation, recipe.base_dir, inputs)}
    for section in ("calibration", "fine_tune"):
        spec = getattr(data, section)
        if spec is not None:
            datasets[section] = load_dataset(section, spec, recipe.base_dir, inputs)
    return datasets


class _RecipeRun:
    """State shared by the outputs of one run: the source's reference outputs and the stages done."""

    def __init__(
        self,
        recipe: LoadedRecipe,
        source: SourceHandle,
        datasets: dict[str, Dataset],
        work: Path,
        options: RunOptions,
        cache: Cache,
        log: Log,
        plans: list[OutputPlan],
        worker: StageWorker | None,
    ):
        self.source, self.datasets, self.work, self.options, self.log = source, datasets, work, options, log
        self.cache = cache
        self.recipe = recipe
        self.worker = worker
        self.data_files: dict[str, str] | None = None
        if self.worker is not None and any(
            self._isolated(plan.nodes[0]) and not self._cached(plan.nodes[0]) for plan in plans
        ):
            self.worker.start()  # its TensorFlow import overlaps the reference predictions below
        self.source_latency: dict[int, dict[str, Any]] = {}
        self.fail_on_warnings = recipe.spec.fail_on_converter_warnings
        self.evaluation = datasets["evaluation"]
        self.executed: dict[str, _NodeResult] = {}
        self.reference = self._source_predictions()

    def _source_predictions(self) -> Predictions:
        """The source model's outputs on the evaluation data: from the cache, else computed and stored."""
        clock = time.perf_counter()
        batch = self.options.batch_size
        key = key_of("reference", self.source.key, self.evaluation.digest())
        cached = self.cache.get_arrays(key)
        if cached is not None:
            batches = [
                {name: array[i : i + batch] for name, array in cached.items()}
                for i in range(0, self.evaluation.samples, batch)
            ]
            predictions = Predictions("source (cached)", "cache", list(cached), batches)
        else:
            try:
                predictions = self.predictions(self.source.artifact, "source")
            except EdgeportError:
                raise
            except Exception as error:  # a source that cannot run its own data is bad input
                raise EdgeportError(
                    f"{self.source.path}: the source model failed on data.evaluation: {first_line(error)}"
                ) from None
            self.cache.put_arrays(
                key, {name: np.concatenate([b[name] for b in predictions.batches]) for name in predictions.names}
            )
        labels = "with labels" if self.evaluation.labels is not None else "no labels"
        self.log(
            f"  reference {predictions.label} on {self.evaluation.samples} samples "
            f"({self.evaluation.origin}, {labels}) {time.perf_counter() - clock:.1f} s"
        )
        return predictions

    def predictions(
        self, artifact: Artifact, label: str, threads: int | None = None, setting: RuntimeSetting | None = None
    ) -> Predictions:
        setting = setting or RuntimeSetting()
        return predict_dataset(
            artifact,
            label,
            self.evaluation,
            self.options.batch_size,
            threads,
            delegate=setting.delegate,
            graph_optimization=setting.graph_optimization,
        )

    def output(self, plan: OutputPlan, prefix: str) -> dict[str, Any]:
        entry = empty_entry(plan)
        clear_published(self.options.out_dir / plan.name)
        chain = self._run_chain(plan, prefix, entry)
        if entry["error"] is not None:
            self.log(f"{prefix}: error: {entry['error']}")
            return entry
        final = chain[-1]
        entry.update(publish(final, self.options.out_dir, plan.name))
        try:
            parity, comparisons = self._parities(plan, chain)
        except Exception as failure:  # a runtime that cannot run the artifact: the output is an error
            entry["error"] = f"{entry['runtime']} could not run the artifact: {first_line(failure)}"
            self.log(f"{prefix}: error: {entry['error']}")
            return entry
        entry.update(parity=parity.to_dict(), comparisons=[c.to_dict() for c in comparisons])
        entry["findings"] = self._findings(final, comparisons)
        if plan.benchmark is not None:
            entry["latency"] = self._latency(plan, final)
            self.log(f"{prefix}: latency {latency_text(entry['latency'])}")
        passed = parity.passed and all(c.passed for c in comparisons)
        entry["status"] = "passed" if passed else "failed"
        self.log(f"{prefix}: parity in {entry['runtime']} on {parity.samples} samples: {verdict(parity)}")
        for extra in comparisons:
            if extra.gates:
                self.log(f"{prefix}: {extra.candidate}: {verdict(extra.result)}")
        for finding in entry["findings"]:
            self.log(f"{prefix}: finding: {finding['message']} Fix: {finding['fix']}.")
        return entry

    def _parities(self, plan: OutputPlan, chain: list[Artifact]) -> tuple[ParityResult, list[Comparison]]:
        """The gated parity against the source, and the comparisons that explain it."""
        final, batch, threads = chain[-1], self.options.batch_size, plan.runtime.threads
        main, other, other_gated = runtime_settings(plan.runtime, final)
        candidate = self.predictions(final, plan.name, threads, main)
        parity = compare(self.reference, candidate, self.evaluation, batch)
        parity.gates = gate_result(parity, plan.gates, plan.tensor_gates)
        comparisons: list[Comparison] = []
        if other is not None:
            # The same file run the other way: LiteRT's reference kernels (LiteRT has had bugs where XNNPACK
            # disagrees), or onnxruntime without graph optimizations (fused int8 kernels can saturate on some CPUs).
            plain = self.predictions(final, plan.name, threads, other)
            without = compare(self.reference, plain, self.evaluation, batch)
            if other_gated:
                without.gates = gate_result(without, plan.gates, plan.tensor_gates, against=plain.label)
            comparisons.append(Comparison(without, "runtime_setting", {"candidate": other.role, "reference": "source"}))
            comparisons.append(_setting_gap(main, other, candidate, plain, self.evaluation, batch))
        # Stages before the conversion change the model on purpose (pruning, QAT): also compare with
        # the last model before the final stage, so a reader sees which step lost what.
        before = [(i, a) for i, a in enumerate(chain[:-1]) if a.kind in {"keras", "savedmodel"}]
        if before:
            index, artifact = before[-1]
            upstream = self.predictions(artifact, f"stages[{index}] {plan.nodes[index].label}")
            roles = {"reference": "model before the final stage", "candidate": main.role or "output"}
            comparisons.append(
                Comparison(compare(upstream, candidate, self.evaluation, batch), "before_final_stage", roles)
            )
        return parity, comparisons

    def _findings(self, final: Artifact, comparisons: list[Comparison]) -> list[dict[str, Any]]:
        """What the comparisons reveal beyond the gates: for quantized ONNX, kernels that break the QDQ arithmetic."""
        by_kind = {c.kind: c for c in comparisons}
        if final.kind != "onnx" or "setting_gap" not in by_kind or "runtime_setting" not in by_kind:
            return []
        finding = graph_optimization_finding(
            by_kind["runtime_setting"].result, by_kind["setting_gap"].result, cpu_info()
        )
        return [finding] if finding else []

    def _isolated(self, node: PlanNode) -> bool:
        """Conversions run in the worker (from the source, or from the file an earlier stage saved); an
        accuracy-aware conversion stays here, since it asks this process for parity verdicts."""
        fallback = getattr(node.options, "fallback", "none") == "auto"
        return self.worker is not None and STAGES[node.kind].gives in CACHEABLE_KINDS and not fallback

    def _acceptor(self, plan: OutputPlan) -> Callable[[Path], bool]:
        """For `fallback: auto`: does a candidate file pass this output's gates, as the final file would?"""

        def accept(path: Path) -> bool:
            candidate = Artifact(kind="tflite", path=path, key=path.stem)
            main, _, _ = runtime_settings(plan.runtime, candidate)
            produced = self.predictions(candidate, plan.name, plan.runtime.threads, main)
            parity = compare(self.reference, produced, self.evaluation, self.options.batch_size)
            parity.gates = gate_result(parity, plan.gates, plan.tensor_gates)
            return parity.passed

        return accept

    def _cached(self, node: PlanNode) -> bool:
        return self.cache.enabled and (self.cache.root / "stages" / node.key / "entry.json").exists()

    def _in_worker(self, node: PlanNode, label: str, upstream: Artifact | None) -> Artifact:
        assert self.worker is not None
        if self.data_files is None:
            self.data_files = {
                section: save_dataset(dataset, self.work / f"{section}.npz")
                for section, dataset in self.datasets.items()
                if section != "evaluation"
            }
        request = StageRequest(
            kind=node.kind,
            options=node.options.model_dump(mode="json"),
            source_spec=self.recipe.spec.source.model_dump(mode="json"),
            base_dir=str(self.recipe.base_dir),
            trusted=self.source.trusted,
            work_dir=str(self.work / node.key[:16]),
            key=node.key,
            data_files=self.data_files,
            batch_size=self.options.batch_size,
            upstream=None if upstream is None else _saved_fields(upstream),
        )
        (self.work / node.key[:16]).mkdir(parents=True, exist_ok=True)
        return self.worker.run(request, lambda message: self.log(f"{label}: {message}"))

    def _latency(self, plan: OutputPlan, artifact: Artifact) -> dict[str, Any]:
        """Median/p90 in the output's runtime, beside the source model's in Keras on the same batch."""
        spec = plan.benchmark
        assert spec is not None
        batch = next(self.evaluation.batches(spec.batch))
        main, _, _ = runtime_settings(plan.runtime, artifact)
        runtime = runtime_for(
            artifact, threads=spec.threads, delegate=main.delegate, graph_optimization=main.graph_optimization
        )
        measured = measure_latency(runtime, feed_for(runtime, batch), spec.runs, spec.warmup)
        size = len(next(iter(batch.values())))
        if size not in self.source_latency:
            source_runtime = runtime_for(self.source.artifact)
            self.source_latency[size] = {
                "runtime": source_runtime.name,
                **measure_latency(source_runtime, feed_for(source_runtime, batch), spec.runs, spec.warmup),
            }
        source = self.source_latency[size]
        speedup = source["median_ms"] / measured["median_ms"] if measured["median_ms"] else None
        settings = {"runs": spec.runs, "warmup": spec.warmup, "batch": size, "threads": spec.threads}
        return {
            "runtime": runtime.name,
            **measured,
            **settings,
            "source": source,
            "speedup": None if speedup is None else round(speedup, 2),
        }

    def _run_chain(self, plan: OutputPlan, prefix: str, entry: dict[str, Any]) -> list[Artifact]:
        self.plan = plan  # the stages of this chain run for it (an accuracy-aware stage asks its gates)
        chain: list[Artifact] = []
        for node in plan.nodes:
            reused = node.key in self.executed
            if not reused:
                upstream = chain[-1] if chain else None
                self.executed[node.key] = self._cached_or_run(node, upstream, f"{prefix}: {node.label}")
            result = self.executed[node.key]
            entry["stages"].append(_stage_entry(node, result, reused))
            entry["warnings"] += result.warnings
            if result.artifact is None:
                entry["error"] = result.error
                break
            chain.append(result.artifact)
        return chain

    def _cached_or_run(self, node: PlanNode, upstream: Artifact | None, label: str) -> _NodeResult:
        """Files that runtimes read as they are (.tflite, .onnx) are cached; in-memory Keras models are rebuilt."""
        cacheable = STAGES[node.kind].gives in CACHEABLE_KINDS
        hit = self.cache.get_artifact(node.key) if cacheable else None
        if hit is not None:
            self.log(f"{label}: cached (built in {hit.seconds:.1f} s)")
            result = _NodeResult(
                hit.artifact, 0.0, warnings=list(hit.artifact.warnings), cache="hit", built_seconds=hit.seconds
            )
        else:
            result = self._run_node(node, upstream, label)
            if result.artifact is not None and cacheable and self.cache.enabled:
                result.artifact = self.cache.put_artifact(node.key, result.artifact, result.seconds)
                result.cache = "stored"
            elif self.cache.enabled:
                result.cache = "not cacheable" if not cacheable else "off"
        if result.artifact is not None and result.warnings and self.fail_on_warnings:
            result.error = f"converter warnings (fail_on_converter_warnings is set): {result.warnings[0]}"
            result.artifact = None
        return result

    def _run_node(self, node: PlanNode, upstream: Artifact | None, label: str) -> _NodeResult:
        node_dir = self.work / node.key[:16]
        node_dir.mkdir(parents=True, exist_ok=True)
        context = StageContext(
            work_dir=node_dir,
            key=node.key,
            log=lambda message: self.log(f"{label}: {message}"),
            calibration=self._batches_of("calibration"),
            fine_tune=self.datasets.get("fine_tune"),
            accept=self._acceptor(self.plan)
            if node is self.plan.nodes[-1] and getattr(node.options, "fallback", "none") == "auto"
            else None,
        )
        self.log(f"{label} ...")
        clock = time.perf_counter()
        try:
            if self._isolated(node) and (upstream is None or _saved_fields(upstream) is not None):
                artifact = self._in_worker(node, label, upstream)
            else:
                artifact = STAGES[node.kind]().run(upstream or self.source.artifact, node.options, context)
        except StageError as error:
            return _NodeResult(None, time.perf_counter() - clock, str(error))
        except Exception as error:  # a bug or an unexpected library failure: this output errors, others go on
            return _NodeResult(None, time.perf_counter() - clock, f"{type(error).__name__}: {first_line(error)}")
        seconds = time.perf_counter() - clock
        noted = f" ({len(artifact.warnings)} converter warnings)" if artifact.warnings else ""
        self.log(f"{label} done in {seconds:.1f} s{noted}")
        return _NodeResult(artifact, seconds, warnings=list(artifact.warnings))

    def _batches_of(self, section: str) -> Callable[[], Iterator[dict[str, np.ndarray]]] | None:
        dataset = self.datasets.get(section)
        if dataset is None:
            return None
        return lambda: dataset.batches(self.options.batch_size)


@dataclass(frozen=True)
class RuntimeSetting:
    """One way to run a file in its runtime: LiteRT's delegate, or onnxruntime's graph optimization level."""

    delegate: str = "xnnpack"
    graph_optimization: str = "all"
    role: str = ""  # how reports name this way of running: "xnnpack", "reference kernels", "optimized", ...


_QUANTIZED_ONNX_OPS = {
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "MatMulInteger",
    "ConvInteger",
}


def runtime_settings(runtime: RuntimeSpec, artifact: Artifact) -> tuple[RuntimeSetting, RuntimeSetting | None, bool]:
    """The setting the output is gated in, the other setting it also runs in (or None), and whether that one is
    gated too. Quantized ONNX files always run both ways: fused int8 kernels differ between CPUs."""
    if artifact.kind == "tflite":
        xnnpack, plain = RuntimeSetting("xnnpack", role="xnnpack"), RuntimeSetting("none", role="reference kernels")
        if runtime.delegate == "both":
            return xnnpack, plain, True
        return (plain if runtime.delegate == "none" else xnnpack), None, False
    if artifact.kind == "onnx":
        optimized = RuntimeSetting(graph_optimization="all", role="optimized")
        unoptimized = RuntimeSetting(graph_optimization="disabled", role="unoptimized")
        if runtime.graph_optimization == "both":
            return optimized, unoptimized, True
        quantized = bool(_QUANTIZED_ONNX_OPS & set((artifact.details or {}).get("ops") or {}))
        if runtime.graph_optimization == "disabled":
            return unoptimized, (optimized if quantized else None), False
        return optimized, (unoptimized if quantized else None), False
    return RuntimeSetting(), None, False


@dataclass
class Comparison:
    """A parity result that explains an output's verdict, with what it compares in words a report can show."""

    result: ParityResult
    kind: str  # runtime_setting | setting_gap | before_final_stage
    roles: dict[str, str]

    @property
    def passed(self) -> bool:
        return self.result.passed

    @property
    def gates(self) -> list[GateResult]:
        return self.result.gates

    @property
    def candidate(self) -> str:
        return self.result.candidate

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "roles": self.roles, **self.result.to_dict()}


def _setting_gap(
    main: RuntimeSetting,
    other: RuntimeSetting,
    main_run: Predictions,
    other_run: Predictions,
    dataset: Dataset,
    batch: int,
) -> Comparison:
    """The two ways of running one file against each other. For ONNX the unoptimized run (the QDQ graph's own
    arithmetic) is the reference; for LiteRT the gated run is, as before."""
    if main.graph_optimization == "disabled" or other.graph_optimization == "disabled":
        (ref_setting, ref), (cand_setting, cand) = sorted(
            [(main, main_run), (other, other_run)], key=lambda pair: pair[0].graph_optimization != "disabled"
        )
    else:
        (ref_setting, ref), (cand_setting, cand) = (main, main_run), (other, other_run)
    roles = {"reference": ref_setting.role, "candidate": cand_setting.role}
    return Comparison(compare(ref, cand, dataset, batch), "setting_gap", roles)


def _saved_fields(artifact: Artifact) -> dict[str, Any] | None:
    """How a worker can load a Keras model an earlier stage saved; None when it lives only in memory."""
    if artifact.kind != "keras" or not artifact.path.is_file() or artifact.path.suffix not in {".keras", ".h5"}:
        return None
    fields = {"path": str(artifact.path), "key": artifact.key, "flavour": artifact.flavour}
    return {**fields, "details": artifact.details}


def _stage_entry(node: PlanNode, result: _NodeResult, reused: bool) -> dict[str, Any]:
    return {
        "kind": node.kind,
        "label": node.label,
        "seconds": 0.0 if reused else round(result.seconds, 3),
        "reused": reused,
        "cache": result.cache,
        "built_seconds": None if result.built_seconds is None else round(result.built_seconds, 3),
        "key": node.key,
        "warnings": result.warnings,
        "details": result.artifact.details if result.artifact else {},
    }


def _report(
    recipe: LoadedRecipe,
    source: dict[str, Any],
    datasets: dict[str, Dataset],
    outputs: list[dict[str, Any]],
    started: datetime,
    seconds: float,
) -> dict[str, Any]:
    return build_report(
        {"name": recipe.spec.name, "path": str(recipe.path)},
        source,
        {section: dataset.describe() for section, dataset in datasets.items()},
        outputs,
        started,
        seconds,
    )
