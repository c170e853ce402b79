"""`litert_quantize` stage: float `.tflite` → quantized `.tflite` with the LiteRT quantizer (`litert_quantizer`):
weight-only int8/int4, dynamic int8/int4 (int4 optionally blockwise), static int8 calibrated on data.calibration,
and scope rules that give matching ops their own setting. Records the quantizer's per-tensor validation.

Knows litert_quantizer and the options it takes; nothing of recipes' YAML, runtimes, parity or reports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.artifacts import write_bytes_atomic
from pipeline.core.artifact import Artifact
from pipeline.core.toolchain import TOOLCHAIN
from pipeline.errors import StageError, first_line
from pipeline.stages import litert_recipe as plan
from pipeline.stages.base import Stage, StageContext, StageOptions

Mode = Literal["weight_only_int8", "weight_only_int4", "dynamic_int8", "dynamic_int4", "static_int8"]
BlockSize = Literal[32, 64, 128, 256]
OpKind = Literal[
    "FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_TRANSPOSE", "BATCH_MATMUL", "EMBEDDING_LOOKUP"
]
# Default gates, by the least precise setting in the recipe. Weight-only int8 rounds weights only (per channel,
# ~0.4% of a channel's range), activations stay float: cosine 0.999 (measured 0.99999). Dynamic and static int8
# also round activations: the tflite stage's int8 gates. int4 has 16 levels a channel (or block): cosine 0.98.
# Each with the tail gate (the worst sample's cosine), which a few sign-flipped samples fail.
_GATES = {
    "weight_only_int8": {"cosine": 0.999, "min_cosine": 0.99},
    "dynamic_int8": {"cosine": 0.99, "min_cosine": 0.9},
    "static_int8": {"cosine": 0.99, "min_cosine": 0.9},
    "weight_only_int4": {"cosine": 0.98, "min_cosine": 0.8},
    "dynamic_int4": {"cosine": 0.98, "min_cosine": 0.8},
}


def _check_block_size(mode: str, block_size: int | None) -> None:
    # LiteRT's DEQUANTIZE kernel misreads blockwise weights (cosine 0.14 measured with skip_checks), and the
    # quantizer's policy allows blockwise int4 only as dynamic: say so rather than quantize nothing.
    if block_size is not None and mode != "dynamic_int4":
        raise ValueError(f"block_size: blockwise weights need mode: dynamic_int4 (got mode: {mode})")


class ScopeRule(StageOptions):
    scope: str = Field(description="regex searched in each op's output and weight tensor names")
    op: OpKind | None = Field(None, description="only ops of this kind")
    mode: Mode | Literal["none"] = Field(description="none keeps the matched ops in float")
    block_size: BlockSize | None = Field(None, description="dynamic_int4: blockwise for FULLY_CONNECTED weights")

    @field_validator("scope")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"not a regular expression ({error})") from None
        return value

    @model_validator(mode="after")
    def _blocks(self) -> ScopeRule:
        _check_block_size(self.mode, self.block_size)
        return self


class LiteRTQuantizeOptions(StageOptions):
    mode: Mode = Field(
        "weight_only_int8",
        description="weight_only: weights rounded, float arithmetic; dynamic: activations quantized at run time; "
        "static_int8: calibrated on data.calibration",
    )
    block_size: BlockSize | None = Field(None, description="dynamic_int4: blockwise for FULLY_CONNECTED weights")
    rules: list[ScopeRule] = Field(default_factory=list, description="later rules win, as in the quantizer")
    io: Literal["float32", "int8"] = Field("float32", description="static_int8: the file's input/output type")
    min_weight_elements: int = Field(0, ge=0, description="weights with fewer elements stay float")
    validate_on: Literal["calibration", "random", "none"] | None = Field(
        None, description="the quantizer's per-tensor check; default calibration for static, else random"
    )
    validation_samples: int = Field(8, ge=1, le=256, description="samples the quantizer's own check runs on")

    @model_validator(mode="after")
    def _consistent(self) -> LiteRTQuantizeOptions:
        _check_block_size(self.mode, self.block_size)
        if self.io != "float32" and self.mode != "static_int8":
            raise ValueError(f"io: {self.io} needs mode: static_int8 (got mode: {self.mode})")
        return self

    @property
    def modes(self) -> list[str]:
        return [self.mode, *(rule.mode for rule in self.rules if rule.mode != "none")]

    @property
    def validation_data(self) -> str:
        return self.validate_on or ("calibration" if "static_int8" in self.modes else "random")


class LiteRTQuantizeStage(Stage):
    kind = "litert_quantize"
    Options = LiteRTQuantizeOptions
    takes = frozenset({"tflite"})
    gives = "tflite"
    packages = (*TOOLCHAIN, "litert-quantizer")
    cacheable = True
    # In process: the conversion worker loads sources and saved Keras files, not a .tflite from upstream (the
    # executor's saved_fields); quantizing is flatbuffer work in Python and crashes no converter.
    isolatable = False

    @classmethod
    def required_data(cls, options: LiteRTQuantizeOptions) -> list[str]:
        needed = "static_int8" in options.modes or options.validation_data == "calibration"
        return ["calibration"] if needed else []

    @classmethod
    def refuses_upstream(cls, kind: str, options: StageOptions) -> str | None:
        quantize = getattr(options, "quantize", "none")
        if kind == cls.kind or quantize != "none":
            given = f"{kind} quantize: {quantize}" if kind != cls.kind else kind
            return f"litert_quantize needs a float .tflite; {given} gives a quantized one (use {{tflite}} before it)"
        return None

    @classmethod
    def describe(cls, options: LiteRTQuantizeOptions) -> str:
        label = f"litert_quantize {options.mode}"
        label += f" block={options.block_size}" if options.block_size else ""
        return label + (f" +{len(options.rules)} rules" if options.rules else "")

    @classmethod
    def default_gates(cls, options: LiteRTQuantizeOptions) -> dict[str, float]:
        return min((_GATES[mode] for mode in options.modes), key=lambda gates: gates["cosine"])

    def run(self, upstream: Artifact, options: LiteRTQuantizeOptions, ctx: StageContext) -> Artifact:
        from litert_quantizer import Quantizer
        from litert_quantizer.utils import tfl_flatbuffer_utils as fb

        float_bytes = Path(upstream.path).read_bytes()
        float_model = fb.read_model(float_bytes)
        already = plan.quantized_tensors(float_model)
        if already:
            raise StageError(
                f"{upstream.path}: already quantized ({len(already)} quantized tensors, e.g. {already[0]}); "
                "litert_quantize needs a float .tflite"
            )
        ops = plan.ops_of(float_model)
        base = plan.Setting(options.mode, options.block_size, options.min_weight_elements)
        rules = [
            (r.scope, r.op, plan.Setting(r.mode, r.block_size, options.min_weight_elements)) for r in options.rules
        ]
        recipe = plan.build_recipe(ops, base, rules, float_io=options.io == "float32")
        for index, matched in enumerate(recipe.matched):
            if not matched:
                raise StageError(
                    f"rules[{index}].scope {options.rules[index].scope!r} matches no op of {upstream.path}"
                )
        write_bytes_atomic(ctx.work_dir / "quantizer_recipe.json", json.dumps(recipe.entries, indent=1).encode())
        quantizer = Quantizer(float_bytes, recipe.entries)
        with plan.quiet() as log:
            try:
                calibration = None
                if quantizer.need_calibration:
                    signature, inputs = plan.signature_of(float_bytes)
                    feed = list(plan.samples(ctx, signature, inputs, limit=None))
                    calibration = quantizer.calibrate({signature: feed}, num_threads=2)
                quantized = bytes(quantizer.quantize(calibration, enable_progress_report=False).quantized_model)
            except (ValueError, RuntimeError, KeyError) as error:
                raise StageError(f"LiteRT quantizer failed on {upstream.path}: {first_line(error)}") from error
            validation = plan.validate(quantizer, ctx, float_bytes, options.validation_data, options.validation_samples)
        path = ctx.work_dir / "model.tflite"
        write_bytes_atomic(path, quantized)
        details: dict[str, Any] = {"mode": options.mode, "block_size": options.block_size, "io": options.io}
        details["size"] = {"float_bytes": len(float_bytes), "quantized_bytes": len(quantized)}
        quantized_model = fb.read_model(quantized)
        details.update(plan.weight_summary(ops, quantized_model))
        if recipe.channelwise_instead:
            details["channelwise_instead_of_blockwise"] = recipe.channelwise_instead[:8]
        details["rules"] = [
            {"scope": r.scope, "mode": r.mode, "matched": m[:8]}
            for r, m in zip(options.rules, recipe.matched, strict=True)
        ]
        details["validation"] = validation
        warnings = [*plan.unhonoured_rules(recipe, quantized_model), *plan.notable(log)]
        return Artifact(kind="tflite", path=path, key=ctx.key, details=details, warnings=warnings)
