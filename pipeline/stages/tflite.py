"""`tflite` stage: Keras model or SavedModel → `.tflite`, with optional post-training quantization.

Knows the TFLite converter only; nothing of recipes, runtimes or reports.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.artifacts import write_bytes_atomic
from pipeline.core.artifact import Artifact
from pipeline.errors import StageError
from pipeline.frameworks import captured_native_output, import_tensorflow, litert_interpreter, notable_log_lines
from pipeline.sources.model import keras_call_inputs, tensor_name
from pipeline.stages.base import ConversionStage, StageContext, StageOptions
from pipeline.stages.dft import fails_on_fft
from pipeline.stages.recurrent import signature_at_fixed_shapes, signature_shapes
from pipeline.stages.tflite_fallback import debug_and_fall_back
from pipeline.stages.trace import fixed_shapes, traced_export

# Ops a converted SavedModel keeps when its variables were not frozen: such a file runs and outputs NaN.
_UNFROZEN_VARIABLE_OPS = {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"}
_CALIBRATED = {"int8", "int16x8"}
# What the converter says when a model converts only at fixed shapes (pipeline.stages.tflite.fixed_shapes).
_FREE_SHAPE_FAILURES = ("tensor list", "TensorList", "Select TF ops", "TF Select ops", "select_tf_ops")
_IO_TYPES = {"int8": {"float32", "int8", "uint8"}, "int16x8": {"float32", "int16"}}
# TF1's loops built in control flow v1 (dynamic_rnn, scan, while_loop) keep their state in TensorArrayV3 ops, which no
# converter flag turns into the tensor lists the builtins lower (measured: neither the fixed-shape rescue nor
# experimental_enable_resource_variables). Rebuilt in control flow v2, the same code gives tensor lists.
_TENSOR_ARRAYS_V1 = re.compile(r"\bTensorArray\w*V3\b")
_CONTROL_FLOW_V1_ADVICE = (
    "TensorArray…V3 ops are TF1 control flow v1 (a tf.compat.v1.nn.dynamic_rnn, scan or while_loop built with "
    "control flow v2 off), which TFLite's builtins cannot run: rebuild the graph from its code after "
    "tf.compat.v1.enable_control_flow_v2() (its loops then convert at fixed shapes), or keep them as TensorFlow "
    "ops with supported_ops: [builtins, select_tf_ops] (a runtime with the Flex delegate)"
)


class TfliteOptions(StageOptions):
    quantize: Literal["none", "dynamic", "float16", "int8", "int16x8"] = Field(
        "none",
        description="none: float32; dynamic: int8 weights, float activations; float16: float16 weights; int8: full "
        "integer, calibrated on data.calibration; int16x8: int16 activations, int8 weights (calibrated)",
    )
    io: Literal["float32", "int8", "uint8", "int16"] = Field(
        "float32", description="the file's input/output type: int8 or uint8 with int8, int16 with int16x8"
    )
    supported_ops: list[Literal["builtins", "select_tf_ops"]] = Field(
        default_factory=lambda: ["builtins"],
        min_length=1,
        description="select_tf_ops lets ops missing from TFLite run as TensorFlow kernels (Flex); "
        "such files need a runtime with the Flex delegate.",
    )
    debug: bool = Field(
        False, description="int8 only: measure each layer's quantization error (TFLite QuantizationDebugger)"
    )
    fallback: Literal["none", "auto"] = Field(
        "none", description="int8 only: when the output fails its gates, keep the worst layers in float"
    )
    max_float_layers: int = Field(8, ge=1, description="fallback: auto tries 1, 2, 4, … up to this many float layers")
    rescue: bool = Field(
        True,
        description="when conversion fails at free shapes (RNN tensor lists, ops that need Select TF ops only at "
        "a free size), convert again at fixed shapes: the batch at `fixed_batch`, other free dimensions at the "
        "evaluation data's sizes; recorded in the output's rescues. false keeps the converter's error.",
    )
    fixed_batch: int = Field(1, ge=1, description="the batch size a fixed-shape rescue converts at")

    @model_validator(mode="after")
    def _io_fits_quantize(self) -> TfliteOptions:
        allowed = _IO_TYPES.get(self.quantize, {"float32"})
        if self.io not in allowed:
            raise ValueError(
                f"io: {self.io} does not go with quantize: {self.quantize} (allowed: {', '.join(sorted(allowed))})"
            )
        # The debugger calibrates and quantizes to full int8; for dynamic or int16x8 it would measure another model.
        for name, wanted in (("debug", self.debug), ("fallback", self.fallback == "auto")):
            if wanted and self.quantize != "int8":
                raise ValueError(f"{name} needs quantize: int8 (got quantize: {self.quantize})")
        return self

    @property
    def layer_debug(self) -> bool:
        return self.debug or self.fallback == "auto"


class TfliteStage(ConversionStage):
    kind = "tflite"
    Options = TfliteOptions
    gives = "tflite"
    shape_bound = True

    @classmethod
    def calibrated(cls, options: TfliteOptions) -> bool:
        return options.quantize in _CALIBRATED

    @classmethod
    def describe(cls, options: TfliteOptions) -> str:
        label = "tflite" if options.quantize == "none" else f"tflite {options.quantize}"
        if "select_tf_ops" in options.supported_ops:
            label += " +select_tf_ops"
        if options.fallback == "auto":
            label += f" fallback<={options.max_float_layers}"
        return f"{label} io={options.io}" if options.io != "float32" else label

    @classmethod
    def needs_verdicts(cls, options: TfliteOptions) -> bool:
        return options.fallback == "auto"

    @classmethod
    def default_gates(cls, options: TfliteOptions) -> dict[str, float]:
        # Quantized: a mean cosine of 0.99 lets five sign-flipped samples in a thousand through; the tail gate
        # (the worst sample's cosine) does not. float16 rounds weights to 11 bits, an error that scales with the
        # outputs: an absolute max_abs 0.01 failed logits near ±10 at cosine 0.9999997 (max_abs 0.012). Measured
        # nrmse 2.1e-4 to 3.7e-4 and min_cosine >= 0.9999993 on outputs reaching |1| to |60|; weights float16
        # flushes to zero: nrmse 0.57, min_cosine 0.36.
        quantized = {"cosine": 0.99, "min_cosine": 0.9}
        float16 = {"nrmse": 1e-2, "min_cosine": 0.999}
        return {"none": {"max_abs": 1e-4}, "float16": float16}.get(options.quantize, quantized)

    def run(self, upstream: Artifact, options: TfliteOptions, ctx: StageContext) -> Artifact:
        tf = import_tensorflow()
        fixed: dict[str, list[int]] = {}  # input → shape, once a fixed-shape rescue is taken
        dft = False  # whether that rescue traces FFTs as DFT matrix products

        def converter_of(frozen: bool) -> Any:
            if fixed:
                made, by_name = fixed_shape_converter(
                    tf, upstream, fixed, ctx.work_dir, self.calibrated(options), dft=dft
                )
                _configure(tf, made, options, ctx, by_name=by_name)
                return made
            made = _frozen_function_converter(tf, upstream) if frozen else _converter_for(tf, upstream, ctx.work_dir)
            _configure(tf, made, options, ctx, by_name=not frozen)
            return made

        frozen, rescues = False, []
        try:
            model_bytes, log = _convert(converter_of(frozen))
        except StageError as error:
            raw = str(error.__cause__ or error)
            if not (options.rescue and upstream.kind in ("keras", "savedmodel") and _fails_at_free_shapes(raw)):
                raise
            dft = upstream.kind == "keras" and upstream.flavour != "tf_keras" and fails_on_fft(raw)
            fixed.update(_rescue_shapes(upstream, options.fixed_batch, ctx.sample_shapes))
            shapes = ", ".join(f"{name} {shape}" for name, shape in fixed.items())
            how = f"fixed input shapes {shapes}" + (" with each FFT as DFT matrix products" if dft else "")
            ctx.log(f"conversion failed at free shapes; converting at {how}")
            try:
                model_bytes, log = _convert(converter_of(frozen))
            except StageError as again:
                outcome = "the same way" if str(again) == str(error) else f"too: {again}"
                raise StageError(f"{error} (converting at {how} failed {outcome})") from again
            name = "fft_as_matmul" if dft else "fixed_shapes"
            rescues.append({"name": name, "raw_error": str(error), "action": f"converted at {how}"})
        warnings = notable_log_lines(log)
        if _unfrozen_variable_ops(model_bytes) and upstream.kind == "savedmodel":
            # tf.saved_model.save(keras3_model) gives such SavedModels; its concrete function, taken
            # without the trackable object, freezes the variables (COMPAT.md). Signatures are lost.
            ctx.log("SavedModel converted with unfrozen variables; converting its frozen function instead")
            frozen = True
            model_bytes, log = _convert(converter_of(frozen))
            warnings = [
                "the SavedModel keeps its variables as resources (made by tf.saved_model.save on a "
                "Keras 3 model?); converted its frozen concrete function instead, so the .tflite has "
                "no signature",
                *notable_log_lines(log),
            ]
        leftover = _unfrozen_variable_ops(model_bytes)
        if leftover:
            raise StageError(
                f"the converted model still reads variables ({', '.join(sorted(leftover))}); it would output NaN"
            )
        path = ctx.work_dir / "model.tflite"
        write_bytes_atomic(path, model_bytes)
        details: dict[str, Any] = {"quantize": options.quantize, "io": options.io}
        details["supported_ops"] = options.supported_ops
        if rescues:
            details.update(rescues=rescues, fixed_shapes=fixed)
        if options.layer_debug:
            limit = options.max_float_layers if options.fallback == "auto" else 0
            # A fresh converter: the debugger reconfigures the one it is given (calibrate-only).
            converter = converter_of(frozen)
            model_bytes, found = debug_and_fall_back(
                tf, converter, model_bytes, path, ctx, limit=limit, io_type=options.io, debug=options.debug
            )
            details.update(found)
            write_bytes_atomic(path, model_bytes)
        return Artifact(kind="tflite", path=path, key=ctx.key, warnings=warnings, details=details)


def _converter_for(tf: Any, upstream: Artifact, work_dir: Path) -> Any:
    lite = tf.lite.TFLiteConverter
    if upstream.kind == "savedmodel":
        return lite.from_saved_model(str(upstream.path), signature_keys=[upstream.signature or "serving_default"])
    if upstream.flavour == "tf_keras":
        return lite.from_keras_model(upstream.handle)
    # Keras 3: export a serving SavedModel first; it converts quietly and keeps its signature.
    return lite.from_saved_model(str(traced_export(upstream, work_dir)), signature_keys=["serving_default"])


def _rescue_shapes(upstream: Artifact, batch: int, sample_shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    if upstream.kind == "savedmodel":
        signature = upstream.signature or "serving_default"
        return signature_shapes(upstream.handle.signatures[signature], batch, sample_shapes, signature)
    return fixed_shapes(upstream.handle, batch, sample_shapes)


def _fails_at_free_shapes(raw: str) -> bool:
    """RNNs' tensor lists, and ops the builtins lack only while a size is unknown (a strided slice with a new axis
    over a free sequence length), convert at fixed shapes."""
    return any(sign in raw for sign in _FREE_SHAPE_FAILURES)


def fixed_shape_converter(
    tf: Any, upstream: Artifact, shapes: dict[str, list[int]], work_dir: Path, calibrated: bool, dft: bool = False
) -> tuple[Any, bool]:
    """A converter of the Keras model traced at fixed input shapes, called with its own input structure (with
    `dft`, Keras 3's FFTs traced as DFT matrix products); and whether it takes representative samples by input
    name (a Keras 3 export's signature does)."""
    if upstream.kind == "savedmodel":
        return _savedmodel_fixed_shape_converter(tf, upstream, shapes, work_dir), True
    model = upstream.handle
    dtypes = {tensor_name(tensor): tensor.dtype for tensor in model.inputs}
    specs = {name: tf.TensorSpec(shape, dtypes[name], name=name) for name, shape in shapes.items()}
    structure = keras_call_inputs(model, specs)
    if upstream.flavour == "tf_keras":
        # Measured on a tf_keras LSTM: with the model as trackable object the float file is 1.8e-3 off the model,
        # without it 4.5e-8 (no signature then; inputs keep the specs' names); but calibrating without it
        # crashes TensorFlow (SIGSEGV), so int8 keeps the trackable path, whose error the quantization dwarfs.
        function = tf.function(lambda inputs: model(inputs, training=False)).get_concrete_function(structure)
        trackable = [model] if calibrated else []
        return tf.lite.TFLiteConverter.from_concrete_functions([function], *trackable), calibrated
    # The run's one export at these shapes: a second converter (the layer debugger's) and the ONNX stage's FFT
    # rescue read the same folder.
    export_dir = traced_export(upstream, work_dir, shapes, dft)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(export_dir), signature_keys=["serving_default"])
    return converter, True


def _savedmodel_fixed_shape_converter(tf: Any, upstream: Artifact, shapes: dict[str, list[int]], work_dir: Path) -> Any:
    """A converter of the SavedModel's signature retraced at `shapes` and frozen (pipeline.stages.recurrent). Its
    tensor lists keep the batch they were traced at free; at batch 1 the converter fixes it."""
    signature = upstream.signature or "serving_default"
    with captured_native_output():
        export_dir = signature_at_fixed_shapes(tf, upstream.handle, signature, shapes, work_dir / "saved_model_fixed")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(export_dir), signature_keys=["serving_default"])
    if all(shape[:1] == [1] for shape in shapes.values()):
        converter._experimental_default_to_single_batch_in_tensor_list_ops = True
    return converter


