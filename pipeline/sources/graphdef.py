"""A TensorFlow 1 GraphDef read as a graph of named nodes: its placeholders, its likely outputs, what an output
depends on, and the repairs a frozen graph shipped from the field needs before TensorFlow imports it.

Works on the protobuf message only (no graph is built, no session runs); knows nothing of recipes or stages.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

PLACEHOLDERS = frozenset({"Placeholder", "PlaceholderWithDefault"})
# Variable updates: after freezing the variables are constants, so an update (a batch-norm branch for training,
# an optimizer step) names a constant where TensorFlow wants a resource or ref, and importing the graph fails.
ASSIGNMENTS = frozenset(
    {"Assign", "AssignAdd", "AssignSub", "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp"}
)
_REF_OPS = {
    "RefSwitch": "Switch", "RefMerge": "Merge", "RefIdentity": "Identity", "RefEnter": "Enter", "RefExit": "Exit",
    "RefNextIteration": "NextIteration",
}  # fmt: skip
# Ops that touch files or run Python when the graph runs: a graph from elsewhere that has them on the way to its
# outputs runs them in the reference, so they need trust.
EFFECTFUL = frozenset(
    {
        "ReadFile", "WriteFile", "MatchingFiles", "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2",
        "RestoreSlice", "MergeV2Checkpoints", "ShardedFilename", "PyFunc", "PyFuncStateless", "EagerPyFunc",
        "ImmutableConst", "PrintV2", "WriteSummary", "WriteScalarSummary", "CreateSummaryFileWriter",
    }
)  # fmt: skip
# Never an output a user wants: training, saving, bookkeeping and constants.
_NOT_OUTPUTS = ASSIGNMENTS | EFFECTFUL | PLACEHOLDERS | frozenset(
    {"NoOp", "Const", "VarHandleOp", "VariableV2", "Variable", "VarIsInitializedOp", "Assert",
     "IsVariableInitialized", "ReadVariableOp", "Iterator", "IteratorV2", "IteratorGetNext", "MakeIterator",
     "OneShotIterator", "IteratorToStringHandle", "Shape", "Size", "Rank"}
)  # fmt: skip
_VARIABLES = frozenset({"VariableV2", "Variable", "VarHandleOp", "ReadVariableOp"})
_BOOKKEEPING_SCOPES = ("save/", "gradients/", "report_uninitialized_variables")
_TRAINING_WORDS = ("loss", "cross_entropy", "optimizer", "train_op")


@dataclass(frozen=True)
class Placeholder:
    name: str
    dtype: str
    shape: tuple[int | None, ...] | None  # None: unknown rank
    has_default: bool

    def describe(self) -> dict[str, Any]:
        shape = None if self.shape is None else ["?" if d is None else d for d in self.shape]
        return {"name": self.name, "dtype": self.dtype, "shape": shape, "default": self.has_default}


def node_name(tensor: str) -> str:
    """`scope/op:1` → `scope/op`; `^op` (a control input) → `op`."""
    return tensor.lstrip("^").split(":")[0]


def tensor_name(name: str) -> str:
    """A tensor as TensorFlow names it: `op` → `op:0`, `op:1` unchanged."""
    return name if ":" in name else f"{name}:0"


def placeholders(graph_def: Any) -> list[Placeholder]:
    from tensorflow.python.framework import dtypes, tensor_shape

    found = []
    for node in graph_def.node:
        if node.op not in PLACEHOLDERS:
            continue
        dtype = dtypes.as_dtype(node.attr["dtype"].type).name
        shape = tensor_shape.TensorShape(node.attr["shape"].shape) if "shape" in node.attr else None
        dims = None if shape is None or shape.rank is None else tuple(shape.as_list())
        found.append(Placeholder(node.name, dtype, dims, node.op == "PlaceholderWithDefault"))
    return found


def likely_outputs(graph_def: Any) -> list[str]:
    """Ops no other op consumes, less training, saving and bookkeeping: what a user most likely wants out."""
    consumed = {node_name(name) for node in graph_def.node for name in node.input}
    ops = {node.name: node.op for node in graph_def.node}
    return [
        node.name
        for node in graph_def.node
        if node.name not in consumed
        and not (node.op == "Identity" and ops.get(node_name(node.input[0]) if node.input else "") in _VARIABLES)
        and node.op not in _NOT_OUTPUTS
        and not node.op.startswith(("Apply", "ResourceApply", "Save", "Restore"))
        and not node.name.startswith(_BOOKKEEPING_SCOPES)
        and not any(word in node.name.lower() for word in _TRAINING_WORDS)
    ]


def upstream(graph_def: Any, outputs: Iterable[str], stop: Iterable[str] = ()) -> set[str]:
    """The nodes the outputs depend on (data and control inputs), not walking past the `stop` nodes."""
    inputs_of = {node.name: [node_name(name) for name in node.input] for node in graph_def.node}
    stopped = set(stop)
    seen: set[str] = set()
    pending = [node_name(name) for name in outputs]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        if name not in stopped:
            pending.extend(inputs_of.get(name, []))
    return seen


def ops_of(graph_def: Any, names: set[str]) -> dict[str, str]:
    return {node.name: node.op for node in graph_def.node if node.name in names}


def without_assignments(graph_def: Any) -> tuple[Any, list[str]]:
    """A copy without variable updates (control inputs on them dropped, a value read from a ref update read from
    the variable, now a constant, instead) and with ref-typed control flow (TF 1.x's ref variables) made plain;
    the names of the updates dropped."""
    dropped = {node.name: node.input[0] for node in graph_def.node if node.op in ASSIGNMENTS}
    refs = [node.name for node in graph_def.node if node.op in _REF_OPS]
    if not dropped and not refs:
        return graph_def, []
    repaired = type(graph_def)()
    repaired.CopyFrom(graph_def)
    del repaired.node[:]
    for node in graph_def.node:
        if node.name in dropped:
            continue
        kept = repaired.node.add()
        kept.CopyFrom(node)
        kept.op = _REF_OPS.get(node.op, node.op)
        del kept.input[:]
        for name in node.input:
            if node_name(name) not in dropped:
                kept.input.append(name)
            elif not name.startswith("^"):
                kept.input.append(dropped[node_name(name)])
    return repaired, sorted(dropped)


def without_output_shapes(graph_def: Any) -> Any:
    """A copy without `_output_shapes` attributes (hints some exporters wrote that disagree with the graph, and
    that make TensorFlow refuse to import it)."""
    repaired = type(graph_def)()
    repaired.CopyFrom(graph_def)
    for node in repaired.node:
        if "_output_shapes" in node.attr:
            del node.attr["_output_shapes"]
    return repaired


def with_defaults_inlined(graph_def: Any, keep: set[str]) -> Any:
    """A copy where each PlaceholderWithDefault not in `keep` is an Identity of its default: a default is a
    constant to the model, and converters would otherwise make it an input of the file (tf2onnx does)."""
    repaired = type(graph_def)()
    repaired.CopyFrom(graph_def)
    for node in repaired.node:
        if node.op == "PlaceholderWithDefault" and node.name not in keep:
            node.op = "Identity"
            node.attr["T"].CopyFrom(node.attr["dtype"])
            del node.attr["dtype"]
            del node.attr["shape"]
    return repaired
