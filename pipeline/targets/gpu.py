"""The GPU target: TensorFlow Lite's GPU delegate compatibility analysis of a .tflite file.

`tf.lite.experimental.Analyzer.analyze(gpu_compatibility=True)` prints the graph (and, where its checks run, a
"GPU COMPATIBILITY WARNING" under each operator the delegate cannot take); its text is captured and parsed here,
never shown raw. Since TensorFlow 2.19 the analyzer runs no GPU checks and calls every model compatible
(tensorflow/tensorflow#77042, measured with TensorFlow 2.21: TOPK_V2 passes), so the operator rules of
tensorflow/lite/tools/versioning/gpu_compatibility.cc, the checks the analyzer used to run, are applied here to the
operators and tensors it printed; `method` in the report says which found what. Rules that need an operator's
options (strides, activations, masks), which the analyzer does not print, are left out. As the delegate itself does
(its FP16 graph partition helper), a DEQUANTIZE of float16 constants counts as a constant: fp16 weights are what
the GPU delegate is built for.

Knows TensorFlow (through pipeline.frameworks) and nothing of recipes, runs or reports.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass, field
from typing import ClassVar

from pipeline.frameworks import captured_native_output, import_tensorflow
from pipeline.targets.base import Target, TargetContext, TargetReport, Unsupported

_WARNING = "GPU COMPATIBILITY WARNING: "
_OP = re.compile(r"^\s*Op#(\d+) (\S+)\((.*)\) -> \[(.*)\]$")
_TENSOR = re.compile(r"^\s*T#(\d+)\((.*)\) (?:shape|shape_signature):\[([-\d, ]*)\], type:(\w+)(.*)$")
_SUBGRAPH = re.compile(r"^(?:Tensors of )?Subgraph#(\d+)")
_TENSOR_REF = re.compile(r"T#(-?\d+)")


@dataclass
class Tensor:
    dims: tuple[int, ...]
    type: str  # FLOAT32, INT8, ...
    const: bool  # has data in the file (the analyzer marks it RO)


@dataclass
class Op:
    subgraph: int
    index: int
    name: str
    inputs: list[int]
    outputs: list[int]
    warnings: list[str] = field(default_factory=list)


@dataclass
class Analysis:
    """The analyzer's text, parsed: operators (with the analyzer's own warnings) and tensors, per subgraph."""

    ops: list[Op] = field(default_factory=list)
    tensors: dict[tuple[int, int], Tensor] = field(default_factory=dict)  # (subgraph, index) → tensor


def analyzer_text(path: str) -> str:
    """What the analyzer prints, captured: its report comes through Python's print (sys.stdout, which need not be
    file descriptor 1), its native warnings through the file descriptors."""
    tf = import_tensorflow()
    printed = io.StringIO()
    with captured_native_output() as lines, contextlib.redirect_stdout(printed):
        tf.lite.experimental.Analyzer.analyze(model_path=path, gpu_compatibility=True)
    return "\n".join([*printed.getvalue().splitlines(), *lines])


def parse_analysis(text: str) -> Analysis:
    analysis, subgraph = Analysis(), 0
    for line in text.splitlines():
        if (match := _SUBGRAPH.match(line)) is not None:
            subgraph = int(match.group(1))
        elif (match := _OP.match(line)) is not None:
            inputs = [int(ref) for ref in _TENSOR_REF.findall(match.group(3))]
            outputs = [int(ref) for ref in _TENSOR_REF.findall(match.group(4))]
            analysis.ops.append(Op(subgraph, int(match.group(1)), match.group(2), inputs, outputs))
        elif line.startswith(_WARNING) and analysis.ops and not line[len(_WARNING) :].startswith("Subgraph#"):
            analysis.ops[-1].warnings.append(line[len(_WARNING) :].strip())
        elif (match := _TENSOR.match(line)) is not None:
            dims = tuple(int(d) for d in match.group(3).replace(" ", "").split(",") if d)
            tensor = Tensor(dims, match.group(4), " RO " in f"{match.group(5)} ")
            analysis.tensors[(subgraph, int(match.group(1)))] = tensor
    return analysis


def fold_float16_weights(analysis: Analysis) -> Analysis:
    """DEQUANTIZE of a float16 constant gives a constant: mark its output so, as the GPU delegate treats it."""
    for op in analysis.ops:
        source = analysis.tensors.get((op.subgraph, op.inputs[0])) if op.name == "DEQUANTIZE" and op.inputs else None
        if source is not None and source.const and source.type == "FLOAT16":
            for index in op.outputs:
                tensor = analysis.tensors.get((op.subgraph, index))
                if tensor is not None:
                    tensor.const = True
    return analysis


class GpuTarget(Target):
    name: ClassVar[str] = "gpu"

    def analyze(self, context: TargetContext) -> TargetReport:
        analysis = fold_float16_weights(parse_analysis(analyzer_text(str(context.artifact.path))))
        unsupported, by_analyzer = [], 0
        for op in analysis.ops:
            reasons = op.warnings or [reason for reason in [gpu_rule(op, analysis)] if reason]
            by_analyzer += bool(op.warnings)
            label = op.name if op.subgraph == 0 else f"{op.name} (subgraph {op.subgraph})"
            unsupported += [Unsupported(label, op.index, reason) for reason in reasons[:1]]
        method = "analyzer" if by_analyzer else "gpu_compatibility rules (the analyzer ran no GPU checks)"
        details = {"method": method, "ops": len(analysis.ops)}
        return TargetReport(self.name, not unsupported, unsupported, details)


# --- the rules of tensorflow/lite/tools/versioning/gpu_compatibility.cc that the printed graph can decide -------

_UNARY = {"ABS", "CEIL", "COS", "ELU", "EXP", "FLOOR", "GELU", "LOG", "LOGISTIC", "NEG", "RSQRT", "SIGN", "SIN"}
_UNARY |= {"SQRT", "SQUARE", "TANH"}
_BINARY = {"ATAN2", "DIV", "EQUAL", "FLOOR_DIV", "FLOOR_MOD", "GREATER", "GREATER_EQUAL", "LOGICAL_AND", "LESS"}
_BINARY |= {"LESS_EQUAL", "MAXIMUM", "MINIMUM", "NOT_EQUAL", "POW", "SQUARED_DIFFERENCE", "SUB"}
_ONE_RUNTIME_INPUT = {"RESHAPE", "TILE", "TRANSPOSE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "QUANTIZE"}
_ONE_RUNTIME_INPUT |= {"SPACE_TO_DEPTH", "DEPTH_TO_SPACE", "HARD_SWISH", "MAX_POOL_2D", "AVERAGE_POOL_2D"}
_ONE_RUNTIME_INPUT |= {"PAD", "PADV2", "MIRROR_PAD", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD"}
_CONVOLUTIONS = {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"}
_ACCEPTED = {"ADD", "ADD_N", "BATCH_MATMUL", "CAST", "CONCATENATION", "CUMSUM", "DENSIFY", "DEQUANTIZE", "GATHER"}
_ACCEPTED |= {"EMBEDDING_LOOKUP", "DYNAMIC_UPDATE_SLICE", "FULLY_CONNECTED", "LSTM", "MEAN", "MUL", "PACK"}
_ACCEPTED |= {"ONE_HOT", "RELU_N1_TO_1", "PRELU", "SELECT", "SELECT_V2", "SLICE", "SOFTMAX", "SPLIT", "SPLIT_V"}
_ACCEPTED |= {"STRIDED_SLICE", "RELU", "RELU6", "LEAKY_RELU", "STABLEHLO_CLAMP"}
_ACCEPTED |= _UNARY | _BINARY | _ONE_RUNTIME_INPUT | _CONVOLUTIONS
_CUSTOM = {"Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D", "Resampler"}
_FLOATS = {"FLOAT32", "FLOAT16"}


def gpu_rule(op: Op, analysis: Analysis) -> str | None:
    """Why the GPU delegate would refuse this operator, in gpu_compatibility.cc's words; None if it would take it."""
    if op.name in _CUSTOM:
        return None
    if op.name not in _ACCEPTED:  # builtin names are upper case; a custom op prints its own code
        return f"Not supported {'op' if re.fullmatch(r'[A-Z0-9_]+', op.name) else 'custom op'} {op.name}"
    inputs = [analysis.tensors.get((op.subgraph, i)) for i in op.inputs if i >= 0]
    present = [tensor for tensor in inputs if tensor is not None]
    runtime = sum(not tensor.const for tensor in present)
    consts = len(present) - runtime
    return _shape_rule(op, present, runtime, consts) or _count_rule(op, runtime, consts)


