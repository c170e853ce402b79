"""The XNNPACK target: which operators LiteRT's XNNPACK delegate takes, and which stay on reference kernels.

Measured, not predicted: the file is loaded in ai-edge-litert with its default delegate applied, whose node list
then holds the original operators followed by one DELEGATE node per partition the delegate took (the delegate's
"Replacing N out of M node(s)" log line is not printed by ai-edge-litert 2.3.0). A partition's operators are found
by walking back from its outputs to its inputs; every other operator runs on LiteRT's reference kernels.

Knows LiteRT and nothing of recipes, runs or reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pipeline.frameworks import captured_native_output, litert_interpreter
from pipeline.targets.base import Operator, Target, TargetContext, TargetReport, Unsupported, operator_of

REASON = "not taken by the XNNPACK delegate: runs on LiteRT's reference kernels"


def delegated_nodes(path: Path) -> tuple[list[Operator], list[set[int]]]:
    """The file's operators, and per XNNPACK partition the indices of the operators it replaced."""
    with captured_native_output():
        interpreter = litert_interpreter(path)
        interpreter.allocate_tensors()  # applies the default delegate
        details: list[dict[str, Any]] = interpreter._get_ops_details()
    operators = [operator_of(detail) for detail in details if detail["op_name"] != "DELEGATE"]
    partitions = [_members(operator_of(detail), operators) for detail in details if detail["op_name"] == "DELEGATE"]
    return operators, partitions


def _members(delegate: Operator, operators: list[Operator]) -> set[int]:
    """Operators inside a delegate partition: producers reached from its outputs before reaching its inputs."""
    producer = {tensor: op for op in operators for tensor in op.outputs}
    boundary, members = set(delegate.inputs), set()
    pending = [tensor for tensor in delegate.outputs if tensor not in boundary]
    while pending:
        op = producer.get(pending.pop())
        if op is None or op.index in members:
            continue
        members.add(op.index)
        pending += [tensor for tensor in op.inputs if tensor >= 0 and tensor not in boundary]
    return members


class XnnpackTarget(Target):
    name: ClassVar[str] = "xnnpack"

    def analyze(self, context: TargetContext) -> TargetReport:
        operators, partitions = delegated_nodes(context.artifact.path)
        taken = set().union(*partitions) if partitions else set()
        unsupported = [Unsupported(op.name, op.index, REASON) for op in operators if op.index not in taken]
        details = {"nodes": len(operators), "delegated_nodes": len(taken), "partitions": len(partitions)}
        return TargetReport(self.name, not unsupported, unsupported, details)
