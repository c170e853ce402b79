"""Index math done in float: the ONNX nodes static quantization must leave alone.

Some models compute integer indices through float arithmetic: T5's relative-position buckets are
Cast(int → float) → Div → Log → Mul → Cast(→ int) → Gather. Quantized, `Log(0) = -inf` sets the calibration range,
the scale is no number, and the Gather reads index -2147483592 (onnxruntime: "indices element out of data bounds",
measured on keras-hub T5); smaller errors would pick wrong rows silently. Knows ONNX graphs only.
"""

from __future__ import annotations

from typing import Any

# ONNX TensorProto element types
_FLOATS = frozenset({1, 10, 11, 16})  # float, float16, double, bfloat16
_INTEGERS = frozenset({2, 3, 4, 5, 6, 7, 12, 13})
# Ops that carry the model's learned computation: a walk that meets one is no index math.
_WEIGHTED = frozenset({"MatMul", "Gemm", "Conv", "ConvTranspose", "LSTM", "GRU", "RNN", "Einsum", "Attention"})
_SHAPE_ONLY = frozenset({"Shape", "Size", "Constant", "ConstantOfShape"})
# Arithmetic the static quantizer may wrap in QuantizeLinear/DequantizeLinear: what the list names.
_ARITHMETIC = frozenset(
    {"Add", "Sub", "Mul", "Div", "Log", "Exp", "Pow", "Sqrt", "Reciprocal", "Min", "Max", "Abs", "Neg", "Clip"}
    | {"Floor", "Ceil", "Round", "Where"}
)
_MOST_NODES = 200  # index math is a handful of nodes; a longer walk is the network itself


def float_index_math(proto: Any) -> list[str]:
    """The arithmetic nodes between an integer source (a Cast from int, a shape, a constant) and a Cast to an
    integer type, when only such sources feed that Cast: index math done in float. In graph order."""
    graph = proto.graph
    producers = {output: node for node in graph.node for output in node.output}
    float_inputs = {tensor.name for tensor in graph.input if tensor.type.tensor_type.elem_type in _FLOATS}
    found: set[str] = set()
    for node in graph.node:
        if node.op_type == "Cast" and _cast_to(node) in _INTEGERS:
            found |= _index_math_above(node.input[0], producers, float_inputs)
    return [node.name for node in graph.node if node.name in found and node.op_type in _ARITHMETIC]


def _index_math_above(tensor: str, producers: dict[str, Any], float_inputs: set[str]) -> set[str]:
    """The float nodes `tensor` is computed by, back to its integer sources; empty when model data or weights
    feed it."""
    names: set[str] = set()
    stack, seen = [tensor], set()
    while stack:
        name = stack.pop()
        if name in float_inputs:
            return set()
        node = producers.get(name)
        if node is None or name in seen:  # an initializer or an integer graph input
            continue
        seen.add(name)
        if node.op_type in _WEIGHTED or len(names) > _MOST_NODES:
            return set()
        if node.op_type in _SHAPE_ONLY or (node.op_type == "Cast" and _cast_to(node) in _FLOATS):
            continue  # where the index math starts
        names.add(node.name)
        stack.extend(input_name for input_name in node.input if input_name)
    return names


def _cast_to(node: Any) -> int | None:
    return next((attribute.i for attribute in node.attribute if attribute.name == "to"), None)
