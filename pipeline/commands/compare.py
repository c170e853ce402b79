"""`edgeport compare A B`: ad-hoc parity of any two artifacts (keras, savedmodel, tflite, onnx).

Builds the same report as `run`, with B as the one output and A as its reference. Without --gate, B is judged by
the gates `run` gives an output that ends in the stage making a file like B (each stage's `default_gates`), the
kind read from B itself: tensor types in a TFLite flatbuffer, quantization nodes in an ONNX graph. A verdict with
no gates at all would print PASSED for any two models that run on the same inputs.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.artifacts import gzip_size_of, sha256_of, size_of
from pipeline.core.artifact import Artifact
from pipeline.data import label_outputs, load_dataset
from pipeline.errors import EdgeportError, ModelError, RecipeError, first_line
from pipeline.parity.gates import GATE_OPS
from pipeline.recipe import DataSpec, Gates, RuntimeSpec
from pipeline.report.document import build_report, settle_verdict
from pipeline.run.cache import Cache
from pipeline.run.checker import CheckerSettings, OutputChecker
from pipeline.run.plan import OutputPlan
from pipeline.run.result import OutputResult
from pipeline.runtimes import RUNTIMES, kind_of, runtime_for
from pipeline.stages import STAGES

# ONNX nodes that compute on quantized integers: QDQ (static) and onnxruntime's dynamic quantization.
_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
_DYNAMIC_OPS = frozenset({"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "MatMulIntegerToFloat"})


def artifact_at(path: Path, trusted: bool = False, signature: str = "serving_default") -> Artifact:
    """Any model file or directory as an artifact its runtime can run."""
    from pipeline.sources import check_model_path

    check_model_path(path)
    kind = kind_of(path)
    if kind in {"tflite", "onnx"}:  # files runtimes read as they are; model files load as sources
        # An ONNX file's ops, as the onnx stage records them: the runtime runs a quantized one both ways.
        details = {"ops": dict(Counter(_op_types(_onnx_model(path).graph)))} if kind == "onnx" else {}
        return Artifact(kind=kind, path=path, key=sha256_of(path), details=details)  # type: ignore[arg-type]
    from pipeline.sources import load_source

    return load_source(path, signature, trusted).artifact


def parse_gates(specs: list[str]) -> Gates:
    """`--gate max_abs=1e-4 --gate logits.cosine=0.99` → Gates."""
    document: dict[str, Any] = {}
    for spec in specs:
        name, separator, value = spec.partition("=")
        if not separator:
            raise RecipeError(f"--gate {spec}: expected METRIC=VALUE or TENSOR.METRIC=VALUE")
        tensor, _, metric = name.rpartition(".")
        target = document.setdefault(tensor, {}) if tensor else document
        try:
            target[metric] = float(value)
        except ValueError:
            raise RecipeError(f"--gate {spec}: {value!r} is not a number") from None
    try:
        return Gates.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in error.errors())
        raise RecipeError(f"--gate: {problems}") from None


def parse_map(specs: list[str], flag: str = "--map") -> dict[str, str]:
    """`--map output_0=StatefulPartitionedCall:1` (repeatable) → {reference tensor: candidate tensor}; the same
    for `--input-map`."""
    mapping: dict[str, str] = {}
    noun = "input" if flag == "--input-map" else "output"
    for spec in specs:
        reference, separator, candidate = spec.partition("=")
        if not separator or not reference or not candidate:
            raise RecipeError(f"{flag} {spec}: expected REF=CANDIDATE (a reference {noun} name = the file's)")
        if reference in mapping:
            raise RecipeError(f"{flag} {spec}: {reference!r} is mapped twice")
        mapping[reference] = candidate
    return mapping


@dataclass
class _Reference:
    """A as the checker reads a run's source: its artifact, key, kind and path (no recipe, nothing cached)."""

    artifact: Artifact
    path: Path

    @property
    def key(self) -> str:
        return self.artifact.key

    @property
    def kind(self) -> str:
        return self.artifact.kind


