"""The LiteRT quantizer's side of `litert_quantize`: a float `.tflite`'s ops, the quantizer recipe (JSON) that
a mode and scope rules make for them, calibration samples fed by signature, the quantizer's own validation, and
short summaries of what the quantized file holds.

Works on litert_quantizer's flatbuffer model (its `ModelT`); knows nothing of recipes' YAML, runs or reports.
A stage option arrives here as a plain `Setting` (mode, block size), never as a pydantic model.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.errors import StageError, first_line
from pipeline.frameworks import captured_native_output, litert_interpreter, notable_log_lines
from pipeline.stages.base import StageContext

# Ops whose input 1 is a weight tensor the quantizer can quantize (filter, kernel, table).
WEIGHT_OPS = (
    "FULLY_CONNECTED",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "CONV_2D_TRANSPOSE",
    "BATCH_MATMUL",
    "EMBEDDING_LOOKUP",
)
# LiteRT has blockwise int4 kernels for these only, as dynamic (int8 activations on the fly); see docs/stages.md.
BLOCKWISE_OPS = ("FULLY_CONNECTED", "EMBEDDING_LOOKUP")
_MIN_MAX, _NO_QUANTIZE = "min_max_uniform_quantize", "no_quantize"
_LISTED = 8  # names kept per list in the stage details


@dataclass(frozen=True)
class Setting:
    mode: str  # weight_only_int8 | weight_only_int4 | dynamic_int8 | dynamic_int4 | static_int8 | none
    block_size: int | None = None
    min_weight_elements: int = 0


@dataclass(frozen=True)
class Op:
    kind: str  # the TFLite op name, e.g. FULLY_CONNECTED
    scope: str  # what the quantizer matches a recipe regex against: its output tensor names, `;`-joined
    names: tuple[str, ...]  # its output tensor names and its constant inputs' (weights, bias)
    weight: str | None  # its weight tensor's name, for WEIGHT_OPS with a constant input 1
    weight_shape: tuple[int, ...] = ()


@dataclass
class QuantizerRecipe:
    entries: list[dict[str, Any]] = field(default_factory=list)
    channelwise_instead: list[str] = field(default_factory=list)  # asked blockwise, not possible there
    matched: list[list[str]] = field(default_factory=list)  # per scope rule, the weights / scopes it matched
    # weight → (rule index, its setting, the op's kind): what the last rule that reached the weight asked for
    requested: dict[str, tuple[int, Setting, str]] = field(default_factory=dict)


def ops_of(model: Any) -> list[Op]:
    """Every op of every subgraph, with the names scope rules are matched against."""
    from litert_quantizer.utils import tfl_flatbuffer_utils as fb

    found = []
    for subgraph in model.subgraphs:
        tensors = subgraph.tensors
        for op in subgraph.operators:
            kind = fb.TFL_OP_CODE_TO_NAME.get(model.operatorCodes[op.opcodeIndex].builtinCode, "")
            kind = getattr(kind, "value", str(kind))
            constant = [i for i in op.inputs if i != -1 and model.buffers[tensors[i].buffer].data is not None]
            names = [fb.get_tensor_name(tensors[i]) for i in [*op.outputs, *constant] if i != -1]
            has_weight = kind in WEIGHT_OPS and len(op.inputs) > 1 and op.inputs[1] in constant
            weight = tensors[op.inputs[1]] if has_weight else None
            found.append(
                Op(
                    kind=kind,
                    scope=fb.get_op_scope(op, tensors),
                    names=tuple(names),
                    weight=None if weight is None else fb.get_tensor_name(weight),
                    weight_shape=() if weight is None else tuple(int(d) for d in weight.shape),
                )
            )
    return found


def build_recipe(
    ops: list[Op], base: Setting, rules: list[tuple[str, str | None, Setting]], float_io: bool
) -> QuantizerRecipe:
    """The quantizer's recipe: `base` for the whole model, then each (scope regex, op kind, setting) rule on the
    ops it matches, in order (a later rule wins, as in the quantizer). Rules and blockwise weights are written
    per op as that op's exact scope, so what a rule reaches is decided here, where it can be reported."""
    recipe = QuantizerRecipe([_entry(".*", "*", base, blockwise=False)])
    if float_io and _is_static(base):
        recipe.entries += [_entry(".*", io, Setting("none"), blockwise=False) for io in ("INPUT", "OUTPUT")]
    if base.block_size:
        for op in ops:
            if op.kind in BLOCKWISE_OPS and op.weight is not None:
                recipe.entries.append(_per_op(op, base, recipe))
    for index, (scope, kind, setting) in enumerate(rules):
        hits = [op for op in ops if (kind is None or op.kind == kind) and any(re.search(scope, n) for n in op.names)]
        recipe.matched.append([op.weight or op.scope.rstrip(";") for op in hits])
        recipe.entries += [_per_op(op, setting, recipe) for op in hits]
        recipe.requested.update({op.weight: (index, setting, op.kind) for op in hits if op.weight is not None})
    return recipe


