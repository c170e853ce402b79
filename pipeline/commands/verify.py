"""`edgeport verify FILE --report report.json`: is this the file a report passed? Its sha256 must be an output the
report passed, and the provenance stamped in it must agree with what the report recorded of that output.

Reads the file and the report only; knows nothing of recipes, stages or runs. Both are the user's input, and may be
an attacker's: every name or field of theirs is set in the verdict as `one_line` (core.text), so that neither an
escape sequence nor a newline can draw a "verified" line of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.artifacts import sha256_of
from pipeline.core.text import one_line
from pipeline.errors import EdgeportError
from pipeline.provenance import STAGE_SEPARATOR, Provenance, StampedKind, model_format, read_provenance
from pipeline.report.json import read_report
from pipeline.report.text import number

VERIFIED, NOT_VERIFIED = 0, 1  # bad input (exit 2) is an EdgeportError


@dataclass
class Verdict:
    exit_code: int
    message: str


@dataclass
class _Stamp:
    """What the file says made it: its provenance, or why there is none to read."""

    provenance: Provenance | None
    problem: str | None = None


def verify_file(path: Path, report_path: Path) -> Verdict:
    """Exit 0 when `path` is an output `report_path` passed and its metadata agrees, 1 when it is not; a missing or
    unreadable file or report, or a file that is neither .tflite nor .onnx, raises (exit 2)."""
    report = read_report(report_path, "--report")
    kind = model_format(path)
    digest = sha256_of(path)
    stamp = _stamp_of(path, kind)
    outputs = [output for output in report["outputs"] if isinstance(output, dict)]
    found = next((output for output in outputs if output.get("sha256") == digest), None)
    if found is None:
        return Verdict(NOT_VERIFIED, _unknown(path, digest, report_path, report, stamp))
    name, status = one_line(found.get("name")), found.get("status")
    where = f"output {name} of {one_line(report_path)} (recipe {one_line(_recipe(report).get('name'))})"
    if status != "passed":
        return Verdict(NOT_VERIFIED, f"not verified: {one_line(path)} is {where}, which {one_line(_why_not(found))}")
    disagreement = _disagreement(stamp, found, report)
    if disagreement is not None:
        return Verdict(NOT_VERIFIED, f"not verified: {one_line(path)} is {where}, but {one_line(disagreement)}")
    return Verdict(VERIFIED, _verified(path, digest, where, stamp.provenance))


def _stamp_of(path: Path, kind: StampedKind) -> _Stamp:
    try:
        return _Stamp(read_provenance(path, kind))
    except (ValueError, EdgeportError) as error:  # damaged metadata: the file is no gated one, yet no bad input
        return _Stamp(None, f"its edgeport metadata is unreadable ({error})")


def _recipe(report: dict[str, Any]) -> dict[str, Any]:
    recipe = report.get("recipe")
    return recipe if isinstance(recipe, dict) else {}


def _unknown(path: Path, digest: str, report_path: Path, report: dict[str, Any], stamp: _Stamp) -> str:
    """Not an output of the report: say what the file claims to be, so a changed file reads as changed."""
    outputs = {output.get("name"): output for output in report["outputs"] if isinstance(output, dict)}
    recipe = _recipe(report).get("name")
    text = (
        f"not verified: {one_line(path)} (sha256 {digest}) is no output of {one_line(report_path)} "
        f"(recipe {one_line(recipe)}: {one_line(', '.join(map(str, outputs)) or 'no outputs')})"
    )
    claimed = stamp.provenance
    if claimed is None:
        return f"{text}; {one_line(stamp.problem or 'it carries no edgeport provenance')}"
    said = f"its metadata says output {one_line(claimed.output)} of recipe {one_line(claimed.recipe)}"
    shipped = outputs.get(claimed.output) if claimed.recipe == recipe else None
    if shipped is not None and shipped.get("sha256"):
        digest_then = one_line(shipped["sha256"])
        return f"{text}; {said}, which shipped as sha256 {digest_then}: the file changed after edgeport made it"
    return f"{text}; {said}"


def _why_not(output: dict[str, Any]) -> str:
    if output.get("status") == "error":
        return f"is an error ({output.get('error')})"
    gates = (output.get("parity") or {}).get("gates") or []
    failed = [
        f"{gate.get('metric')} {number(gate.get('value'))} not {gate.get('op')} {number(gate.get('threshold'))}"
        for gate in gates
        if isinstance(gate, dict) and not gate.get("passed")
    ]
    return f"{output.get('status')} ({', '.join(failed)})" if failed else str(output.get("status"))


def _disagreement(stamp: _Stamp, output: dict[str, Any], report: dict[str, Any]) -> str | None:
    """Where the file's provenance and the report's record of it differ; None when they agree. A report from
    before provenance (or of a format that carries none) recorded nothing to agree with: the sha256 decides."""
    recorded = output.get("provenance")
    if not isinstance(recorded, dict):
        return None
    if stamp.provenance is None:
        return stamp.problem or "it carries no edgeport provenance, where the report recorded one"
    found = stamp.provenance.to_json()
    expected = {**recorded, "output": output.get("name"), "recipe": _recipe(report).get("name")}
    source = report.get("source")
    if isinstance(source, dict) and source.get("sha256"):
        expected["source_sha256"] = source["sha256"]
    differing = sorted(key for key in {*found, *expected} if found.get(key) != expected.get(key))
    if not differing:
        return None
    shown = ", ".join(f"{key} {found.get(key)!r} where the report has {expected.get(key)!r}" for key in differing)
    return f"its metadata disagrees with the report: {shown}"


def _verified(path: Path, digest: str, where: str, provenance: Provenance | None) -> str:
    lines = [f"verified: {one_line(path)} is {where}, which passed", f"  sha256    {digest}"]
    if provenance is not None:
        version = f"version {provenance.model_version}" if provenance.model_version else "no version"
        lines.append(f"  recipe    {provenance.recipe} ({version}), recipe sha256 {provenance.recipe_sha256}")
        lines.append(f"  stages    {STAGE_SEPARATOR.join(provenance.stages)}")
        lines.append(f"  source    sha256 {provenance.source_sha256}")
        git = f", git {provenance.git_commit}{' (dirty)' if provenance.git_dirty else ''}"
        lines.append(f"  edgeport  {provenance.edgeport_version}{git if provenance.git_commit else ''}")
    return "\n".join([lines[0], *(one_line(line) for line in lines[1:])])
