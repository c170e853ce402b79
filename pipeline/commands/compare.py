"""`edgeport compare A B`: ad-hoc parity of any two artifacts (keras, savedmodel, tflite, onnx).

Builds the same report as `run`, with B as the one output and A as its reference.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.artifacts import gzip_size_of, sha256_of, size_of
from pipeline.core.artifact import Artifact
from pipeline.data import label_outputs, load_dataset
from pipeline.errors import EdgeportError, ModelError, RecipeError, first_line
from pipeline.evaluate import compare, predict_dataset
from pipeline.parity import gate_result
from pipeline.recipe import DataSpec, Gates
from pipeline.report.document import build_report, settle_verdict
from pipeline.runtimes import kind_of, runtime_for


def artifact_at(path: Path, trusted: bool = False, signature: str = "serving_default") -> Artifact:
    """Any model file or directory as an artifact its runtime can run."""
    if not path.exists():
        raise ModelError(f"{path}: model not found")
    kind = kind_of(path)
    if kind in {"tflite", "onnx"}:  # files runtimes read as they are; model files load as sources
        return Artifact(kind=kind, path=path, key=sha256_of(path))  # type: ignore[arg-type]
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


def parse_map(specs: list[str]) -> dict[str, str]:
    """`--map output_0=StatefulPartitionedCall:1` (repeatable) → {reference tensor: candidate tensor}."""
    mapping: dict[str, str] = {}
    for spec in specs:
        reference, separator, candidate = spec.partition("=")
        if not separator or not reference or not candidate:
            raise RecipeError(f"--map {spec}: expected REF=CANDIDATE (a reference output name = the file's)")
        if reference in mapping:
            raise RecipeError(f"--map {spec}: {reference!r} is mapped twice")
        mapping[reference] = candidate
    return mapping


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
) -> dict[str, Any]:
    started, clock = datetime.now(UTC), time.perf_counter()
    reference = artifact_at(reference_path, trusted, signature)
    candidate = artifact_at(candidate_path, trusted, signature)
    inputs = _open(reference).inputs
    dataset = load_dataset("evaluation", data, Path.cwd(), inputs)
    expected = _run(reference, "A", dataset, batch_size, delegate)
    label_outputs(dataset, expected.shapes(), "--labels")
    produced = _run(candidate, "B", dataset, batch_size, delegate)
    try:
        parity = compare(expected, produced, dataset, tensor_map)
    except EdgeportError:
        raise
    except Exception as error:  # two runs that cannot be compared (shapes): an error output, exit 3, one line
        parity, failure = None, f"cannot compare the two runs: {first_line(error, 300)}"
    else:
        parity.gates = gate_result(parity, gates.thresholds(), gates.tensor_thresholds())
        failure = None
    output = {
        "name": candidate_path.name,
        "status": "error" if parity is None else "passed" if parity.passed else "failed",
        "format": candidate.kind,
        "runtime": produced.runtime,
        "artifact": str(candidate_path),
        "sha256": sha256_of(candidate_path),
        "size_bytes": size_of(candidate_path),
        "gzip_bytes": gzip_size_of(candidate_path),
        "stages": [],
        "gates_from": "command line",
        "parity": None if parity is None else parity.to_dict(),
        "comparisons": [],
        "warnings": [],
        "error": failure,
    }
    source = {"path": str(reference_path), "format": reference.kind, "sha256": sha256_of(reference_path)}
    recipe = {"name": "compare", "path": None}
    report = build_report(
        recipe, source, {"evaluation": dataset.describe()}, [output], started, time.perf_counter() - clock
    )
    return settle_verdict(report)


def _open(artifact: Artifact) -> Any:
    try:
        return runtime_for(artifact)
    except Exception as error:  # each runtime raises its own kinds for a file it cannot open
        raise ModelError(f"{artifact.path}: cannot open as {artifact.kind}: {first_line(error, 300)}") from None


def _run(artifact: Artifact, label: str, dataset: Any, batch_size: int, delegate: str) -> Any:
    _open(artifact)
    try:
        return predict_dataset(artifact, f"{label} {artifact.path.name}", dataset, batch_size, delegate=delegate)
    except Exception as error:  # a model that cannot run these inputs is bad input here
        raise ModelError(f"{artifact.path}: failed to run on the data: {first_line(error, 300)}") from None