def _count_rule(op: Op, runtime: int, consts: int) -> str | None:
    if op.name in _ONE_RUNTIME_INPUT and runtime != 1:
        return f"Expected 1 runtime input tensor(s), but node has {runtime} runtime input(s)."
    if op.name in _UNARY and (runtime, consts) != (1, 0):
        return f"Expected 0 const input tensor(s), but node has {consts} const input(s)."
    if op.name in _BINARY and (runtime, consts) not in {(2, 0), (1, 1)}:
        return "Op can only handle 1 or 2 operand(s)."
    if op.name in _CONVOLUTIONS and runtime > 2:
        return f"Expected 1 or 2 input tensor(s), but node has {runtime} runtime inputs."
    if op.name == "FULLY_CONNECTED" and runtime > 2:
        return "FullyConnected doesn't support more than 2 runtime inputs."
    if op.name == "MEAN" and (runtime, consts) != (1, 1):
        return f"Expected 1 const input tensor(s), but node has {consts} const input(s)."
    if op.name in {"ADD", "MUL"} and len(op.inputs) != 2:
        return f"{op.name} requires two input tensors."
    return None


def _shape_rule(op: Op, inputs: list[Tensor], runtime: int, consts: int) -> str | None:
    first = inputs[0] if inputs else None
    if op.name in {"STRIDED_SLICE", "SLICE"} and first is not None and len(first.dims) not in {3, 4}:
        return f"{op.name} supports for 3 or 4 dimensional tensors only."
    if op.name == "FULLY_CONNECTED" and first is not None and first.const:
        return "FullyConnected doesn't support constant input."
    if op.name == "GATHER" and first is not None and first.type == "INT32":
        return "Does not accept INT32 input."
    if op.name == "DEQUANTIZE" and first is not None and first.type == "INT16":
        return "Unsupported dequantization type."
    if op.name == "CUMSUM" and first is not None and first.type not in _FLOATS:
        return "Input/output must be float type and indices must be constant int32 type"
    if op.name in {"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD"} and len(inputs) > 1:
        axes = inputs[1]
        if not axes.const:
            return f"{op.name} is only supported with constant axes."
        if axes.type != "INT32":
            return f"{op.name} supports int32 tensor for axes. But node has {axes.type}"
    if op.name == "CAST" and first is not None:
        # The output type is not on the operator's line: the delegate casts only from bool, float and int32.
        casts = {"BOOL", "FLOAT32", "FLOAT16", "INT32"}
        return None if first.type in casts else f"Not supported Cast case. Input type: {first.type}"
    return None
