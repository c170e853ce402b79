"""TF1 control flow v1's TensorArrays (`TensorArrayV3` and its reads and writes) rewritten as the tensor lists that
control flow v2 makes of the same code, for TFLite only: its builtins lower tensor lists (at fixed shapes) and have no
kernel for TensorArrayV3, and no converter flag turns one into the other. ONNX keeps the graph as it is: tf2onnx
turns v1 arrays into Scan / Loop, and a v1 loop over tensor lists into a file onnxruntime refuses.

A v1 array is a resource handle plus a float "flow" scalar that orders its writes; a tensor list is a value, so the
list takes the flow's place (and its type, `DT_VARIANT`, along every Enter/Merge/Switch/Identity/NextIteration/Exit
the flow passes), and the handle, with the Enter/Identity nodes that carry it into loops, goes. Measured on a frozen
`tf.compat.v1.nn.dynamic_rnn` LSTM and a `tf.compat.v1.scan`: outputs identical to the graph's own (difference 0.0),
fp32 TFLite at 3.5e-8 and 3e-7. All or nothing: nodes with an array use this does not know stay as they are.
Works on a GraphDef's nodes (`name:port` references) and a FunctionDef's (`name:output_arg:index`); knows the protos
only (no TensorFlow import), nothing of recipes or reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

_ARRAY = "TensorArrayV3"
_PASSING = ("Enter", "Identity")  # what carries a handle into a loop
_FLOWING = ("Enter", "Merge", "Switch", "Identity", "NextIteration", "Exit")  # what a flow passes through
_ONE_DATA_INPUT = ("Enter", "Switch", "Identity", "NextIteration", "Exit")
_LISTS = ("TensorListReserve", "TensorListFromTensor", "TensorListSetItem", "TensorListScatterIntoExistingList")
_DT_INT32, _DT_RESOURCE, _DT_VARIANT = 3, 20, 21  # tensorflow.core.framework.types_pb2
# Each rewritten op's output as a FunctionDef names it: the array's and the list's (a GraphDef numbers both 0, but
# for the array's flow, 1).
_OUTPUTS = {
    "TensorListReserve": ("flow", "handle"),
    "TensorListSetItem": ("flow_out", "output_handle"),
    "TensorListGetItem": ("value", "item"),
    "TensorListGather": ("value", "values"),
    "TensorListStack": ("value", "tensor"),
    "TensorListFromTensor": ("flow_out", "output_handle"),
    "TensorListScatterIntoExistingList": ("flow_out", "output_handle"),
    "TensorListLength": ("size", "length"),
}


class _Unknown(Exception):
    """An array use the rewrite does not know: the nodes stay as they are."""


def node_name(ref: str) -> str:
    return ref.lstrip("^").split(":")[0]


def has_tensor_arrays(nodes: Any) -> bool:
    return any(node.op == _ARRAY for node in nodes)


def tensor_arrays_as_lists(nodes: Any, function: bool = False) -> list[str]:
    """Rewrite the repeated NodeDef field `nodes` (a GraphDef's `node`, or with `function` a FunctionDef's
    `node_def`) in place, with its TensorArrays as tensor lists; the arrays' names, or [] (and `nodes` untouched)
    when there are none or one is used in a way not rewritten here (TensorArrayConcatV3, a handle through a
    Switch, ...). A FunctionDef's `ret` references: `renamed_outputs` of the answer's rewrite."""
    if not has_tensor_arrays(nodes):
        return []
    rewrite = _Rewrite([_copy(node) for node in nodes], function)
    try:
        kept = rewrite.run()
    except _Unknown:
        return []
    del nodes[:]
    nodes.extend(kept)
    return sorted(rewrite.shapes)


def function_tensor_arrays_as_lists(function_def: Any) -> list[str]:
    """A FunctionDef rewritten in place (nodes and the `ret` references to them); the arrays' names, or []."""
    before = {node.name: node.op for node in function_def.node_def}
    arrays = tensor_arrays_as_lists(function_def.node_def, function=True)
    if arrays:
        renames = _renames(function_def.node_def, before, function=True)
        for key, ref in list(function_def.ret.items()):
            function_def.ret[key] = renames.get(ref, ref)
    return arrays


