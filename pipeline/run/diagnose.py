"""Findings: what a gap between two runs of one file most likely means, and what to change in the recipe.

Reads parity results and the CPU description; runs nothing, and knows no runtime, stage or report format.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from pipeline.core.cpu import describe_cpu
from pipeline.parity import GateResult, ParityResult

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


# An fp32 file within this many times the source's own float32 spread of it is within float32 rounding. Measured on
# EfficientNetB0 (random weights, logits up to 103): the source one batch against a sample at a time 6.1e-5, with
# its inputs one ulp off 6.5e-4, the TFLite file 4.2e-4; on other inputs Keras is 2.1e-4 from a float64 run of the
# same weights and the TFLite file 2.0e-4: as exact as the source's own float32 run.
FLOAT_NOISE_RATIO = 4.0
# float32 rounding leaves a file's outputs pointing where the source's do: cosine 0.99999+ (EfficientNetB0's TFLite
# file 0.9999999). A file below this is off by more than rounding, whatever max_abs says (a 3-D U-Net's ONNX file
# at cosine 0.027 was once called "float32 noise").
FLOAT_NOISE_MIN_COSINE = 0.999


Predict = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def float32_spread(predict: Predict, feed: dict[str, np.ndarray]) -> tuple[dict[str, float], float]:
    """What a model's own float32 arithmetic moves its outputs by on `feed` (a batch): run as one batch against a
    sample at a time (other kernels, other summation orders), and with every floating input moved by one ulp
    (float32 rounding anywhere is such a nudge, amplified by what follows); the largest |output| too. Over its
    floating outputs."""
    whole = predict(feed)
    count = len(next(iter(feed.values())))
    rows = [predict({name: array[i : i + 1] for name, array in feed.items()}) for i in range(count)]
    nudged = predict({name: _one_ulp_off(array) for name, array in feed.items()})
    floating = [name for name, array in whole.items() if np.issubdtype(np.asarray(array).dtype, np.floating)]

    def spread(other: dict[str, np.ndarray]) -> float:
        return max((float(np.abs(whole[n] - other[n]).max()) for n in floating), default=0.0)

    one_by_one = {name: np.concatenate([row[name] for row in rows]) for name in floating}
    scale = max((float(np.abs(whole[n]).max()) for n in floating), default=0.0)
    return {"batch_vs_sample": spread(one_by_one), "one_ulp_inputs": spread(nudged)}, scale


def _one_ulp_off(array: np.ndarray) -> np.ndarray:
    """Each value moved one ulp up or down (a seeded coin per value); other dtypes as they are."""
    if not np.issubdtype(array.dtype, np.floating):
        return array
    signs = np.where(np.random.default_rng(0).random(array.shape) < 0.5, -1, 1).astype(array.dtype)
    return (array + signs * np.spacing(array)).astype(array.dtype)


def float32_noise(spreads: dict[str, float]) -> float:
    """The spread that stands for float32 rounding: the source's outputs with its inputs one ulp off, in the same
    batch. One batch against a sample at a time is reported beside it, never counted: a model whose outputs depend
    on the batch's other samples would make it a measure of the model, not of float32 (keras-hub XLNet: 1e-2)."""
    return spreads.get("one_ulp_inputs", 0.0)


def float_noise_refusal(cosine: float, deterministic: bool) -> str | None:
    """Why the source's float32 spread cannot excuse this file (no finding, no `float32_noise`), or None: a source
    that is not deterministic spreads by its randomness, not by rounding; a file that points elsewhere is off."""
    if not deterministic:
        return "the source is not deterministic (see the run's warnings): its spread is not float32 rounding"
    if not (cosine >= FLOAT_NOISE_MIN_COSINE):
        return f"the file's cosine {cosine:.4g} is below {FLOAT_NOISE_MIN_COSINE:g}: it is off by more than rounding"
    return None


def float_noise_finding(max_abs: float, spreads: dict[str, float], scale: float, samples: int) -> dict[str, Any] | None:
    """A finding when an fp32 file misses its max_abs gate by no more than FLOAT_NOISE_RATIO times what the source's
    own float32 rounding moves its outputs by (`float32_noise`): the gate is tighter than float32 at the output's
    scale, and the file as right as the source's run."""
    noise = float32_noise(spreads)
    if not (math.isfinite(max_abs) and noise > 0 and max_abs <= FLOAT_NOISE_RATIO * noise):
        return None
    suggested = float(f"{max(2 * max_abs, FLOAT_NOISE_RATIO * noise):.1g}")
    return {
        "kind": "float32_noise",
        "severity": "info",
        "message": (
            f"the source's own float32 rounding moves its outputs by up to max_abs {noise:.3g} (its inputs one ulp "
            f"off; one batch of {samples} against a sample at a time: {spreads['batch_vs_sample']:.3g}), and this "
            f"file is {max_abs:.3g} from it, within {FLOAT_NOISE_RATIO:g}× that; its outputs reach |{scale:.3g}|. "
            "The max_abs gate is tighter than float32 at this scale: the "
            "file is as close to the exact result as the source's own run."
        ),
        "fix": (
            f"gate this output on a relative metric (nrmse, cosine), set max_abs: {suggested:g}, or add "
            f"float32_noise: {FLOAT_NOISE_RATIO:g} to its gates"
        ),
        "measured": {"max_abs": max_abs, **{f"source_{k}": v for k, v in spreads.items()}, "output_scale": scale},
    }


def within_float32_noise(gate: GateResult, spreads: dict[str, float], ratio: float) -> GateResult:
    """`gates: {float32_noise: ratio}`: a failed whole-output max_abs gate passes when the file is within `ratio`
    times the source's own float32 spread (`float32_noise`); its threshold is then that, and the note gives the
    recipe's and the spread. Any other gate, or a file beyond it, as it was."""
    noise = float32_noise(spreads)
    allowed = ratio * noise
    if gate.passed or gate.metric != "max_abs" or gate.tensor is not None or gate.value is None:
        return gate
    if not (math.isfinite(gate.value) and gate.value <= allowed):
        return gate
    note = (
        f"within {ratio:g}× the source's own float32 spread {noise:.3g} (gates: float32_noise); the recipe's "
        f"threshold was {gate.threshold:g}"
    )
    return replace(gate, threshold=allowed, passed=True, note=note)