def compare_artifacts(
    reference_path: Path,
    candidate_path: Path,
    data: DataSpec | None,
    gates: Gates,
    trusted: bool = False,
    signature: str = "serving_default",
    batch_size: int = 64,
    delegate: str = "xnnpack",
    tensor_map: dict[str, str] | None = None,
    input_map: dict[str, str] | None = None,
) -> dict[str, Any]:
    """B checked against A by the checker `run` uses: the same runs per setting (a quantized ONNX file also
    unoptimized), comparisons, findings and output entry, in the same report."""
    started, clock = datetime.now(UTC), time.perf_counter()
    reference = artifact_at(reference_path, trusted, signature)
    candidate = artifact_at(candidate_path, trusted, signature)
    inputs = _opened(reference).inputs
    _opened(candidate)  # a file its runtime cannot open is bad input, before any work
    dataset = load_dataset("evaluation", data, Path.cwd(), inputs)
    settings = CheckerSettings(_Reference(reference, reference_path), dataset, batch_size, _quiet)
    checker = OutputChecker(settings, Cache(None, False))
    label_outputs(dataset, checker.reference.shapes(), "--labels")
    plan, warnings = _plan(candidate, candidate_path, gates, delegate, tensor_map, input_map)
    result = OutputResult(name=plan.name, format=candidate.kind, gates_from=plan.gates_from)
    result.published = {
        "runtime": RUNTIMES[candidate.kind].name,
        "artifact": str(candidate_path),
        "sha256": sha256_of(candidate_path),
        "size_bytes": size_of(candidate_path),
        "gzip_bytes": gzip_size_of(candidate_path),
    }
    try:
        result.check = checker.check(plan, [candidate])
    except EdgeportError:  # inputs no rule pairs: the message names them and the flag that settles it
        raise
    except Exception as error:  # B that cannot run these inputs, or runs that cannot be compared: exit 3, one line
        result.error = f"cannot compare the two runs: {first_line(error, 300)}"
    source = {"path": str(reference_path), "format": reference.kind, "sha256": sha256_of(reference_path)}
    recipe = {"name": "compare", "path": None}
    report = build_report(
        recipe, source, {"evaluation": dataset.describe()}, [result.to_dict()], started, time.perf_counter() - clock
    )
    report["warnings"] = warnings
    return settle_verdict(report)


def _plan(
    candidate: Artifact,
    path: Path,
    gates: Gates,
    delegate: str,
    tensor_map: dict[str, str] | None,
    input_map: dict[str, str] | None,
) -> tuple[OutputPlan, list[str]]:
    """B as an output of one file: the gates given (else its kind's defaults, with a warning saying so), the
    delegate, the maps."""
    thresholds, gates_from, warnings = gates.thresholds(), "command line", []
    if not thresholds and not gates.tensor_thresholds():
        thresholds, kind = default_gates(candidate)
        gates_from = "default"
        applied = ", ".join(f"{metric} {GATE_OPS[metric]} {value:g}" for metric, value in thresholds.items())
        warnings.append(f"no --gate given: B is judged by the default gates of its kind, {kind}: {applied}")
    plan = OutputPlan(
        name=path.name,
        nodes=[],
        gates=thresholds,
        gates_from=gates_from,
        tensor_gates=gates.tensor_thresholds(),
        runtime=RuntimeSpec(delegate=delegate),  # type: ignore[arg-type]
        tensor_map=dict(tensor_map or {}),
        input_map=dict(input_map or {}),
    )
    return plan, warnings


def _quiet(message: str) -> None:
    """compare prints its report, not a run's progress lines."""


