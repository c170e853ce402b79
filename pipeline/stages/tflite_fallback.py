"""Accuracy-aware int8: keep the worst-quantized layers in float, a few more each step, until the output is accepted.

Knows the TFLite debugger and LiteRT's interpreter (for timing); the gates stay behind the `accept` callback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import write_bytes_atomic
from pipeline.core.timing import time_calls
from pipeline.frameworks import captured_native_output, litert_interpreter
from pipeline.stages import tflite_debug
from pipeline.stages.base import StageContext

LATENCY_RUNS = 20


def debug_and_fall_back(
    tf: Any, converter: Any, model: bytes, path: Path, ctx: StageContext, *, limit: int, io_type: str, debug: bool
) -> tuple[bytes, dict[str, Any]]:
    """Rank layers by quantization error (`debug`); with `limit` (fallback: auto) and a model that fails its
    gates, keep the worst layers in float. Returns the model to keep and details; `path` holds the plain one."""
    details: dict[str, Any] = {}
    plain_passed = bool(limit and ctx.accept is not None and ctx.accept(path))
    if plain_passed:
        details["fallback_steps"] = [{"float_layers": 0, "passed": True, "size_bytes": len(model)}]
        details["float_layers"] = []
        if not debug:
            return model, details  # the plain int8 file passes: nothing to keep in float
    assert ctx.calibration is not None  # _configure refused int8 without it
    debugger = tflite_debug.run_debugger(tf, converter, ctx.calibration, _input_tensor_names(model))
    csv_text = tflite_debug.layer_errors_csv(debugger)
    ranked = tflite_debug.rank_layers(csv_text)
    tflite_debug.write_layer_errors(csv_text, ranked, ctx.work_dir)
    details["layer_errors"] = ranked[: tflite_debug.TOP_LAYERS]
    if not limit or plain_passed:
        return model, details
    if ctx.accept is None:
        details["fallback_steps"], details["float_layers"] = [], []
        details["fallback_note"] = "not judged: the runner gave this stage no way to check the gates"
        ctx.log("fallback: auto skipped: no gate check available to this stage")
        return model, details
    found, steps, kept = search(tf, debugger, ranked, limit, io_type, ctx.accept, ctx.work_dir)
    details["fallback_steps"] = [{"float_layers": 0, "passed": False, "size_bytes": len(model)}, *steps]
    details["float_layers"] = kept
    if found is None:
        ctx.log(f"fallback: no step up to {limit} float layers passed; keeping plain int8")
        return model, details
    latency = {"int8": median_latency_ms(model), "fallback": median_latency_ms(found)}
    details["latency_ms_batch1"] = latency
    details["size_bytes_int8"] = len(model)
    ctx.log(f"fallback: {len(kept)} layers kept in float: +{len(found) - len(model)} bytes, {latency}")
    return found, details


def _input_tensor_names(model: bytes) -> list[str]:
    return [str(detail["name"]) for detail in litert_interpreter(model).get_input_details()]


def float_layer_steps(limit: int) -> list[int]:
    """1, 2, 4, … up to `limit`, always ending at `limit` itself."""
    steps, count = [], 1
    while count < limit:
        steps.append(count)
        count *= 2
    return [*steps, limit]


def search(
    tf: Any,
    debugger: Any,
    ranked: list[dict[str, Any]],
    limit: int,
    io_type: str,
    accept: Callable[[Path], bool],
    work_dir: Path,
) -> tuple[bytes | None, list[dict[str, Any]], list[str]]:
    """The first model the judge accepts, the steps tried, and the layers it keeps in float.

    The model is None when no step within `limit` was accepted.
    """
    names = [layer["tensor_name"] for layer in ranked]
    steps: list[dict[str, Any]] = []
    for count in float_layer_steps(min(limit, len(names))):
        chosen = names[:count]
        model = denylisted_model(tf, debugger, chosen, io_type)
        candidate = work_dir / f"fallback-{count}.tflite"
        write_bytes_atomic(candidate, model)
        passed = bool(accept(candidate))
        steps.append({"float_layers": count, "passed": passed, "size_bytes": len(model)})
        if passed:
            return model, steps, chosen
    return None, steps, []


def denylisted_model(tf: Any, debugger: Any, tensor_names: list[str], io_type: str) -> bytes:
    """The calibrated model quantized with these layers (by output tensor name) left in float."""
    with captured_native_output():  # setting options re-quantizes the debug model, which prints
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(tensor_names))
        model = debugger.get_nondebug_quantized_model()
    if io_type != "float32":
        # The debugger's quantizer keeps float inputs and outputs; the converter's own last step does this.
        from tensorflow.lite.python.util import modify_model_io_type

        model = modify_model_io_type(model, getattr(tf, io_type), getattr(tf, io_type))
    return model


def median_latency_ms(model: bytes, runs: int = LATENCY_RUNS) -> float:
    """Median LiteRT invoke time on batch 1 (XNNPACK, one thread) over `runs` runs, after one warm-up."""
    with captured_native_output():
        interpreter = litert_interpreter(model, threads=1)
        for detail in interpreter.get_input_details():
            shape = [1 if dim < 0 else int(dim) for dim in detail["shape_signature"]]
            if shape:
                shape[0] = 1
            interpreter.resize_tensor_input(detail["index"], shape)
        interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], dtype=detail["dtype"]))
        timing = time_calls(interpreter.invoke, runs, warmup=1)
    return timing["median_ms"]
