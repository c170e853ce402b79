"""An output's result, typed while the run fills it and serialised once into the report's `outputs` entry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.parity import GateResult, ParityResult
from pipeline.run.checker import Check
from pipeline.run.plan import OutputPlan
from pipeline.stages import STAGES


@dataclass
class OutputResult:
    name: str
    format: str
    gates_from: str
    published: dict[str, Any] = field(default_factory=dict)  # runtime, artifact, sha256, sizes
    stages: list[dict[str, Any]] = field(default_factory=list)
    check: Check | None = None
    latency: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    reproducible: dict[str, Any] | None = None  # the rebuild's comparison (--verify-reproducible)
    baseline: dict[str, Any] | None = None  # metric → previous, current, limit, regressed (--baseline)

    @classmethod
    def for_plan(cls, plan: OutputPlan) -> OutputResult:
        return cls(name=plan.name, format=STAGES[plan.nodes[-1].kind].gives, gates_from=plan.gates_from)

    @property
    def status(self) -> str:
        """passed | failed | error: the one rule, read from the check's gates (error until one ran, or when the chain
        or the check failed). Gates judged after the check (baseline, rebuild) are among them: see `add_gate`."""
        if self.error is not None or self.check is None:
            return "error"
        return "passed" if self.check.passed else "failed"

    @property
    def parity(self) -> ParityResult | None:
        return self.check.parity if self.check else None

    def add_gate(self, gate: GateResult) -> None:
        """A gate judged after the check (against a baseline, a rebuild): one more of the output's gates, so a
        failing one fails the output through `status` like any other, before the entry is written."""
        if self.check is None:
            raise ValueError(f"output {self.name!r} has no check to add a {gate.metric} gate to")
        self.check.parity.gates.append(gate)

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "format": self.format,
            "runtime": self.published.get("runtime"),
            "artifact": self.published.get("artifact"),
            "sha256": self.published.get("sha256"),
            "size_bytes": self.published.get("size_bytes"),
            "gzip_bytes": self.published.get("gzip_bytes"),
            "provenance": self.published.get("provenance"),  # what the shipped .tflite / .onnx says made it
            "stages": self.stages,
            "gates_from": self.gates_from,
            "parity": self.check.parity.to_dict() if self.check else None,
            "comparisons": [comparison.to_dict() for comparison in self.check.comparisons] if self.check else [],
            "findings": self.check.findings if self.check else [],
            "warnings": self.warnings,
            "rescues": [rescue for stage in self.stages for rescue in (stage.get("details") or {}).get("rescues", [])],
            "error": self.error,
        }
        if self.check is not None and self.check.targets:
            entry["targets"] = {name: report.to_dict() for name, report in self.check.targets.items()}
        if self.latency is not None:
            entry["latency"] = self.latency
        if self.reproducible is not None:
            entry["reproducible"] = self.reproducible
        if self.baseline is not None:
            entry["baseline"] = self.baseline
        return entry
