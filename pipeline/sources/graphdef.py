"""A TensorFlow 1 GraphDef read as a graph of named nodes: its placeholders, its likely outputs, what an output
depends on, and the repairs a frozen graph shipped from the field needs before TensorFlow imports it.

Also what an untrusted graph holds that is not pure computation (`graph_elements_refused`): every node of the
graph and of every function in its library, whether reachable or not, held to pipeline/sources/allowlist/ops.py.

Works on the protobuf message only (no graph is built, no session runs); knows nothing of recipes or stages.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.errors import ModelError
from pipeline.sources.allowlist.ops import ALLOWED_OPS, ASSET_OPS, FUNCTION_ATTR_OPS, SAVER_OPS
from pipeline.sources.trust import TRUST_HINT

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
        and not _is_cond_pivot(node, ops)
        and node.op not in _NOT_OUTPUTS
        and not node.op.startswith(("Apply", "ResourceApply", "Save", "Restore"))
        and not node.name.startswith(_BOOKKEEPING_SCOPES)
        and not any(word in node.name.lower() for word in _TRAINING_WORDS)
    ]


def _is_cond_pivot(node: Any, ops: dict[str, str]) -> bool:
    """`cond/switch_t`, `cond/switch_f`: v1 `tf.cond`'s branch pivots, left unconsumed by a branch that returns
    its input as it is (`lambda: h`); never an output."""
    switch = ops.get(node_name(node.input[0]) if node.input else "")
    return node.op == "Identity" and switch in ("Switch", "RefSwitch") and node.name.endswith(("switch_t", "switch_f"))


def upstream(
    graph_def: Any, outputs: Iterable[str], stop: Iterable[str] = (), inputs_of: dict[str, list[str]] | None = None
) -> set[str]:
    """The nodes the outputs depend on (data and control inputs), not walking past the `stop` nodes; `inputs_of`:
    each node's inputs, where a caller walks the same graph twice."""
    if inputs_of is None:
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


# --- what an untrusted graph may hold ------------------------------------------------------------------

_SHOWN = 5


@dataclass(frozen=True)
class RefusedElement:
    """One element of a graph that is not pure computation: an op at a node (of a library function, or of the
    top-level graph when `function` is None), or an asset file (`op` empty, `why` says which)."""

    op: str
    node: str
    function: str | None = None
    why: str = ""

    def describe(self) -> str:
        if not self.op:
            return self.why
        where = f" in function {self.function!r}" if self.function else ""
        return f"op {self.op!r} at node {self.node!r}{where}" + (f" ({self.why})" if self.why else "")


def graph_elements_refused(
    graph_def: Any,
    saver_def: Any = None,
    asset_tensors: Iterable[str] = (),
    asset_arguments: dict[str, set[str]] | None = None,
) -> list[RefusedElement]:
    """Every node of `graph_def` and of every function in its library whose op is neither on the allowlist nor a
    function of the library (checked as one). Saver ops pass only where `saver_def`'s save and restore ops reach
    them and nothing else does; a table filled from a text file only from one of `asset_tensors` (top level) or
    from a function argument that every caller feeds from one (`asset_arguments`: those the SavedModel loader
    binds to the model's assets)."""
    functions = {function.signature.name: function for function in graph_def.library.function}
    saver_only = _saver_only_nodes(graph_def, saver_def)
    top = {node.name: _calls(node, functions) for node in graph_def.node}
    inner = {name: {c for node in f.node_def for c in _calls(node, functions)} for name, f in functions.items()}
    # The SavedModel loader calls the object graph's functions itself (signatures, initializers): never the saver's.
    loaded = list(asset_arguments or {})
    others = _reached(inner, [c for name, calls in top.items() if name not in saver_only for c in calls] + loaded)
    saver_functions = _reached(inner, [callee for name in saver_only for callee in top.get(name, [])]) - others
    fed = _asset_fed_arguments(graph_def, functions, inner, set(asset_tensors), asset_arguments or {})
    filename = {node_name(saver_def.filename_tensor_name)} if saver_def is not None else set()
    refused = _nodes_refused(graph_def.node, None, functions, saver_only, set(asset_tensors), filename)
    for name, function in functions.items():
        names = {node.name for node in function.node_def} if name in saver_functions else set()
        arguments = {argument.name for argument in function.signature.input_arg}
        refused += _nodes_refused(function.node_def, name, functions, names, fed.get(name, set()), arguments)
    return refused


