"""Check an output's file: run it in its runtime, compare it with the source under the output's gates, and
gather the comparisons and findings that explain the verdict.

Knows runtimes (through evaluate), parity and the deployment targets; nothing of stages, the cache or reports.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import key_of
from pipeline.core.artifact import Artifact
from pipeline.core.cpu import cpu_info
from pipeline.core.sandbox import said
from pipeline.core.tensors import match_feed
from pipeline.core.toolchain import package_versions
from pipeline.data import Dataset
from pipeline.errors import EdgeportError, first_line
from pipeline.evaluate import ORDERS, Predictions, compare, predict_dataset
from pipeline.parity import GateResult, ParityResult, gate_result
from pipeline.run.cache import Cache
from pipeline.run.determinism import Determinism, check_determinism
from pipeline.run.diagnose import (
    float32_spread,
    float_noise_finding,
    float_noise_refusal,
    graph_optimization_finding,
    within_float32_noise,
)
from pipeline.run.latency import feed_for, measure_latency
from pipeline.run.plan import OutputPlan
from pipeline.runtimes import RUNTIMES, Runs, Setting, runtime_for
from pipeline.sources import SourceHandle
from pipeline.stages import STAGES
from pipeline.stages.onnx_optimizers import file_inputs, optimizer_finding
from pipeline.targets import TARGETS, TargetContext, TargetReport

Log = Callable[[str], None]
# An fp32 ONNX file whose optimized run moves this many times further from its unoptimized one than that is from the
# source has its optimizations to blame, gates or not (ResNet50V2: 1.6e-4 unoptimized, 3.1 optimized).
OPTIMIZER_BLAME = 10.0
NOISE_SAMPLES = 32  # samples the source runs twice on to measure its own float32 rounding (see float_noise_finding)


@dataclass
class Comparison:
    """A parity result that explains an output's verdict, with what it compares in words a report can show."""

    result: ParityResult
    kind: str  # runtime_setting | setting_gap | before_final_stage
    roles: dict[str, str]

    @property
    def passed(self) -> bool:
        return self.result.passed

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "roles": self.roles, **self.result.to_dict()}


@dataclass
class Check:
    """What checking an output's file found: the gated parity, the comparisons, and the findings."""

    parity: ParityResult
    comparisons: list[Comparison]
    findings: list[dict[str, Any]]
    targets: dict[str, TargetReport] = field(default_factory=dict)  # their gates are in parity.gates

    @property
    def passed(self) -> bool:
        return self.parity.passed and all(comparison.passed for comparison in self.comparisons)


@dataclass(frozen=True)
class CheckerSettings:
    """What every output of a run is checked against and with: the source, its evaluation data, the batch size.
    `run_settings` (runner) builds it for a run, `compare_artifacts` for `edgeport compare`."""

    source: SourceHandle
    evaluation: Dataset
    batch_size: int
    log: Log
    # What a stage that needs verdicts (int8 fallback) chooses on: never the evaluation data.
    selection: Dataset | None = None
    # Where the source's outputs on the evaluation data come from when not from this process's Keras (the
    # conversion worker, pipeline.run.remote): this process then need not load the model.
    recorder: Callable[[Dataset, int], Predictions] | None = None