def _frozen_function_converter(tf: Any, upstream: Artifact) -> Any:
    loaded = tf.saved_model.load(str(upstream.path))
    function = loaded.signatures[upstream.signature or "serving_default"]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
    converter._edgeport_keepalive = loaded  # the function's captures die with `loaded`
    return converter


def _configure(tf: Any, converter: Any, options: TfliteOptions, ctx: StageContext, by_name: bool) -> None:
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if options.quantize == "int8":
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    elif options.quantize == "int16x8":
        ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    if "select_tf_ops" in options.supported_ops:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.target_spec.supported_ops = ops
    if options.quantize == "none":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if options.quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if options.quantize in _CALIBRATED:
        if ctx.calibration is None:
            raise StageError(f"quantize: {options.quantize} needs representative inputs; add data.calibration")
        converter.representative_dataset = _representative_dataset(ctx, by_name)
        if options.io != "float32":
            converter.inference_input_type = getattr(tf, options.io)
            converter.inference_output_type = getattr(tf, options.io)


def _representative_dataset(ctx: StageContext, by_name: bool) -> Any:
    """One sample at a time; keyed by signature input name, since a list is taken in an order of its own."""

    def samples() -> Any:
        assert ctx.calibration is not None
        for batch in ctx.calibration():
            count = len(next(iter(batch.values())))
            for i in range(count):
                sample = {name: array[i : i + 1] for name, array in batch.items()}
                # A signature-less (frozen function) converter takes a list in flattened, i.e. sorted, order.
                yield sample if by_name else [sample[name] for name in sorted(sample)]

    return samples


