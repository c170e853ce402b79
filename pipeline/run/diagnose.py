"""Findings: what a gap between two runs of one file most likely means, and what to change in the recipe.

Reads parity results and the CPU description; runs nothing, and knows no runtime, stage or report format.
"""

from __future__ import annotations

import math
from typing import Any

from pipeline.core.cpu import describe_cpu
from pipeline.parity import ParityResult

# Fused kernels that compute what the QDQ graph says differ from it by rounding alone: 0.00-0.19 of the quantization
# error on MobileNetV2 / MobileNetV3Small / EfficientNetB0 with reduce_range or uint8 weights, where nothing
# saturates; saturating runs measured 0.52-2.34. Half the quantization error separates the two.
GAP_RATIO = 0.5
SATURATION_FIX = (
    "try `reduce_range: true`, or `activation_type: uint8` + `weight_type: uint8` on the onnx stage, "
    "and gate both runs with `runtime: {graph_optimization: both}`"
)


def graph_optimization_finding(
    unoptimized: ParityResult, gap: ParityResult, cpu: dict[str, Any]
) -> dict[str, Any] | None:
    """A finding when onnxruntime's fused int8 kernels (optimized) differ from the QDQ graph's own arithmetic
    (unoptimized) by more than GAP_RATIO of the quantization error (the unoptimized run against the source).

    Both errors are RMSEs over every output value. Fused kernels that compute what the graph says differ from it
    by rounding alone, well below the quantization error; a larger gap means the kernels computed something else.
    """
    quantization_rmse, gap_rmse = unoptimized.metrics.get("rmse"), gap.metrics.get("rmse")
    if quantization_rmse is None or gap_rmse is None or not (math.isfinite(quantization_rmse) and gap_rmse > 0):
        return None
    if gap_rmse <= GAP_RATIO * quantization_rmse:
        return None
    saturating = bool(cpu.get("int8_may_saturate"))
    if saturating:
        kind = "kernel_saturation"
        cause = (
            f"kernel saturation: this CPU ({describe_cpu(cpu)}) has no VNNI, and onnxruntime's int8 kernels "
            "add pairs of u8×s8 products in int16 there, which saturates on large activations and weights"
        )
    else:
        kind = "optimized_kernels_differ"
        cause = (
            f"the optimized graph's fused kernels compute something other than the QDQ graph on this CPU "
            f"({describe_cpu(cpu)}); saturation is unlikely here, so suspect a fusion or an onnxruntime bug"
        )
    ratio = gap_rmse / quantization_rmse if quantization_rmse > 0 else None
    times = f"{ratio:.3g}×" if ratio is not None else "more than"
    return {
        "kind": kind,
        "severity": "warning",
        "message": (
            f"optimized onnxruntime run differs from the unoptimized one by rmse {gap_rmse:.4g}, "
            f"{times} the quantization error (rmse {quantization_rmse:.4g} against the source). "
            f"Likely cause: {cause}."
        ),
        "fix": SATURATION_FIX,
        "measured": {
            "gap_rmse": gap_rmse,
            "quantization_rmse": quantization_rmse,
            "ratio": ratio,
            "optimized_vs_unoptimized_cosine": gap.metrics.get("cosine"),
            "unoptimized_cosine": unoptimized.metrics.get("cosine"),
        },
    }