class OutputChecker:
    """Holds the source's reference outputs on the evaluation data, and checks each output's file against them."""

    def __init__(self, settings: CheckerSettings, cache: Cache) -> None:
        self.settings, self.cache = settings, cache
        self._selection_reference: Predictions | None = None
        self.source_latency: dict[int, dict[str, Any]] = {}
        self.source_noise: tuple[dict[str, float], float] | None = None  # source_float_noise's, measured once
        self.determinism: Determinism | None = None  # whether the source answers the same twice; None: unknown
        self.warnings: list[str] = []  # the run's, about the source (its determinism): the runner reports them
        self.reference = reference_predictions(self)

    def predictions(
        self,
        artifact: Artifact,
        label: str,
        plan: OutputPlan | None = None,
        setting: Setting | None = None,
        data: Dataset | None = None,
    ) -> Predictions:
        """`artifact` run over `data` (default: the evaluation data), threaded and fed as `plan` (an output's) says."""
        values = setting.values if setting else {}
        threads, input_map = (plan.runtime.threads, plan.input_map) if plan else (None, None)
        evaluation, batch_size = self.settings.evaluation, self.settings.batch_size
        return predict_dataset(artifact, label, data or evaluation, batch_size, threads, input_map, **values)

    def check(self, plan: OutputPlan, chain: list[Artifact]) -> Check:
        """The gated parity against the source, and the comparisons that explain it."""
        final = chain[-1]
        runs = runs_of(plan, final)
        candidate = self.predictions(final, plan.name, plan, runs.main)
        parity = self._compare(self.reference, candidate, plan)
        _tolerate_float32_noise(self, plan, final, parity)
        runs, comparisons = with_diagnostic_run(runs, final, parity), []
        if runs.other is not None:
            # The same file run the other way: LiteRT's reference kernels (LiteRT has had bugs where XNNPACK
            # disagrees), or onnxruntime without graph optimizations (fused int8 kernels can saturate on some CPUs).
            other = self.predictions(final, plan.name, plan, runs.other)
            gated = plan if runs.other_gated else None
            against = self._compare(self.reference, other, gated, other.label, plan.tensor_map)
            comparisons.append(
                Comparison(against, "runtime_setting", {"candidate": runs.other.role, "reference": "source"})
            )
            comparisons.append(_setting_gap(self, runs, candidate, other))
        # Stages before the conversion change the model on purpose (pruning, QAT): also compare with
        # the last model before the final stage, so a reader sees which step lost what.
        before = [(i, a) for i, a in enumerate(chain[:-1]) if a.kind in {"keras", "savedmodel"}]
        if before:
            index, artifact = before[-1]
            upstream = self.predictions(artifact, f"stages[{index}] {plan.nodes[index].label}")
            roles = {"reference": "model before the final stage", "candidate": runs.main.role or "output"}
            compared = self._compare(upstream, candidate, tensor_map=plan.tensor_map)
            comparisons.append(Comparison(compared, "before_final_stage", roles))
        targets = target_reports(self, plan, final)
        parity.gates += target_gates(plan, targets)
        return Check(parity, comparisons, _findings(self, plan, final, comparisons, parity), targets)

    def acceptor(self, plan: OutputPlan) -> Callable[[Path], bool]:
        """For a stage that needs verdicts (`fallback: auto`): does a candidate file pass this output's gates on
        the selection data (validation, else calibration)? Choosing on the evaluation data would let the final
        gates judge a choice fitted to them. Gates those data cannot measure (accuracy without labels) abstain."""

        def accept(path: Path) -> bool:
            selection = self.settings.selection
            if selection is None:
                raise EdgeportError("fallback: auto chooses on data.validation or data.calibration; add one")
            if self._selection_reference is None:
                self._selection_reference = self.predictions(self.settings.source.artifact, "source", data=selection)
            candidate = Artifact(kind=plan_kind(plan), path=path, key=path.stem)  # type: ignore[arg-type]
            produced = self.predictions(candidate, plan.name, plan, runs_of(plan, candidate).main, selection)
            result = compare(self._selection_reference, produced, selection, plan.tensor_map)
            gates = gate_result(result, plan.gates, plan.tensor_gates)
            result.gates = [gate for gate in gates if gate.value is not None]
            return result.passed

        return accept

    def latency(self, plan: OutputPlan, artifact: Artifact) -> dict[str, Any]:
        """Median/p90 in the output's runtime, beside the source model in Keras on the same batch."""
        spec = plan.benchmark
        assert spec is not None
        batch = next(self.settings.evaluation.batches(spec.batch))
        with runtime_for(artifact, spec.threads, **runs_of(plan, artifact).main.values) as runtime:
            measured = measure_latency(runtime, feed_for(runtime, batch, plan.input_map), spec.runs, spec.warmup)
        size = len(next(iter(batch.values())))
        if size not in self.source_latency:
            with runtime_for(self.settings.source.artifact) as source_runtime:
                timing = measure_latency(source_runtime, feed_for(source_runtime, batch), spec.runs, spec.warmup)
            self.source_latency[size] = {"runtime": source_runtime.name, **timing}
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

    def _compare(
        self,
        reference: Predictions,
        candidate: Predictions,
        gated_by: OutputPlan | None = None,
        against: str | None = None,
        tensor_map: dict[str, str] | None = None,
    ) -> ParityResult:
        """Parity of two runs; with a plan, its gates are judged on the result (`against` names another run) and its
        tensor_map pairs the tensors (keyed by source names: not for the file's two runs, which share names)."""
        mapping = gated_by.tensor_map if gated_by is not None else tensor_map
        result = compare(reference, candidate, self.settings.evaluation, mapping)
        if gated_by is not None:
            result.gates = gate_result(result, gated_by.gates, gated_by.tensor_gates, against=against)
        return result


def _setting_gap(checker: OutputChecker, runs: Runs, main_run: Predictions, other_run: Predictions) -> Comparison:
    """The two runs of one file against each other. The unoptimized ONNX run (the QDQ graph's own arithmetic)
    is the reference there; for LiteRT the gated run is. (Outside the class: it keeps the class short.)"""
    assert runs.other is not None
    pairs = [(runs.main, main_run), (runs.other, other_run)]
    if runs.main.role == "unoptimized" or runs.other.role == "unoptimized":
        pairs.sort(key=lambda pair: pair[0].role != "unoptimized")
    (reference_setting, reference), (candidate_setting, candidate) = pairs
    roles = {"reference": reference_setting.role, "candidate": candidate_setting.role}
    return Comparison(checker._compare(reference, candidate), "setting_gap", roles)


