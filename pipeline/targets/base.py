"""What every target analysis shares: the context it runs in, the report it gives, the gate row it becomes, and
the file's operators as LiteRT lists them.

Knows runtimes (LiteRT reads the file), the evaluation glue and parity results; nothing of recipes, stages, runs or
reports. A target never raises for a file it cannot take: it says so in its report.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipeline.core.artifact import Artifact
from pipeline.data import Dataset
from pipeline.evaluate import Predictions
from pipeline.frameworks import captured_native_output, litert_interpreter
from pipeline.parity import GateResult, ParityResult


@dataclass
class TargetContext:
    """An output's .tflite file, and what parity on a target compares it with: the source's outputs on the
    evaluation data."""

    artifact: Artifact
    evaluation: Dataset
    reference: Predictions
    batch_size: int
    tensor_map: dict[str, str] = field(default_factory=dict)
    input_map: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Unsupported:
    """An operator a target cannot take: its name, its index in the subgraph, and why."""

    op: str
    index: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "index": self.index, "reason": self.reason}


@dataclass
class TargetReport:
    """`outputs[].targets.<name>` in report.json: compatible, the unsupported operators, and what the target
    measured (`details`, `parity`)."""

    target: str
    compatible: bool
    unsupported: list[Unsupported] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    parity: ParityResult | None = None

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "compatible": self.compatible,
            "unsupported": [op.to_dict() for op in self.unsupported],
            **self.details,
        }
        if self.parity is not None:
            entry["parity"] = self.parity.to_dict()
        return entry

    def gate(self) -> GateResult:
        """The `target <name>` row every report format shows: 1 when the target takes the whole file."""
        note = None if self.compatible else self.summary()
        value = 1.0 if self.compatible else 0.0
        return GateResult(f"target {self.target}", ">=", 1.0, value, self.compatible, note)

    def summary(self) -> str:
        """`TOPK_V2 #1: Not supported op TOPK_V2; ...`: the first few unsupported operators in one line."""
        if not self.unsupported:
            return str(self.details.get("error") or "not compatible")
        shown = "; ".join(f"{op.op} #{op.index}: {op.reason}" for op in self.unsupported[:4])
        more = len(self.unsupported) - 4
        return shown + (f"; and {more} more" if more > 0 else "")


class Target(ABC):
    """One deployment target: analyses an output's .tflite file and reports whether the target can take it."""

    name: ClassVar[str]

    @abstractmethod
    def analyze(self, context: TargetContext) -> TargetReport:
        """Measure the file for this target; a file the target cannot take is a report, not an exception."""


@dataclass(frozen=True)
class Operator:
    """One operator of a .tflite file's main subgraph, as LiteRT lists it (no delegate applied)."""

    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    types: tuple[str, ...]  # numpy dtype names of its operands and results


def litert_operators(path: Path) -> list[Operator]:
    """The file's operators in execution order, read by LiteRT with no delegate."""
    with captured_native_output():
        interpreter = litert_interpreter(path, delegate="none")
        details = interpreter._get_ops_details()
    return [operator_of(detail) for detail in details]


def operator_of(detail: dict[str, Any]) -> Operator:
    types = [*detail.get("operand_types", []), *detail.get("result_types", [])]
    return Operator(
        index=int(detail["index"]),
        name=str(detail["op_name"]),
        inputs=tuple(int(i) for i in detail["inputs"]),
        outputs=tuple(int(i) for i in detail["outputs"]),
        types=tuple(np.dtype(kind).name for kind in types),
    )