def unhonoured_rules(recipe: QuantizerRecipe, quantized: Any) -> list[str]:
    """Warnings for weights a scope rule reached that did not come out as it asked: the quantizer keeps the base
    setting, silently, where an op has no kernel for the rule's (int4 on DEPTHWISE_CONV_2D)."""
    types = _weight_types(quantized)
    found = []
    for weight, (index, setting, kind) in recipe.requested.items():
        wanted = "float32" if setting.mode == "none" else f"int{setting.mode[-1]}"
        got = types.get(weight, "float32").split("/")[0]
        if got != wanted:
            found.append(
                f"rules[{index}] asked {setting.mode} for {weight} ({kind}), but the quantizer left it {got}: "
                "it has no such kernel for that op"
            )
    return found


def _weight_types(quantized: Any) -> dict[str, str]:
    """Each tensor's type in the quantized file, `int4/block32` for blockwise ones."""
    from litert_quantizer.utils import tfl_flatbuffer_utils as fb

    types: dict[str, str] = {}
    for subgraph in quantized.subgraphs:
        for tensor in subgraph.tensors:
            kind = fb.TENSOR_CODE_TO_TYPE.get(tensor.type, "?").lower()
            block = getattr(getattr(tensor.quantization, "details", None), "blockSize", 0)
            types[fb.get_tensor_name(tensor)] = f"{kind}/block{block}" if block else kind
    return types


def _per_op(op: Op, setting: Setting, recipe: QuantizerRecipe) -> dict[str, Any]:
    blockwise = bool(setting.block_size) and op.kind in BLOCKWISE_OPS and _divisible(op, setting.block_size or 0)
    if setting.block_size and not blockwise:
        recipe.channelwise_instead.append(op.weight or op.scope)
    return _entry(f"^{re.escape(op.scope)}$", "*", setting, blockwise)


def _divisible(op: Op, block_size: int) -> bool:
    """Blocks run along the weight's input dimension (its last for FULLY_CONNECTED and EMBEDDING_LOOKUP)."""
    return len(op.weight_shape) == 2 and op.weight_shape[1] % block_size == 0


def _is_static(setting: Setting) -> bool:
    return setting.mode.startswith("static")


def _entry(regex: str, operation: str, setting: Setting, blockwise: bool) -> dict[str, Any]:
    if setting.mode == "none":
        return {"regex": regex, "operation": operation, "algorithm_key": _NO_QUANTIZE, "op_config": {}}
    granularity = f"BLOCKWISE_{setting.block_size}" if blockwise else "CHANNELWISE"
    bits = int(setting.mode[-1])
    config: dict[str, Any] = {
        "weight_tensor_config": {"num_bits": bits, "symmetric": True, "granularity": granularity, "dtype": "INT"},
        "compute_precision": "FLOAT" if setting.mode.startswith("weight_only") else "INTEGER",
        "explicit_dequantize": setting.mode.startswith("weight_only"),
        "min_weight_elements": setting.min_weight_elements,
    }
    if _is_static(setting):
        config["activation_tensor_config"] = {
            "num_bits": 8,
            "symmetric": False,
            "granularity": "TENSORWISE",
            "dtype": "INT",
        }
    return {"regex": regex, "operation": operation, "algorithm_key": _MIN_MAX, "op_config": config}


def quantized_tensors(model: Any) -> list[str]:
    """Names of tensors that already carry quantization (scales) or are float16: the file is not float."""
    from litert_quantizer.utils import tfl_flatbuffer_utils as fb

    return [
        fb.get_tensor_name(tensor)
        for subgraph in model.subgraphs
        for tensor in subgraph.tensors
        if (tensor.quantization is not None and tensor.quantization.scale is not None)
        or fb.TENSOR_CODE_TO_TYPE.get(tensor.type) == "FLOAT16"
    ]