def meta_graph_elements_refused(meta_graph: Any) -> list[RefusedElement]:
    """A meta graph (a SavedModel's or a Saver checkpoint's): its graph and library under its own saver, and its
    asset files, which must sit in the model's assets folder (no absolute path, no `..`)."""
    assets = list(meta_graph.asset_file_def)
    saver = meta_graph.saver_def if meta_graph.HasField("saver_def") else None
    tensors = [node_name(asset.tensor_info.name) for asset in assets]
    refused = graph_elements_refused(meta_graph.graph_def, saver, tensors, _asset_arguments(meta_graph))
    for asset in assets:
        if asset_escapes(asset.filename):
            why = f"asset file {asset.filename!r} of tensor {asset.tensor_info.name!r} is outside the model's assets"
            refused.append(RefusedElement("", asset.tensor_info.name, None, why))
    return refused


def _asset_arguments(meta_graph: Any) -> dict[str, set[str]]:
    """Per function of the object graph, the arguments the loader binds to an asset (its captures come last)."""
    objects = meta_graph.object_graph_def.nodes
    functions = {function.signature.name: function for function in meta_graph.graph_def.library.function}
    found: dict[str, set[str]] = {}
    for name, concrete in meta_graph.object_graph_def.concrete_functions.items():
        arguments = list(functions[name].signature.input_arg) if name in functions else []
        captured = arguments[len(arguments) - len(concrete.bound_inputs) :] if concrete.bound_inputs else []
        found[name] = {
            argument.name
            for argument, index in zip(captured, concrete.bound_inputs, strict=False)
            if index < len(objects) and objects[index].WhichOneof("kind") == "asset"
        }
    return found


def saved_model_elements_refused(saved_model: Any) -> list[RefusedElement]:
    return [element for meta in saved_model.meta_graphs for element in meta_graph_elements_refused(meta)]


def asset_escapes(filename: str) -> bool:
    parts = PurePosixPath(filename.replace("\\", "/")).parts
    return not parts or filename.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]


def refuse_untrusted(path: Path, refused: list[RefusedElement], what: str = "graph") -> None:
    """A ModelError naming up to five refused elements and how to trust the model; nothing when none."""
    if not refused:
        return
    # One line an op, its first node named: a graph of 800 dataset nodes would otherwise hide the one op that
    # reads a file. Functions first: what runs code hides there, behind an allowed call at the top.
    firsts: dict[str, RefusedElement] = {}
    counts: dict[str, int] = {}
    for element in sorted(refused, key=lambda element: element.function is None):
        firsts.setdefault(element.op or element.why, element)
        counts[element.op or element.why] = counts.get(element.op or element.why, 0) + 1
    lines = [
        firsts[key].describe() + (f" (and {counts[key] - 1} more)" if counts[key] > 1 else "")
        for key in list(firsts)[:_SHOWN]
    ]
    more = f"; and {len(firsts) - _SHOWN} more kinds of op" if len(firsts) > _SHOWN else ""
    shown = "; ".join(lines)
    raise ModelError(
        f"{path}: refused: the {what} holds ops that are not pure computation (they can read or write files, "
        f"load libraries or run code when it loads or runs): {shown}{more}; {TRUST_HINT}"
    )


_RESTORE_OPS = frozenset({"Restore", "RestoreSlice", "RestoreV2"})


def _nodes_refused(
    nodes: Any,
    function: str | None,
    functions: dict[str, Any],
    saver_only: set[str],
    assets: set[str],
    prefixes: frozenset[str] | set[str] = frozenset(),
) -> list[RefusedElement]:
    """`prefixes`: where a restore op may take the checkpoint path from (the saver's filename tensor, or the
    function's arguments): a constant path would read another checkpoint than the one the run names."""
    by_name = {node.name: node for node in nodes}
    refused = []
    for node in nodes:
        if node.op in ALLOWED_OPS or node.op in functions:
            continue
        if node.op in _RESTORE_OPS and node.name in saver_only and node.input:
            if _source_of(by_name, node.input[0]) in prefixes:
                continue
            refused.append(RefusedElement(node.op, node.name, function, "reads a checkpoint the saver is not given"))
            continue
        if node.op in SAVER_OPS and node.name in saver_only:
            continue
        if node.op in ASSET_OPS:
            if len(node.input) > 1 and _source_of(by_name, node.input[1]) in assets:
                continue
            refused.append(RefusedElement(node.op, node.name, function, "reads a file that is not an asset"))
            continue
        why = "the saver's own restore or save op runs it" if node.name in saver_only else ""
        refused.append(RefusedElement(node.op, node.name, function, why))
    return refused


_CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})