def reference_predictions(checker: OutputChecker) -> Predictions:
    """The source model's outputs on the evaluation data: from the cache, else computed and stored."""
    clock = time.perf_counter()
    evaluation = checker.settings.evaluation
    # Outputs of the source change with TensorFlow / Keras versions: a new toolchain computes them afresh.
    key = key_of("reference", checker.settings.source.key, evaluation.digest(), package_versions())
    cached, determinism = checker.cache.get_recording(key), checker.cache.get_json("determinism", key)
    if cached is not None and determinism is not None:
        order = ORDERS.get(checker.settings.source.kind)  # not .artifact: a warm run must not load the model
        predictions = Predictions("source (cached)", "cache", cached, order, determinism=determinism)
    else:
        try:
            if checker.settings.recorder is not None:
                predictions = checker.settings.recorder(evaluation, checker.settings.batch_size)
            else:
                predictions = checker.predictions(checker.settings.source.artifact, "source")
                predictions.determinism = _determinism_here(checker, predictions)
        except EdgeportError:
            raise
        except Exception as error:  # a source that cannot run its own data is bad input
            raise EdgeportError(
                f"{checker.settings.source.path}: the source model failed on data.evaluation: "
                f"{said(error, first_line(error))}"
            ) from None
        predictions.outputs = checker.cache.put_recording(key, predictions.outputs)
        if predictions.determinism is not None:
            checker.cache.put_json("determinism", key, predictions.determinism)
    labels = "with labels" if evaluation.labels is not None else "no labels"
    checker.settings.log(
        f"  reference {predictions.label} on {evaluation.samples} samples "
        f"({evaluation.origin}, {labels}) {time.perf_counter() - clock:.1f} s"
    )
    if predictions.determinism is not None:
        checker.determinism = Determinism.from_json(predictions.determinism)
        warning = checker.determinism.warning()
        if warning:
            checker.warnings.append(warning)
            checker.settings.log(f"  warning   {warning}")
    return predictions


def _determinism_here(checker: OutputChecker, predictions: Predictions) -> dict[str, Any]:
    """The source's first evaluation batch run again, and some of its samples alone (pipeline.run.determinism)."""
    first = next(checker.settings.evaluation.batches(checker.settings.batch_size))
    return check_determinism(checker.settings.source.artifact, first, predictions.outputs).to_json()


def target_reports(checker: OutputChecker, plan: OutputPlan, final: Artifact) -> dict[str, TargetReport]:
    """Each target the output names, analysed on its .tflite file; a target that breaks is reported incompatible."""
    if not plan.targets or final.kind != "tflite":
        return {}
    settings = checker.settings
    context = TargetContext(
        final, settings.evaluation, checker.reference, settings.batch_size, plan.tensor_map, plan.input_map
    )
    reports = {}
    for name in plan.targets:
        clock = time.perf_counter()
        try:
            reports[name] = TARGETS[name]().analyze(context)
        except Exception as failure:  # an analysis that cannot run says so in the report; the run goes on
            reports[name] = TargetReport(name, False, details={"error": f"analysis failed: {first_line(failure)}"})
        reports[name].details["seconds"] = round(time.perf_counter() - clock, 3)
        compatible = "compatible" if reports[name].compatible else "not compatible"
        settings.log(f"  target    {plan.name} {name}: {compatible}")
    return reports


def target_gates(plan: OutputPlan, reports: dict[str, TargetReport]) -> list[GateResult]:
    """`target <name>` per declared target, then `micro_arena_kib` on the arena TFLite Micro used."""
    gates = [report.gate() for report in reports.values()]
    micro = reports.get("micro")
    if plan.micro_arena_kib is not None and micro is not None:
        used = micro.details.get("arena_bytes")
        value = used / 1024 if isinstance(used, int | float) else None
        passed = value is not None and value <= plan.micro_arena_kib
        note = None if value is not None else "not measured: TFLite Micro could not run the file"
        gates.append(GateResult("micro_arena_kib", "<=", plan.micro_arena_kib, value, passed, note))
    return gates


def runs_of(plan: OutputPlan, artifact: Artifact) -> Runs:
    """The runs an output's `runtime:` settings ask for, as the artifact's runtime understands them."""
    requested = plan.runtime.model_dump(exclude={"threads"})
    return RUNTIMES[artifact.kind].runs_for(requested, artifact)


def plan_kind(plan: OutputPlan) -> str:
    return STAGES[plan.nodes[-1].kind].gives