class _Rewrite:
    def __init__(self, nodes: list[Any], function: bool) -> None:
        self.all = nodes
        self.function = function
        self.nodes = {node.name: node for node in nodes}
        self.shapes = {node.name: _element_shape(node) for node in nodes if node.op == _ARRAY}
        self.dynamic = {node.name for node in nodes if node.op == _ARRAY and node.attr["dynamic_size"].b}
        self.constants: list[Any] = []

    def run(self) -> list[Any]:
        before = {node.name: node.op for node in self.all}
        kept = [node for node in self.all if not self._carries_handle(node)]
        for node in kept:
            inputs = list(node.input)
            if node.op == _ARRAY:
                self._reserve(node, inputs)
            elif node.op.startswith("TensorArray"):
                self._list_op(node, inputs)
            elif any(self._array_of(ref) for ref in inputs if not ref.startswith("^")):
                raise _Unknown(f"{node.name} ({node.op}) takes an array's handle")
        renames = _renames(kept, before, self.function)
        for node in kept:
            _set_inputs(node, [renames.get(ref, ref) for ref in node.input])
        _retype_flows(kept)
        return [*self.constants, *kept]

    def _carries_handle(self, node: Any) -> bool:
        return _passes_resource(node) and self._array_of(node.name + (":output:0" if self.function else "")) is not None

    def _array_of(self, ref: str) -> str | None:
        """The array whose handle `ref` carries (through Enter / Identity), or None."""
        while node_name(ref) in self.nodes and _passes_resource(self.nodes[node_name(ref)]):
            ref = self.nodes[node_name(ref)].input[0]
        handle = f"{node_name(ref)}:handle:0" if self.function else node_name(ref)
        return node_name(ref) if node_name(ref) in self.shapes and ref in (handle, f"{handle}:0") else None

    def _is_flow(self, ref: str, array: str) -> bool:
        return ref in ((f"{array}:flow:0",) if self.function else (f"{array}:1",))

    def _reserve(self, node: Any, inputs: list[str]) -> None:
        dtype = node.attr["dtype"].type
        node.op = "TensorListReserve"
        node.ClearField("attr")
        _set_inputs(node, [self._shape(node.name, node.name, inputs[0]), inputs[0], *_controls(inputs)])
        node.attr["element_dtype"].type = dtype
        node.attr["shape_type"].type = _DT_INT32

    def _list_op(self, node: Any, inputs: list[str]) -> None:
        array = self._array_of(inputs[0])
        rule = _RULES.get(node.op)
        if array is None or rule is None:
            raise _Unknown(f"{node.name}: {node.op}")
        op, arguments, dtype_attr = rule(self, node, inputs, array)
        dtype = node.attr[dtype_attr].type if dtype_attr else None
        node.op = op
        node.ClearField("attr")
        _set_inputs(node, [*arguments, *_controls(inputs)])
        if dtype is not None:
            node.attr["element_dtype"].type = dtype
        if op == "TensorListFromTensor":
            node.attr["shape_type"].type = _DT_INT32
        if op == "TensorListStack":
            node.attr["num_elements"].i = -1
        if op == "TensorListSetItem" and array in self.dynamic:
            node.attr["resize_if_index_out_of_bounds"].b = True

    def _shape(self, array: str, user: str, anchor: str) -> str:
        """The array's element shape as a constant in `anchor`'s loop frame (a constant without a control input
        sits in the root frame, and an op may not take inputs from two frames)."""
        constant = _int32_constant(self.nodes[user], f"{user}/element_shape", self.shapes[array])
        if node_name(anchor) in self.nodes:  # a function's argument sits in no frame, and takes no control edge
            constant.input.append("^" + node_name(anchor))
        self.constants.append(constant)
        return f"{constant.name}:output:0" if self.function else constant.name

    def _whole(self, indices: str) -> bool:
        """Whether `indices` is a Range op: unstack and stack write and read the whole array, in order."""
        found = self.nodes.get(node_name(indices))
        return found is not None and found.op == "Range"