def _asset_fed_arguments(
    graph_def: Any, functions: dict[str, Any], inner: dict[str, set[str]], assets: set[str], bound: dict[str, set[str]]
) -> dict[str, set[str]]:
    """Per function, the arguments that hold an asset's path wherever it is called: at every top-level call (an
    asset tensor, or a variable assigned only from one, as TF2 writes the TF1 init op) and in the loader's binding;
    a function that another function, or a non-call attr, names gets none."""
    nodes = {node.name: node for node in graph_def.node}
    fed = {name: set(bound.get(name, {arg.name for arg in functions[name].signature.input_arg})) for name in functions}
    for name in {callee for calls in inner.values() for callee in calls}:
        fed[name] = set()
    for node in graph_def.node:
        direct = node.op if node.op in functions else None
        if node.op in _CALL_OPS and "f" in node.attr:
            direct = node.attr["f"].func.name
        for callee in _calls(node, functions):
            if callee != direct:
                fed[callee] = set()
        if direct in functions:
            data = [tensor for tensor in node.input if not tensor.startswith("^")]
            arguments = functions[direct].signature.input_arg
            fed[direct] &= {
                arg.name for arg, tensor in zip(arguments, data, strict=False) if _is_asset(nodes, tensor, assets)
            }
    return fed


def _is_asset(nodes: dict[str, Any], tensor: str, assets: set[str]) -> bool:
    source = _source_of(nodes, tensor)
    if source in assets:
        return True
    if source not in nodes or nodes[source].op != "ReadVariableOp" or not nodes[source].input:
        return False
    variable = node_name(nodes[source].input[0])
    assigned = [n for n in nodes.values() if n.op == "AssignVariableOp" and node_name(n.input[0]) == variable]
    return bool(assigned) and all(_source_of(nodes, n.input[1]) in assets for n in assigned)


def _source_of(nodes: dict[str, Any], tensor: str) -> str:
    """The node (or function argument) a tensor comes from, past Identity nodes."""
    name, seen = node_name(tensor), set()
    while name in nodes and nodes[name].op == "Identity" and nodes[name].input and name not in seen:
        seen.add(name)
        name = node_name(nodes[name].input[0])
    return name


def _saver_only_nodes(graph_def: Any, saver_def: Any) -> set[str]:
    """The nodes the saver's save and restore ops depend on that nothing else depends on."""
    if saver_def is None:
        return set()
    roots = [name for name in (saver_def.save_tensor_name, saver_def.restore_op_name) if name]
    if not roots:
        return set()
    inputs_of = {node.name: [node_name(name) for name in node.input] for node in graph_def.node}
    saver = upstream(graph_def, roots, inputs_of=inputs_of)
    others = [node.name for node in graph_def.node if node.name not in saver]
    return saver - upstream(graph_def, others, inputs_of=inputs_of)


def _calls(node: Any, functions: dict[str, Any]) -> list[str]:
    """The library functions a node calls: as its op, or named in an attr (While's cond/body, a dataset's `f`)."""
    names = [node.op] if node.op in functions else []
    if node.op in ALLOWED_OPS and node.op not in FUNCTION_ATTR_OPS:
        return names  # its op declares no function attr: TensorFlow calls nothing an attr names
    for value in node.attr.values():
        kind = value.WhichOneof("value")
        if kind == "func":
            names.append(value.func.name)
        elif kind == "list" and value.list.func:
            names += [func.name for func in value.list.func]
    return [name for name in names if name in functions]


def _reached(calls: dict[str, set[str]], pending: list[str]) -> set[str]:
    """The functions named in `pending`, and those they call in turn."""
    reached: set[str] = set()
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending += calls.get(name, ())
    return reached


# --- training switches, read from the file's bytes without TensorFlow (`validate` imports none) ------------

# A scalar placeholder named like a training switch, or a dropout keep probability.
_SWITCH_NAMES = re.compile(r"(is_?)?train(ing)?(_?(phase|mode))?|phase_?train", re.IGNORECASE)
_KEEP_NAMES = re.compile(r"\w*keep_?prob(ability)?", re.IGNORECASE)
_DT_FLOAT, _DT_DOUBLE, _DT_BOOL = 1, 2, 10
_MAX_IDENTITIES = 8


@dataclass(frozen=True)
class TrainingSwitch:
    """A PlaceholderWithDefault whose default keeps the graph training: a switch defaulting to True, or a keep
    probability below 1."""

    name: str
    default: bool | float

    def warning(self, place: str) -> str:
        fed = "false" if isinstance(self.default, bool) else "1.0"
        shown = "True" if self.default is True else f"{self.default:g}"
        what = "run in training mode (batch statistics, dropout)" if fed == "false" else "keep dropout on"
        return (
            f"{place}: placeholder {self.name} defaults to {shown}: the reference and every file it makes {what}; "
            f"add `feeds: {{{self.name}: {fed}}}` to the source"
        )