def weight_summary(ops: list[Op], quantized: Any) -> dict[str, Any]:
    """How each weight of the float file came out: counts per type and the weights left in float."""
    types = _weight_types(quantized)
    weights = [(op.weight, types.get(op.weight, "float32")) for op in ops if op.weight is not None]
    counts: dict[str, int] = {}
    for _, kind in weights:
        counts[kind] = counts.get(kind, 0) + 1
    float_weights = [name for name, kind in weights if kind == "float32"]
    return {"weights": counts, "float_weights": float_weights[:_LISTED], "float_weights_count": len(float_weights)}


def validation_summary(result: Any, worst: int = 5) -> dict[str, Any]:
    """The quantizer's per-tensor comparison (float file against quantized, same inputs), cut to the outputs and
    the `worst` activations by cosine similarity."""
    summary: dict[str, Any] = {"outputs": {}, "worst_tensors": [], "tensors_compared": 0}
    for key in result.available_signature_keys():
        signature = result.get_signature_comparison_result(key)
        summary["outputs"].update({name: _rounded(values) for name, values in signature.output_tensors.items()})
        activations = {**signature.intermediate_tensors, **signature.output_tensors}
        summary["tensors_compared"] += len(activations) + len(signature.constant_tensors)
        ranked = sorted(activations.items(), key=lambda item: item[1].get("cosine_similarity", 1.0))
        summary["worst_tensors"] += [{"tensor": name[:160], **_rounded(values)} for name, values in ranked[:worst]]
    summary["worst_tensors"] = sorted(summary["worst_tensors"], key=lambda row: row.get("cosine", 1.0))[:worst]
    return summary


def _rounded(values: dict[str, float]) -> dict[str, float]:
    names = {"cosine_similarity": "cosine", "mse": "mse", "snr": "snr_db"}
    return {names.get(key, key): float(f"{value:.6g}") for key, value in values.items()}


def signature_of(model_bytes: bytes) -> tuple[str, list[str]]:
    signatures = litert_interpreter(model_bytes).get_signature_list()
    if not signatures:
        raise StageError("the .tflite has no signature; the LiteRT quantizer feeds and compares by signature")
    key = next(iter(signatures))
    return key, list(signatures[key]["inputs"])


def samples(ctx: StageContext, signature: str, inputs: list[str], limit: int | None) -> Iterator[dict[str, Any]]:
    """Calibration samples one at a time, keyed by the file's signature inputs (by name, or the only one)."""
    if ctx.calibration is None:
        raise StageError("litert_quantize needs calibration samples here; add data.calibration")
    count = 0
    for batch in ctx.calibration():
        if set(batch) != set(inputs):
            if len(batch) != 1 or len(inputs) != 1:
                raise StageError(f"calibration inputs {sorted(batch)} do not match signature {signature}: {inputs}")
            batch = {inputs[0]: next(iter(batch.values()))}
        for i in range(len(next(iter(batch.values())))):
            if limit is not None and count >= limit:
                return
            count += 1
            yield {name: np.asarray(array[i : i + 1]) for name, array in batch.items()}


def validate(quantizer: Any, ctx: StageContext, float_bytes: bytes, on: str, count: int) -> dict[str, Any]:
    """The quantizer's own check: both files on the same inputs, every tensor compared. Informational: a failure
    here is noted in the details, not an error of the stage."""
    from litert_quantizer.utils import tfl_interpreter_utils, validation_utils

    if on == "none":
        return {"data": "none"}
    if on == "calibration":
        signature, inputs = signature_of(float_bytes)
        data = {signature: list(samples(ctx, signature, inputs, count))}
    else:  # seeded (the quantizer's fixed seed): the same inputs every run
        data = tfl_interpreter_utils.create_random_normal_input_data(float_bytes, num_samples=count)
    metrics = [validation_utils.ValidationErrorMetric.MSE, validation_utils.ValidationErrorMetric.COSINE_SIMILARITY]
    try:
        result = quantizer.validate(data, error_metrics=metrics, num_threads=2)
    except (ValueError, RuntimeError, KeyError) as error:
        return {"data": on, "error": first_line(error)}
    used = sum(len(list(rows)) for rows in data.values())
    return {"data": on, "samples": used, **validation_summary(result)}


@contextlib.contextmanager
def quiet() -> Iterator[list[str]]:
    """The quantizer's progress bars, Python warnings and native logs, captured."""
    with warnings.catch_warnings(), captured_native_output() as log:
        warnings.simplefilter("ignore")
        yield log


def notable(log: list[str]) -> list[str]:
    return [line for line in notable_log_lines(log) if "Calibration" not in line]