def default_gates(artifact: Artifact) -> tuple[dict[str, float], str]:
    """The gates `run` gives an output whose last stage makes a file like this one, and what kind of file it was
    taken for (with what in it says so). A Keras or SavedModel candidate computes in float32, as an fp32
    conversion does."""
    if artifact.kind == "tflite":
        quantize, evidence = tflite_quantization(Path(artifact.path))
        if quantize == "int4":  # only the LiteRT quantizer writes int4 weights
            stage, options = STAGES["litert_quantize"], STAGES["litert_quantize"].Options(mode="dynamic_int4")
        else:
            stage, options = STAGES["tflite"], STAGES["tflite"].Options(quantize=quantize)
    elif artifact.kind == "onnx":
        quantize, evidence = onnx_quantization(Path(artifact.path))
        stage, options = STAGES["onnx"], STAGES["onnx"].Options(quantize=quantize)
    else:
        quantize, evidence = "none", "a float32 model"
        stage, options = STAGES["tflite"], STAGES["tflite"].Options()
    label = "fp32" if quantize == "none" else quantize
    return stage.default_gates(options), f"{artifact.kind} {label} ({evidence})"


def tflite_quantization(path: Path) -> tuple[str, str]:
    """What a .tflite file's tensors say it was quantized as: `int4`, `int16x8`, `int8` (integer activations),
    `dynamic` (integer weights only), `float16` or `none`; and the tensors that said so."""
    from litert_quantizer.utils import tfl_flatbuffer_utils as fb

    try:
        model = fb.read_model(path.read_bytes())
    except Exception as error:  # the flatbuffer reader raises several kinds for a file that is no model
        raise ModelError(f"{path}: cannot read as a TFLite flatbuffer: {first_line(error, 300)}") from None
    found: set[tuple[str, bool, bool]] = set()  # (type, constant, has quantization scales)
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            scales = tensor.quantization is not None and tensor.quantization.scale is not None
            constant = model.buffers[tensor.buffer].data is not None
            found.add((str(fb.TENSOR_CODE_TO_TYPE.get(tensor.type, "?")), constant, scales))
    kinds = [
        ("int4", "INT4 weights", lambda t, c, q: t == "INT4"),
        ("int16x8", "quantized INT16 activations", lambda t, c, q: t == "INT16" and q and not c),
        ("int8", "quantized INT8 activations", lambda t, c, q: t in ("INT8", "UINT8") and q and not c),
        ("dynamic", "quantized INT8 weights, float activations", lambda t, c, q: t == "INT8" and q),
        ("float16", "FLOAT16 weights", lambda t, c, q: t == "FLOAT16"),
    ]
    for kind, evidence, test in kinds:
        if any(test(*tensor) for tensor in found):
            return kind, evidence
    return "none", "float32 tensors only"


def onnx_quantization(path: Path) -> tuple[str, str]:
    """`static` (QDQ nodes), `dynamic` (onnxruntime's integer nodes) or `none`, and the nodes that said so."""
    model = _onnx_model(path)
    ops = set(_op_types(model.graph)) | {node.op_type for function in model.functions for node in function.node}
    for kind, wanted in (("static", _QDQ_OPS), ("dynamic", _DYNAMIC_OPS)):
        named = sorted(ops & wanted) + sorted(op for op in ops if op.startswith("QLinear") and kind == "static")
        if named:
            return kind, f"{', '.join(named)} nodes"
    return "none", "no quantization nodes"


def _onnx_model(path: Path) -> Any:
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf and onnx raise several kinds for a file that is no model
        raise ModelError(f"{path}: cannot read as an ONNX model: {first_line(error, 300)}") from None


def _op_types(graph: Any) -> Iterator[str]:
    """Every node's op type, in subgraphs (If, Loop, Scan bodies) too."""
    for node in graph.node:
        yield node.op_type
        for attribute in node.attribute:
            for subgraph in [*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs]:
                yield from _op_types(subgraph)


def _opened(artifact: Artifact) -> Any:
    """The artifact's runtime, opened once to see that it can be and to read its inputs, then closed."""
    try:
        with runtime_for(artifact) as runtime:
            return runtime
    except Exception as error:  # each runtime raises its own kinds for a file it cannot open
        raise ModelError(f"{artifact.path}: cannot open as {artifact.kind}: {first_line(error, 300)}") from None