def training_switches(data: bytes, meta: bool, outputs: Iterable[str] | None = None) -> list[TrainingSwitch]:
    """The training switches in a serialized GraphDef (`meta`: a MetaGraphDef) that `outputs` depend on (None: in
    the whole graph). Read from the protobuf wire format: TensorFlow takes seconds to import, and a file it cannot
    parse is the run's to report, so a malformed one gives none here."""
    try:
        graph = _wire_field(memoryview(data), 2) if meta else memoryview(data)
        nodes = {} if graph is None else _wire_nodes(graph)
    except (ValueError, IndexError, struct.error, UnicodeDecodeError):
        return []
    needed = None if outputs is None else upstream(None, outputs, inputs_of={n: i for n, (_, i, _) in nodes.items()})
    found = []
    for name, (op, inputs, _) in nodes.items():
        short = name.rsplit("/", 1)[-1]
        if op != "PlaceholderWithDefault" or not inputs or (needed is not None and name not in needed):
            continue
        default = _const_default(nodes, node_name(inputs[0]))
        if isinstance(default, bool) and default and _SWITCH_NAMES.fullmatch(short):
            found.append(TrainingSwitch(name, True))
        elif isinstance(default, float) and default != 1.0 and _KEEP_NAMES.fullmatch(short):
            found.append(TrainingSwitch(name, default))
    return found


def _const_default(nodes: dict[str, tuple[str, list[str], memoryview]], name: str) -> bool | float | None:
    """The scalar a default input holds: a Const, seen through Identity ops."""
    for _ in range(_MAX_IDENTITIES):
        op, inputs, body = nodes.get(name, ("", [], memoryview(b"")))
        if op == "Const":
            return _scalar(body)
        if op != "Identity" or not inputs:
            return None
        name = node_name(inputs[0])
    return None


def _wire_nodes(graph: memoryview) -> dict[str, tuple[str, list[str], memoryview]]:
    """GraphDef.node (field 1): name (1), op (2), inputs (3) and the NodeDef's bytes, for its attributes."""
    nodes = {}
    for number, _, body in _wire_fields(graph):
        if number != 1:
            continue
        fields = [(n, value) for n, _, value in _wire_fields(body) if n in (1, 2, 3)]
        name = next((bytes(v).decode() for n, v in fields if n == 1), "")
        op = next((bytes(v).decode() for n, v in fields if n == 2), "")
        nodes[name] = (op, [bytes(v).decode() for n, v in fields if n == 3], body)
    return nodes


def _scalar(node: memoryview) -> bool | float | None:
    """A Const's `value` attribute (NodeDef.attr is field 5; AttrValue.tensor field 8): its first element when it
    is a bool or a float, from the typed field or from tensor_content."""
    value = next(
        (_wire_field(entry, 2) for n, _, entry in _wire_fields(node) if n == 5 and _key(entry) == "value"), None
    )
    tensor = None if value is None else _wire_field(value, 8)
    if tensor is None:
        return None
    fields = list(_wire_fields(tensor))
    dtype = next((v for n, _, v in fields if n == 1), 0)
    content = next((bytes(v) for n, _, v in fields if n == 4), b"")
    if dtype == _DT_BOOL:
        typed = next((v for n, _, v in fields if n == 11), None)
        first = content[:1] or (bytes(typed[:1]) if isinstance(typed, memoryview) else bytes([typed or 0]))
        return bool(first[:1] and first[0])
    formats = {_DT_FLOAT: ("<f", 5), _DT_DOUBLE: ("<d", 6)}
    if dtype not in formats:
        return None
    form, number = formats[dtype]
    typed = next((v for n, _, v in fields if n == number), None)
    raw = content or (bytes(typed) if typed is not None else b"")
    return struct.unpack_from(form, raw)[0] if raw else 0.0


def _key(entry: memoryview) -> str:
    return next((bytes(v).decode() for n, _, v in _wire_fields(entry) if n == 1), "")


def _wire_field(message: memoryview, number: int) -> memoryview | None:
    return next((v for n, wire, v in _wire_fields(message) if n == number and wire == 2), None)


def _wire_fields(message: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message: an int for a varint, bytes for a fixed field, a view of
    the bytes for a length-delimited one (nothing copied: a frozen graph's weights are skipped, not read)."""
    position = 0
    while position < len(message):
        key, position = _varint(message, position)
        wire = key & 7
        if wire == 0:
            value, position = _varint(message, position)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, position = bytes(message[position : position + size]), position + size
        elif wire == 2:
            length, position = _varint(message, position)
            value, position = message[position : position + length], position + length
        else:
            raise ValueError(f"protobuf wire type {wire}")
        if position > len(message):
            raise ValueError("truncated protobuf message")
        yield key >> 3, wire, value


def _varint(message: memoryview, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = message[position]
        value |= (byte & 0x7F) << shift
        position += 1
        if byte < 0x80:
            return value, position
        shift += 7
        if shift > 63:
            raise ValueError("protobuf varint too long")