def _convert(converter: Any) -> tuple[bytes, list[str]]:
    try:
        with captured_native_output() as log:
            model_bytes = converter.convert()
    except Exception as error:  # the converter raises many types; all mean "no artifact"
        raise StageError(f"TFLite conversion failed: {converter_error_summary(str(error))}") from error
    return model_bytes, log


def _unfrozen_variable_ops(model_bytes: bytes) -> set[str]:
    interpreter = litert_interpreter(model_bytes)
    return {op["op_name"] for op in interpreter._get_ops_details()} & _UNFROZEN_VARIABLE_OPS


def converter_error_summary(text: str) -> str:
    """The converter's MLIR dump runs to pages; keep what a person can act on."""
    select_ops = re.search(r"TF Select ops: (.+)", text)
    if select_ops:
        missing = select_ops.group(1).strip()
        if _TENSOR_ARRAYS_V1.search(missing):
            return f"ops missing from the TFLite builtins: {missing}. {_CONTROL_FLOW_V1_ADVICE}"
        return (
            f"ops missing from the TFLite builtins: {missing} "
            "(they need TF Select / Flex ops: supported_ops: [builtins, select_tf_ops])"
        )
    custom_ops = re.search(r"Custom ops: (.+)", text)
    if custom_ops:
        return f"ops unknown to TFLite: {custom_ops.group(1).strip()} (custom ops)"
    messages = re.findall(r"error: (?:loc\(.*?\)\)*:? ?)?([^\n]+)", text)
    if messages:
        return _one_line(messages[-1])[:500]
    return _one_line((text.strip().splitlines() or ["unknown error"])[0])[:500]


def _one_line(message: str) -> str:
    """The converter writes some line breaks as the two characters `\\n` (its tensor-list advice does)."""
    return " ".join(message.replace("\\n", " ").split())