def _write(rewrite: _Rewrite, node: Any, i: list[str], array: str) -> tuple[str, list[str], str | None]:
    return "TensorListSetItem", [i[3], i[1], i[2]], "T"


def _read(rewrite: _Rewrite, node: Any, i: list[str], array: str) -> tuple[str, list[str], str | None]:
    return "TensorListGetItem", [i[2], i[1], rewrite._shape(array, node.name, i[1])], "dtype"


def _scatter(rewrite: _Rewrite, node: Any, i: list[str], array: str) -> tuple[str, list[str], str | None]:
    # TFLite lowers a list made from a tensor, not one scattered into (control flow v2's unstack makes the former)
    if rewrite._is_flow(i[3], array) and rewrite._whole(i[1]):
        return "TensorListFromTensor", [i[2], rewrite._shape(array, node.name, i[2])], "T"
    return "TensorListScatterIntoExistingList", [i[3], i[2], i[1]], "T"


def _gather(rewrite: _Rewrite, node: Any, i: list[str], array: str) -> tuple[str, list[str], str | None]:
    shape = rewrite._shape(array, node.name, i[1])
    if rewrite._whole(i[1]):
        return "TensorListStack", [i[2], shape], "dtype"
    return "TensorListGather", [i[2], i[1], shape], "dtype"


def _size(rewrite: _Rewrite, node: Any, i: list[str], array: str) -> tuple[str, list[str], str | None]:
    return "TensorListLength", [i[1]], None


_Rule = Callable[[_Rewrite, Any, list[str], str], tuple[str, list[str], str | None]]
_RULES: dict[str, _Rule] = {
    "TensorArrayWriteV3": _write,
    "TensorArrayReadV3": _read,
    "TensorArrayScatterV3": _scatter,
    "TensorArrayGatherV3": _gather,
    "TensorArraySizeV3": _size,
}


def _renames(nodes: Any, before: dict[str, str], function: bool) -> dict[str, str]:
    """References to a rewritten op's output, old → new."""
    renames = {}
    for node in nodes:
        if node.op not in _OUTPUTS or before.get(node.name, node.op) == node.op:
            continue
        old, new = _OUTPUTS[node.op]
        if function:
            renames[f"{node.name}:{old}:0"] = f"{node.name}:{new}:0"
        elif node.op == "TensorListReserve":
            renames[f"{node.name}:1"] = node.name
    return renames


def _retype_flows(nodes: list[Any]) -> None:
    """Every control-flow node a list passes through carries a variant now, loops' back edges included."""
    lists = {node.name for node in nodes if node.op in _LISTS}
    changed = True
    while changed:
        changed = False
        for node in nodes:
            if node.op not in _FLOWING or node.name in lists:
                continue
            data = [ref for ref in node.input if not ref.startswith("^")]
            if any(node_name(ref) in lists for ref in (data[:1] if node.op in _ONE_DATA_INPUT else data)):
                node.attr["T"].type = _DT_VARIANT
                lists.add(node.name)
                changed = True


def _passes_resource(node: Any) -> bool:
    return node.op in _PASSING and node.attr["T"].type == _DT_RESOURCE


def _element_shape(node: Any) -> list[int] | int:
    shape = node.attr["element_shape"].shape
    return -1 if shape.unknown_rank else [int(dim.size) for dim in shape.dim]


def _int32_constant(like: Any, name: str, value: list[int] | int) -> Any:
    """A Const NodeDef of the graph's own proto type (so that this module needs no TensorFlow import)."""
    array = np.asarray(value, dtype=np.int32)
    node = type(like)(name=name, op="Const")
    node.attr["dtype"].type = _DT_INT32
    tensor = node.attr["value"].tensor
    tensor.dtype = _DT_INT32
    for size in array.shape:
        tensor.tensor_shape.dim.add().size = size
    tensor.int_val.extend(int(v) for v in array.reshape(-1))
    return node


def _copy(node: Any) -> Any:
    copied = type(node)()
    copied.CopyFrom(node)
    return copied


def _controls(inputs: list[str]) -> list[str]:
    return [ref for ref in inputs if ref.startswith("^")]


def _set_inputs(node: Any, inputs: list[str]) -> None:
    del node.input[:]
    node.input.extend(inputs)
