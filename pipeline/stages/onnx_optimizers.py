"""Which of onnxruntime's graph optimizations breaks an ONNX file, or changes what it computes: found by running the
file with `disabled_optimizers`, bisected.

Used by the onnx stage (a file onnxruntime cannot run with its optimizations: run it without the one that breaks
it, a rescue) and by the run's diagnosis of an fp32 file that fails its gates only when optimized. Knows
onnxruntime and numpy; nothing of recipes, runtimes or reports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.tensors import TensorSpec
from pipeline.frameworks import import_onnxruntime

LEVELS = ("basic", "extended", "all")
# What `disabled_optimizers` takes, as onnxruntime 1.31 registers them: each level's rule-based transformer (its
# rewrite rules, such as Conv + BatchNorm fusion, cannot be disabled one by one) and the named transformers.
CANDIDATES = (
    "Level1_RuleBasedTransformer",
    "Level2_RuleBasedTransformer",
    "Level3_RuleBasedTransformer",
    "ConstantFolding",
    "CommonSubexpressionElimination",
    "ConvAddActivationFusion",
    "GemmActivationFusion",
    "MatMulActivationFusion",
    "MatMulScaleFusion",
    "MatmulTransposeFusion",
    "MatMulAddFusion",
    "GeluFusion",
    "FastGeluFusion",
    "BiasGeluFusion",
    "QuickGeluFusion",
    "LayerNormFusion",
    "SimplifiedLayerNormFusion",
    "SkipLayerNormFusion",
    "BiasSkipLayerNormFusion",
    "EmbedLayerNormFusion",
    "AttentionFusion",
    "BiasSoftmaxFusion",
    "ReshapeFusion",
    "GatherToSliceFusion",
    "TransposeOptimizer",
    "NchwcTransformer",
    "NhwcTransformer",
    "QDQPropagationTransformer",
    "QDQSelectorActionTransformer",
    "DoubleQDQPairsRemover",
    "MatMulIntegerToFloatFusion",
    "DynamicQuantizeMatMulFusion",
    "CastChainElimination",
    "RemoveDuplicateCastTransformer",
)
Feed = dict[str, np.ndarray]


@dataclass(frozen=True)
class Culprit:
    """The lowest level whose optimizations break the file, and the optimizers whose disabling mends it there
    (empty: none of the named ones alone; graph optimizations must then be off)."""

    level: str
    disabled: tuple[str, ...]

    def describe(self) -> str:
        if not self.disabled:
            return f"onnxruntime's {self.level}-level graph optimizations (no single optimizer; run with them off)"
        return f"onnxruntime's {', '.join(self.disabled)} (graph optimization level {self.level})"


def run_file(path: Path | bytes, feed: Feed, level: str, disabled: tuple[str, ...] = ()) -> list[np.ndarray]:
    """The file's (or serialized model's) outputs on `feed` at an optimization level ("disabled", "basic",
    "extended", "all")."""
    onnxruntime = import_onnxruntime()

    levels = {
        "disabled": onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = levels[level]
    session = onnxruntime.InferenceSession(
        path if isinstance(path, bytes) else str(path),
        sess_options=options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(disabled),
    )
    return list(session.run(None, feed))


def find_culprit(path: Path, feed: Feed, good: Callable[[list[np.ndarray] | None], bool]) -> Culprit | None:
    """The first level at which the file stops being `good` (outputs None: it failed to run), and the optimizers
    that make it good again there, bisected; None when every level is good."""
    level = next((level for level in LEVELS if not good(_attempt(path, feed, level))), None)
    if level is None:
        return None
    suspects = list(CANDIDATES)
    if not good(_attempt(path, feed, level, tuple(suspects))):
        return Culprit(level, ())
    while len(suspects) > 1:
        half = len(suspects) // 2
        first, second = suspects[:half], suspects[half:]
        if good(_attempt(path, feed, level, tuple(first))):
            suspects = first
        elif good(_attempt(path, feed, level, tuple(second))):
            suspects = second
        else:  # it takes optimizers from both halves: name them all
            break
    return Culprit(level, tuple(suspects))


def _attempt(path: Path, feed: Feed, level: str, disabled: tuple[str, ...] = ()) -> list[np.ndarray] | None:
    try:
        return run_file(path, feed, level, disabled)
    except Exception:  # onnxruntime raises its own kinds (Fail, RuntimeException...) for a file it cannot run
        return None


def close_to(expected: list[np.ndarray], tolerance: float) -> Callable[[list[np.ndarray] | None], bool]:
    """A `good` for find_culprit: the run succeeded and every output is within `tolerance` of `expected`."""

    def good(outputs: list[np.ndarray] | None) -> bool:
        if outputs is None or len(outputs) != len(expected):
            return False
        return all(
            np.asarray(a).shape == np.asarray(b).shape
            and float(np.max(np.abs(np.asarray(a, float) - b), initial=0.0)) <= tolerance
            for a, b in zip(outputs, expected, strict=True)
        )

    return good


def smoke_feed(proto: Any) -> Feed:
    """Two samples of zeros for each graph input, in its shape and dtype (a free batch 2, other free dimensions 1):
    a batch of one hides the broadcasting faults of some fused kernels."""
    feed = {}
    for spec in map(onnx_input_spec, proto.graph.input):
        shape = [size or (2 if axis == 0 else 1) for axis, size in enumerate(spec.shape)]
        feed[spec.name] = np.zeros(shape, spec.dtype)
    return feed


def onnx_input_spec(graph_input: Any) -> TensorSpec:
    """An ONNX graph input as a TensorSpec (a symbolic or absent dimension is free)."""
    from onnx.helper import tensor_dtype_to_np_dtype

    tensor = graph_input.type.tensor_type
    shape = tuple(d.dim_value if d.dim_value > 0 else None for d in tensor.shape.dim)
    return TensorSpec(graph_input.name, shape, tensor_dtype_to_np_dtype(tensor.elem_type).name)


def file_inputs(path: Path) -> list[TensorSpec]:
    import onnx

    return [onnx_input_spec(value) for value in onnx.load(str(path), load_external_data=False).graph.input]


def optimizer_finding(
    path: Path, feed: Feed, unoptimized_max_abs: float, gap_max_abs: float, passes: bool
) -> dict[str, Any]:
    """A finding for an fp32 ONNX file that fails its gates with onnxruntime's graph optimizations, and passes them
    without (`passes`) or comes far closer: the optimizer that changes its results is named (bisected on `feed`,
    keyed by the file's inputs: disabling it must bring the optimized outputs within a tenth of their gap to the
    unoptimized ones)."""
    expected = run_file(path, feed, "disabled")
    optimized = run_file(path, feed, "all")
    spread = max(float(np.max(np.abs(a - b), initial=0.0)) for a, b in zip(optimized, expected, strict=True))
    culprit = find_culprit(path, feed, close_to(expected, spread / 10))
    described = culprit.describe() if culprit is not None else "onnxruntime's graph optimizations"
    disabled = list(culprit.disabled) if culprit is not None else []
    verdict = (
        "the file is right: without graph optimizations it passes its gates"
        if passes
        else "without graph optimizations the file is close to the source"
    )
    fix = (
        f"deploy with onnxruntime.InferenceSession(..., disabled_optimizers={disabled})"
        if disabled
        else "deploy with SessionOptions.graph_optimization_level = ORT_DISABLE_ALL"
    )
    return {
        "kind": "onnxruntime_optimization_changes_results",
        "severity": "warning",
        "message": (
            f"{verdict} (max_abs {unoptimized_max_abs:.3g}); {described} change its results by max_abs "
            f"{gap_max_abs:.3g}."
        ),
        "fix": fix,
        "measured": {
            "unoptimized_passes": passes,
            "unoptimized_max_abs": unoptimized_max_abs,
            "optimized_vs_unoptimized_max_abs": gap_max_abs,
            "level": culprit.level if culprit is not None else None,
            "disabled_optimizers": disabled,
        },
    }


def guard_zero_padded_pools(proto: Any) -> list[str]:
    """Keep onnxruntime's Pad_Fusion off every MaxPool fed by a constant zero Pad (Keras's ZeroPadding2D before
    MaxPooling2D, as in ResNet50V2's stem): the names of the pools guarded, in place.

    Pad_Fusion (a basic-level rule, on by default, not disablable by name) moves the Pad into the pool's `pads`,
    which MaxPool fills with -inf, not 0: a window whose real values are all negative then gives their maximum
    instead of 0 (measured on ResNet50V2: max_abs 3.1, cosine 0.39 against Keras; the same fold in onnx-simplifier
    is onnxsim#290). The rule skips a MaxPool that also produces its optional Indices output, so each such pool
    gets one, which nothing reads; the file computes the same either way.
    """
    producers = {output: node for node in proto.graph.node for output in node.output}
    constants = {tensor.name: tensor for tensor in proto.graph.initializer}
    guarded = []
    for node in proto.graph.node:
        pad = producers.get(node.input[0]) if node.op_type == "MaxPool" else None
        if pad is None or pad.op_type != "Pad" or len(node.output) > 1 or not _pads_zeros(pad, constants):
            continue
        node.output.append(f"{node.output[0]}__indices")
        guarded.append(node.name or node.output[0])
    return guarded


def _pads_zeros(pad: Any, constants: dict[str, Any]) -> bool:
    """Whether a Pad node pads with the constant 0 (its mode constant; its value absent, or a zero initializer)."""
    from onnx import numpy_helper

    modes = [attribute.s for attribute in pad.attribute if attribute.name == "mode"]
    if modes and modes[0] != b"constant":
        return False
    values = [attribute.f for attribute in pad.attribute if attribute.name == "value"]  # opset < 11
    if len(pad.input) < 3 or not pad.input[2]:
        return not values or values[0] == 0.0
    value = constants.get(pad.input[2])
    return value is not None and not np.any(numpy_helper.to_array(value))