def with_diagnostic_run(runs: Runs, final: Artifact, parity: ParityResult) -> Runs:
    """An fp32 ONNX file that fails its gates with onnxruntime's graph optimizations also runs without them
    (ungated), as quantized ones always do: whether the file or the optimizations are at fault is then known."""
    if runs.other is not None or final.kind != "onnx" or parity.passed or _quantized(final):
        return runs
    return replace(runs, other=Setting({"graph_optimization": "disabled"}, "unoptimized"))


def _quantized(final: Artifact) -> bool:
    return (final.details or {}).get("quantize", "none") != "none"


def _findings(
    checker: OutputChecker, plan: OutputPlan, final: Artifact, comparisons: list[Comparison], parity: ParityResult
) -> list[dict[str, Any]]:
    """What the comparisons reveal beyond the gates: for quantized ONNX, kernels that break the QDQ arithmetic;
    for fp32 ONNX that passes only unoptimized, the onnxruntime optimizer that changes its results; for an fp32
    file that misses only max_abs, whether the source's own float32 rounding is as large."""
    findings = _onnx_findings(checker, plan, final, comparisons)
    if _misses_only_max_abs(final, parity) and not findings and _noise_refusal(checker, parity) is None:
        spreads, scale = source_float_noise(checker)
        samples = min(NOISE_SAMPLES, checker.settings.evaluation.samples)
        finding = float_noise_finding(parity.metrics["max_abs"], spreads, scale, samples)
        findings += [finding] if finding else []
    return findings


def _tolerate_float32_noise(checker: OutputChecker, plan: OutputPlan, final: Artifact, parity: ParityResult) -> None:
    """`gates: {float32_noise: k}`: an unquantized file that misses only max_abs is judged again against k× the
    source's own float32 spread (measured only then)."""
    if plan.float32_noise is None or not _misses_only_max_abs(final, parity):
        return
    refusal = _noise_refusal(checker, parity)
    if refusal is not None:
        note = f"float32_noise not applied: {refusal}"
        parity.gates = [gate if gate.passed else replace(gate, note=note) for gate in parity.gates]
        return
    spreads, _ = source_float_noise(checker)
    parity.gates = [within_float32_noise(gate, spreads, plan.float32_noise) for gate in parity.gates]


def _noise_refusal(checker: OutputChecker, parity: ParityResult) -> str | None:
    deterministic = checker.determinism is None or checker.determinism.deterministic
    return float_noise_refusal(parity.metrics.get("cosine", math.nan), deterministic)


def _misses_only_max_abs(final: Artifact, parity: ParityResult) -> bool:
    failed = [gate for gate in parity.gates if not gate.passed]
    unquantized = final.kind in {"tflite", "onnx"} and not _quantized(final)
    return unquantized and bool(failed) and all(g.metric == "max_abs" and g.tensor is None for g in failed)


def source_float_noise(checker: OutputChecker) -> tuple[dict[str, float], float]:
    """The source's `float32_spread` on the first NOISE_SAMPLES evaluation samples, measured once a run."""
    if checker.source_noise is None:
        checker.source_noise = _measured_float_noise(checker)
    return checker.source_noise


def _measured_float_noise(checker: OutputChecker) -> tuple[dict[str, float], float]:
    batch = next(checker.settings.evaluation.batches(NOISE_SAMPLES))
    with runtime_for(checker.settings.source.artifact) as runtime:
        return float32_spread(runtime.predict_batch, feed_for(runtime, batch))


def _onnx_findings(
    checker: OutputChecker, plan: OutputPlan, final: Artifact, comparisons: list[Comparison]
) -> list[dict[str, Any]]:
    by_kind = {comparison.kind: comparison for comparison in comparisons}
    if final.kind != "onnx" or "setting_gap" not in by_kind or "runtime_setting" not in by_kind:
        return []
    unoptimized, gap = by_kind["runtime_setting"].result, by_kind["setting_gap"].result
    if not _quantized(final):
        passes = all(gate.passed for gate in gate_result(unoptimized, plan.gates, plan.tensor_gates))
        own, moved = unoptimized.metrics.get("max_abs", math.nan), gap.metrics.get("max_abs", math.nan)
        if not (passes or moved >= OPTIMIZER_BLAME * own):
            return []  # the file itself is off, and the optimizations add little to it: no optimizer to blame
        batch = next(checker.settings.evaluation.batches(checker.settings.batch_size))
        inputs = file_inputs(final.path)
        matches = match_feed(batch, inputs, f"{plan.name} inputs", plan.input_map)
        by_file = {matches[name].candidate: array for name, array in batch.items()}
        feed = {spec.name: np.ascontiguousarray(by_file[spec.name], spec.dtype) for spec in inputs}
        return [optimizer_finding(final.path, feed, own, moved, passes)]
    finding = graph_optimization_finding(unoptimized, gap, cpu_info())
    return [finding] if finding else []
