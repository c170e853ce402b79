"""An output's entry in the report dict (before parity fills it), its published artifact with its provenance
stamped in, and the one-line verdicts the run prints. Knows no runtime and no stage internals."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.artifacts import copy_atomic, gzip_size_of, sha256_of, size_of
from pipeline.core.artifact import Artifact
from pipeline.core.text import one_line
from pipeline.parity import GateResult, ParityResult
from pipeline.provenance import Provenance, stamp_file
from pipeline.run.outdir import PUBLISHED_NAMES, Manifest
from pipeline.run.plan import OutputPlan
from pipeline.runtimes import RUNTIMES

STAMPED_KINDS = ("tflite", "onnx")  # the files that carry their provenance (pipeline.provenance)


def clear_published(manifest: Manifest, name: str) -> None:
    """An artifact an earlier run left must not pass for this run's: removed, if the manifest proves it ours."""
    for filename in PUBLISHED_NAMES:
        manifest.remove(manifest.out_dir / name / filename)


def output_provenance(recipe: Provenance, plan: OutputPlan) -> Provenance:
    """What an output's file says made it: the run's provenance with the output's name and stages."""
    return recipe.for_output(plan.name, [node.label for node in plan.nodes])


def stamped_copy(artifact: Artifact, target: Path, provenance: Provenance) -> Artifact:
    """The artifact written to `target` with its provenance in it; the cached file stays as it was built, so a
    new recipe name or version re-stamps it without converting again."""
    stamp_file(artifact.path, target, artifact.kind, provenance)  # type: ignore[arg-type]
    return replace(artifact, path=target)


def publish(artifact: Artifact, manifest: Manifest, name: str, provenance: Provenance) -> dict[str, Any]:
    """Publish OUT/<name>/model.*: a .tflite or .onnx stamped with `provenance` (and the sha256 of the stamped file,
    which ships), other kinds copied as they are."""
    # model.tflite, model.onnx, model.keras or model.h5 (tf_keras), or a saved_model directory
    filename = "saved_model" if artifact.path.is_dir() else f"model{artifact.path.suffix}"
    out_dir = manifest.out_dir
    published = out_dir / name / filename
    stamped = artifact.kind in STAMPED_KINDS
    if stamped:
        stamped_copy(artifact, published, provenance)
    else:
        copy_atomic(artifact.path, published)
    manifest.record(published)
    return {
        "artifact": published.relative_to(out_dir).as_posix(),
        "sha256": sha256_of(published),
        "size_bytes": size_of(published),
        "gzip_bytes": gzip_size_of(published),
        "runtime": RUNTIMES[artifact.kind].name,
        "provenance": provenance.to_json() if stamped else None,
    }


def verdict(parity: ParityResult) -> str:
    if parity.nonfinite:
        return f"FAILED ({parity.nonfinite_text()})"
    failed = [gate for gate in parity.gates if not gate.passed]
    shown = ", ".join(_gate_text(gate) for gate in (failed or parity.gates))
    return f"FAILED ({shown})" if failed else f"passed ({shown})"


def _gate_text(gate: GateResult) -> str:
    value = "n/a" if gate.value is None else f"{gate.value:.4g}"
    relation = gate.op if gate.passed else f"not {gate.op}"
    return f"{_gate_label(gate)} {value} {relation} {gate.threshold:g}"


def latency_text(latency: dict[str, Any]) -> str:
    source = latency["source"]
    return (
        f"{latency['runtime']} median {latency['median_ms']:.3g} ms (p90 {latency['p90_ms']:.3g}), "
        f"source {source['runtime']} {source['median_ms']:.3g} ms, speedup {latency['speedup']}x "
        f"(batch {latency['batch']}, {latency['runs']} runs)"
    )


def _gate_label(gate: GateResult) -> str:
    return one_line(f"{gate.tensor}.{gate.metric}") if gate.tensor else gate.metric  # the model's name, one line
