"""`onnx` stage: Keras model or SavedModel → `.onnx` through tf2onnx, then optional onnxruntime quantization.

Knows tf2onnx, onnx and onnxruntime.quantization; nothing of recipes, runtimes or reports.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.artifacts import write_bytes_atomic
from pipeline.core.artifact import Artifact
from pipeline.core.tensors import match_feed
from pipeline.errors import StageError, first_line
from pipeline.frameworks import captured_native_output, import_tensorflow, notable_log_lines
from pipeline.stages.base import ConversionStage, StageContext, StageOptions
from pipeline.stages.dft import fails_on_fft
from pipeline.stages.onnx_index_math import float_index_math
from pipeline.stages.onnx_optimizers import find_culprit, guard_zero_padded_pools, onnx_input_spec, run_file, smoke_feed
from pipeline.stages.trace import fixed_shapes, signature_output_names, traced_export


class OnnxOptions(StageOptions):
    # tf2onnx 1.17 knows opsets up to 18; below 9 it cannot express common Keras layers.
    opset: int = Field(17, ge=9, le=18, description="ONNX opset of the export (tf2onnx 1.17 knows up to 18)")
    quantize: Literal["none", "dynamic", "static"] = Field(
        "none", description="onnxruntime quantization after export: static = QDQ with data.calibration"
    )
    per_channel: bool = Field(False, description="per-channel weight scales (static and dynamic)")
    dynamic_batch: bool = Field(True, description="keep the batch dimension symbolic; false fixes it at 1")
    reduce_range: bool = Field(
        False, description="7-bit weights: avoids int16 saturation in x86 int8 kernels without VNNI (costs accuracy)"
    )
    activation_type: Literal["int8", "uint8"] = Field("int8", description="static only: activation integer type")
    weight_type: Literal["int8", "uint8"] = Field("int8", description="weight integer type (static and dynamic)")
    calibration_method: Literal["minmax", "entropy", "percentile"] = Field(
        "minmax", description="static only: how activation ranges are chosen from data.calibration"
    )
    rescue: bool = Field(
        True,
        description="get past what tf2onnx's file fails on: Erfc nodes onnx.checker rejects (exact GELU) rewritten as "
        "1 - Erf; a file onnxruntime cannot run at a free batch exported at batch 1; one it cannot run optimized run "
        "without the optimizer that breaks it. Each is recorded in the output's rescues; false keeps the raw error.",
    )

    @model_validator(mode="after")
    def _quantization_options_need_quantize(self) -> OnnxOptions:
        # Compared with the defaults, not with the keys given: a worker re-validates the full dump of these options.
        changed = {name for name, spec in type(self).model_fields.items() if getattr(self, name) != spec.default}
        if self.quantize == "none":
            stray = sorted(
                changed & {"per_channel", "reduce_range", "activation_type", "weight_type", "calibration_method"}
            )
            if stray:
                raise ValueError(f"{', '.join(stray)} apply to quantized exports; set quantize: static or dynamic")
        if self.quantize == "dynamic":
            stray = sorted(changed & {"activation_type", "calibration_method"})
            if stray:
                raise ValueError(
                    f"{', '.join(stray)} apply to quantize: static (dynamic quantizes activations at run time)"
                )
        return self


_TYPE_SHORT = {"int8": "s8", "uint8": "u8"}


class OnnxStage(ConversionStage):
    kind = "onnx"
    Options = OnnxOptions
    gives = "onnx"

    @classmethod
    def calibrated(cls, options: OnnxOptions) -> bool:
        return options.quantize == "static"

    @classmethod
    def describe(cls, options: OnnxOptions) -> str:
        label = f"onnx opset={options.opset}"
        if options.quantize != "none":
            label += f" {options.quantize}-int8" + (" per-channel" if options.per_channel else "")
            label += " reduce-range" if options.reduce_range else ""
            if options.quantize == "static":
                label += f" {_TYPE_SHORT[options.activation_type]}{_TYPE_SHORT[options.weight_type]}"
                label += "" if options.calibration_method == "minmax" else f" {options.calibration_method}"
            elif options.weight_type != "int8":
                label += f" weights={options.weight_type}"
        return label if options.dynamic_batch else f"{label} batch=1"

    @classmethod
    def default_gates(cls, options: OnnxOptions) -> dict[str, float]:
        # Quantized: the tail gate (the worst sample's cosine) stops a few wrecked samples hiding in the mean.
        return {"max_abs": 1e-4} if options.quantize == "none" else {"cosine": 0.99, "min_cosine": 0.9}

    def run(self, upstream: Artifact, options: OnnxOptions, ctx: StageContext) -> Artifact:
        tf = import_tensorflow()
        import onnx

        proto, warnings, rescues = _exported(tf, onnx, upstream, options, ctx)
        smoke = _smoke_run(proto) if options.rescue else None  # (level it fails at, error) or None: it runs
        if smoke is not None and smoke[0] == "disabled" and options.dynamic_batch:
            # tf2onnx baked a size into the graph (keras-hub MiT): exported at batch 1, the file runs in chunks.
            at_one = options.model_copy(update={"dynamic_batch": False})
            proto, warnings, rescues = _exported(tf, onnx, upstream, at_one, ctx)
            action = "exported again at batch 1 (dynamic_batch: false); the file runs a sample at a time"
            rescues.append({"name": "fixed_batch", "raw_error": _cannot_run(smoke[1]), "action": action})
            smoke = _smoke_run(proto)
        path = ctx.work_dir / "model.onnx"
        if options.quantize == "none":
            write_bytes_atomic(path, proto.SerializeToString())
        else:
            quantize_warnings, kept = _quantize(proto, options, ctx, path)
            warnings += quantize_warnings
            rescues += _index_math_kept(kept)
            proto = onnx.load(str(path))
            _check(onnx, proto, "the quantized model")
        ops = Counter(node.op_type for node in proto.graph.node)
        details: dict[str, Any] = {
            "opset": options.opset,
            "quantize": options.quantize,
            **_quantization_details(options),
            "nodes": len(proto.graph.node),
            "ops": dict(ops.most_common()),
        }
        if options.rescue and options.quantize != "none":
            smoke = _smoke_run(proto)  # the quantized graph is another
        if smoke is not None and smoke[0] == "all":
            details["onnxruntime"], rescue = _optimizer_rescue(path, proto, smoke[1])
            rescues.append(rescue)
        if rescues:
            details["rescues"] = rescues
        return Artifact(kind="onnx", path=path, key=ctx.key, warnings=warnings, details=details)


FUNCTION_CALLS = frozenset({"StatefulPartitionedCall", "PartitionedCall"})  # TensorFlow ops tf2onnx may leave


def _index_math_kept(kept: list[str]) -> list[dict[str, str]]:
    """The index math static quantization left in float, as the rescue the report lists."""
    if not kept:
        return []
    raw_error = (
        f"{len(kept)} nodes compute integer indices in float (Cast to int after them): quantized, their range can "
        "hold log(0) = -inf and the indices come out wrong (keras-hub T5: index -2147483592)"
    )
    more = f" and {len(kept) - 6} more" if len(kept) > 6 else ""
    return [
        {
            "name": "float_index_math",
            "raw_error": raw_error,
            "action": f"left them in float: {', '.join(kept[:6])}{more}",
        }
    ]


def _exported(
    tf: Any, onnx: Any, upstream: Artifact, options: OnnxOptions, ctx: StageContext
) -> tuple[Any, list[str], list[Any]]:
    """tf2onnx's export, its names made canonical and checked (function calls, FFTs and Erfc rescued, zero-padded
    pools guarded); with the warnings it logged and the rescues it took."""
    proto, warnings = _logged(lambda: _export(upstream, options, ctx.work_dir))
    rescues = []
    calls = any(node.op_type in FUNCTION_CALLS for node in proto.graph.node)
    if calls and options.rescue and (upstream.kind == "savedmodel" or upstream.flavour != "tf_keras"):
        proto, warnings, rescue = _inlined(onnx, proto, upstream, options, ctx)
        rescues.append(rescue)
    canonical_names(proto)
    try:
        rescues += _checked_or_rescued(onnx, proto, options.rescue)
    except StageError as error:
        keras3 = upstream.kind == "keras" and upstream.flavour != "tf_keras"
        if not (options.rescue and keras3 and fails_on_fft(str(error))):
            raise
        proto, warnings, rescue = _with_ffts_as_matmul(tf, upstream, options, ctx, str(error))
        rescues += [rescue, *_checked_or_rescued(onnx, proto, options.rescue)]
    if options.rescue:
        rescues += _guarded_pools(proto)
    return proto, warnings, rescues


def _inlined(
    onnx: Any, proto: Any, upstream: Artifact, options: OnnxOptions, ctx: StageContext
) -> tuple[Any, list[str], dict[str, str]]:
    """Exported again from the SavedModel with every function inlined: the file, its warnings, the rescue."""
    raw_error = _checker_error(onnx, proto, "the exported model")
    saved = upstream.path if upstream.kind == "savedmodel" else traced_export(upstream, ctx.work_dir)
    signature = (upstream.signature if upstream.kind == "savedmodel" else None) or "serving_default"
    proto, warnings = _logged(lambda: _export_saved(saved, signature, options, inline=True))
    action = (
        "exported again from the SavedModel with every function inlined (Keras compiles a grouped convolution "
        "as an XLA function tf2onnx leaves as a call)"
    )
    return proto, warnings, {"name": "inline_functions", "raw_error": raw_error, "action": action}


def _with_ffts_as_matmul(
    tf: Any, upstream: Artifact, options: OnnxOptions, ctx: StageContext, raw_error: str
) -> tuple[Any, list[str], dict[str, str]]:
    """Exported again at the evaluation data's sizes (the batch free) with Keras's FFTs as DFT matrix products:
    the file (names canonical), its warnings, the rescue."""
    shapes = fixed_shapes(upstream.handle, 1, ctx.sample_shapes)
    proto, warnings = _logged(lambda: _export(upstream, options, ctx.work_dir, shapes, dft=True))
    canonical_names(proto)
    sizes = ", ".join(f"{name} {['batch', *shape[1:]]}" for name, shape in shapes.items())
    action = f"exported again at {sizes} with each FFT as DFT matrix products (ONNX has no complex tensors)"
    return proto, warnings, {"name": "fft_as_matmul", "raw_error": raw_error, "action": action}


def _guarded_pools(proto: Any) -> list[dict[str, str]]:
    """Each MaxPool fed by a zero Pad kept from onnxruntime's Pad_Fusion, as the rescue the report lists."""
    guarded = guard_zero_padded_pools(proto)
    if not guarded:
        return []
    raw_error = (
        f"{len(guarded)} MaxPool nodes read a zero Pad, which onnxruntime's Pad_Fusion folds into the pool's "
        "-inf padding: windows of negative values then give their maximum instead of 0"
    )
    action = f"gave {', '.join(guarded)} their Indices output, which that fusion leaves alone (same result)"
    return [{"name": "guard_zero_padded_pools", "raw_error": raw_error, "action": action}]


def _logged(export: Any) -> tuple[Any, list[str]]:
    with _logged_warnings("tf2onnx") as logged, captured_native_output() as native:
        try:
            proto = export()
        except Exception as error:  # tf2onnx raises many types; all mean "no artifact"
            raise StageError(f"tf2onnx export failed: {first_line(error)}") from error
    return proto, [*logged, *notable_log_lines(native)]


def _checker_error(onnx: Any, proto: Any, what: str) -> str:
    try:
        _check(onnx, proto, what)
    except StageError as error:
        return str(error)
    return f"{what} calls TensorFlow functions ONNX cannot run"


def _smoke_run(proto: Any) -> tuple[str, str] | None:
    """Two samples through onnxruntime with every graph optimization, as deployments run it: None when they run,
    else the level that fails ("all", or "disabled" when it fails without optimizations too) and the error."""
    model, feed = proto.SerializeToString(), smoke_feed(proto)
    error = _error_of(model, feed, "all")
    if error is None:
        return None
    return ("all", error) if _error_of(model, feed, "disabled") is None else ("disabled", error)


def _error_of(model: bytes | Path, feed: dict[str, Any], level: str) -> str | None:
    try:
        run_file(model, feed, level)
        return None
    except Exception as error:  # onnxruntime raises its own kinds for a file it cannot run
        return first_line(error, 500)


def _cannot_run(error: str) -> str:
    return f"onnxruntime could not run it: {error}"


def _checked_or_rescued(onnx: Any, proto: Any, rescue: bool) -> list[dict[str, str]]:
    """onnx.checker on the export; where it fails on Erfc only, the nodes rewritten as 1 - Erf and checked again.
    The rescues taken, as the report lists them."""
    try:
        _check(onnx, proto, "the exported model")
        return []
    except StageError as error:
        if not (rescue and "Erfc" in str(error)):
            raise
        count = erfc_as_erf(onnx, proto)
        _check(onnx, proto, f"the exported model with {count} Erfc nodes as 1 - Erf")
        action = f"rewrote {count} Erfc nodes as 1 - Erf (erfc(x) = 1 - erf(x); Erf is an ONNX op since opset 9)"
        return [{"name": "erfc_as_erf", "raw_error": str(error), "action": action}]


def _optimizer_rescue(path: Path, proto: Any, error: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A file that runs without graph optimizations but not with them: the optimizer that breaks it, found by
    bisection, and the onnxruntime settings that avoid it (which the ONNX runtime then runs it with), with the
    rescue as the report lists it."""
    culprit = find_culprit(path, smoke_feed(proto), lambda outputs: outputs is not None)
    disabled = culprit.disabled if culprit is not None else ()
    settings: dict[str, Any] = {"disabled_optimizers": list(disabled)}
    if not disabled:
        settings = {"graph_optimization": "disabled"}
    described = culprit.describe() if culprit is not None else "onnxruntime's graph optimizations"
    action = f"runs without {described}; deploy with the same onnxruntime session settings: {settings}"
    return settings, {"name": "onnxruntime_optimizer", "raw_error": _cannot_run(error), "action": action}


def erfc_as_erf(onnx: Any, proto: Any) -> int:
    """Rewrite every Erfc node (what tf2onnx emits for exact GELU, and ONNX lacks) as Sub(1, Erf(x)), in place and
    in order; the count rewritten. Names follow the node's own, so equal graphs keep giving equal bytes."""
    graph, helper = proto.graph, onnx.helper
    nodes, count, one = [], 0, "erfc_as_erf__one"
    for original in graph.node:
        node = onnx.NodeProto()
        node.CopyFrom(original)  # the graph's own list is cleared below
        if node.op_type != "Erfc":
            nodes.append(node)
            continue
        erf = f"{node.name or node.output[0]}__erf"
        nodes.append(helper.make_node("Erf", [node.input[0]], [erf], name=erf))
        nodes.append(helper.make_node("Sub", [one, erf], [node.output[0]], name=f"{erf}__one_minus"))
        count += 1
    if count:
        graph.initializer.append(helper.make_tensor(one, onnx.TensorProto.FLOAT, [], [1.0]))
        del graph.node[:]
        graph.node.extend(nodes)
    return count


def canonical_names(proto: Any) -> None:
    """Rename what tf2onnx generates (`Transpose__32`, `const_axes__23`, `unk__40`) by kind and order of first use.

    tf2onnx numbers the nodes and constants it adds from a process-wide counter, and merges equal constants
    keeping whichever it meets first, in an order that changes from run to run: the same model gave files that
    differed only in those names and the order of initializers. Renamed by use, equal graphs give equal bytes, so
    a release can be rebuilt and checked by sha256. Graph inputs and outputs keep their names.
    """
    graph = proto.graph
    if any(attribute.g.node or attribute.graphs for node in graph.node for attribute in node.attribute):
        return  # subgraphs (If, Loop) may read outer names: leave such graphs as they are
    generated = re.compile(r"__\d+(:\d+)?$")
    kept = {value.name for value in [*graph.input, *graph.output]}
    renames: dict[str, str] = {}

    def rename(name: str, kind: str) -> None:
        # Named by what the name stands for, not by the name tf2onnx happened to keep: merged duplicates differ
        # only in their old prefix (`const_axes__11` or `const_starts__11` for one constant).
        if name and name not in kept and name not in renames and generated.search(name):
            renames[name] = f"{kind}__{len(renames)}"

    initializers = {init.name for init in graph.initializer}
    for node in graph.node:
        rename(node.name, node.op_type)
        for index, name in enumerate(node.output):
            rename(name, f"{node.op_type}_out{index}")
        for name in node.input:
            rename(name, "const" if name in initializers else "value")
    for value in [*graph.input, *graph.output, *graph.value_info]:  # free dimensions: `unk__40`
        for dim in value.type.tensor_type.shape.dim:
            rename(dim.dim_param, "unk")
    for node in graph.node:
        node.name = renames.get(node.name, node.name)
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    for value in [*graph.initializer, *graph.value_info]:
        value.name = renames.get(value.name, value.name)
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:  # dim_param and dim_value are one field: never touch a fixed size
                dim.dim_param = renames[dim.dim_param]
    ordered = sorted(graph.initializer, key=lambda init: init.name)
    del graph.initializer[:]
    graph.initializer.extend(ordered)


def _quantization_details(options: OnnxOptions) -> dict[str, Any]:
    """The settings that decide the quantized file's numbers, for the report (they are in the cache key too)."""
    if options.quantize == "none":
        return {}
    settings: dict[str, Any] = {
        "per_channel": options.per_channel,
        "reduce_range": options.reduce_range,
        "weight_type": options.weight_type,
    }
    if options.quantize == "static":
        settings |= {"format": "QDQ", "activation_type": options.activation_type}
        settings["calibration_method"] = options.calibration_method
    return settings


def _export(
    upstream: Artifact, options: OnnxOptions, work_dir: Path, shapes: dict[str, list[int]] | None = None, dft=False
) -> Any:
    """tf2onnx's export of the model's serving graph: a SavedModel as it is; a Keras model (3 or tf_keras) from the
    serving SavedModel the run traces once (pipeline.stages.trace), the one its TFLite outputs convert from, at
    `shapes` (each input's full shape) where given. Never tf2onnx's `from_keras`: it looks tensors up by the names
    Keras gives them, which a Sequential model's graph does not keep ('keras_tensor_5')."""
    if upstream.kind == "savedmodel":
        graph_def = upstream.details.get("graph_def")
        if graph_def is not None:
            return _export_graph_def(graph_def, options)
        return _export_saved(upstream.path, upstream.signature or "serving_default", options)
    traced = traced_export(upstream, work_dir, shapes, dft)
    proto = _export_saved(traced, "serving_default", options)
    _name_outputs_as_the_model(proto, upstream.handle)
    return proto


def _export_saved(path: Path, signature: str, options: OnnxOptions, inline: bool = False) -> Any:
    """A SavedModel's signature through tf2onnx's saved-model loader (which freezes it: fine for every SavedModel
    kind); with `inline`, functions marked never to inline (XLA-compiled ones) are inlined like any other."""
    import tf2onnx
    from tf2onnx import tf_loader

    tf2onnx.utils.INTERNAL_NAME = 1  # as in _export: the same graph gives the same bytes
    graph, inputs, outputs, renames = tf_loader.from_saved_model(
        str(path), None, None, tag="serve", signatures=[signature], return_tensors_to_rename=True
    )
    if inline:
        _allow_inlining(graph)
    shapes = None
    if not options.dynamic_batch:
        shapes = {name: [1, *_graph_input_shape(graph, name)[1:]] for name in inputs}
    proto, _ = tf2onnx.convert.from_graph_def(
        graph,
        input_names=inputs,
        output_names=outputs,
        opset=options.opset,
        tensors_to_rename=renames,
        shape_override=shapes,
    )
    return proto


def _export_graph_def(record: dict[str, Any], options: OnnxOptions) -> Any:
    """A TF1 source from the frozen GraphDef it was written from (pipeline.sources.tf1 records it), not from its
    SavedModel: there the graph is a function, which grappler leaves uninlined when it holds control flow v1
    (dynamic_rnn's and tf.scan's TensorArrayV3 loops) and tf2onnx leaves as a call ONNX has no op for ("No Op
    registered for StatefulPartitionedCall"); from the graph, tf2onnx makes such loops Scan / Loop (2e-7).
    Inputs and outputs are named by the signature's keys, as from the SavedModel."""
    import tf2onnx

    tf = import_tensorflow()
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(Path(record["path"]).read_bytes())
    shapes = {name: shape for name, shape in record["shapes"].items() if shape is not None}
    if not options.dynamic_batch:
        shapes = {name: [1, *shape[1:]] for name, shape in shapes.items()}
    _with_placeholder_shapes(graph_def, shapes)
    tf2onnx.utils.INTERNAL_NAME = 1  # as in _export_saved: the same graph gives the same bytes
    proto, _ = tf2onnx.convert.from_graph_def(
        graph_def,
        input_names=list(record["inputs"]),
        output_names=list(record["outputs"]),
        opset=options.opset,
        tensors_to_rename={**record["inputs"], **record["outputs"]},
    )
    return proto


def _with_placeholder_shapes(graph_def: Any, shapes: dict[str, list[int | None]]) -> None:
    """Each input placeholder given the shape the SavedModel's signature has (a recipe's `inputs` shape, a fixed
    batch), so that TensorFlow's shape inference sees it before tf2onnx converts, as the SavedModel's trace did."""
    by_node = {name.split(":")[0]: shape for name, shape in shapes.items()}
    for node in graph_def.node:
        shape = by_node.get(node.name)
        if shape is None or "shape" not in node.attr:
            continue
        node.attr["shape"].shape.Clear()
        for size in shape:
            node.attr["shape"].shape.dim.add().size = -1 if size is None else size


def _allow_inlining(graph: Any) -> None:
    """Keras runs a grouped convolution on CPU as a `jit_compile` function, marked `_noinline` and
    `_XlaMustCompile`: grappler leaves such a call alone, and tf2onnx has no op for it. Unmarked, it inlines."""
    for function in graph.library.function:
        for attribute in ("_noinline", "_XlaMustCompile"):
            if attribute in function.attr:
                del function.attr[attribute]
    for node in graph.node:
        if "_XlaMustCompile" in node.attr:
            del node.attr["_XlaMustCompile"]


def _name_outputs_as_the_model(proto: Any, model: Any) -> None:
    """A traced export's outputs are its signature keys (`output_0`, or a dict's keys): renamed to the model's own
    output names, which the reference records under, by key, never by order; a name the graph already uses
    elsewhere is left alone."""
    graph = proto.graph
    keys = [value.name for value in graph.output]
    used = {name for node in graph.node for name in node.output} | {value.name for value in graph.input}
    renames = {
        key: name
        for key, name in signature_output_names(keys, model).items()
        if key != name and (name not in used or name in keys)
    }
    for value in graph.output:
        value.name = renames.get(value.name, value.name)
    for node in graph.node:
        node.output[:] = [renames.get(name, name) for name in node.output]
        node.input[:] = [renames.get(name, name) for name in node.input]


def _graph_input_shape(graph: Any, tensor_name: str) -> list[int]:
    node_name = tensor_name.split(":")[0]
    for node in graph.node:
        if node.name == node_name and "shape" in node.attr:
            return [d.size for d in node.attr["shape"].shape.dim]
    raise StageError(f"cannot find the shape of input {tensor_name} to fix its batch dimension")


def _quantize(proto: Any, options: OnnxOptions, ctx: StageContext, path: Path) -> tuple[list[str], list[str]]:
    """onnxruntime quantization (pre-processed first, as its docs ask); written atomically to `path`. Its warnings,
    and the index math left in float (static quantization with rescues on)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    warnings = []
    exported, prepared = ctx.work_dir / "exported.onnx", ctx.work_dir / "prepared.onnx"
    write_bytes_atomic(exported, proto.SerializeToString())
    try:
        _pre_process(quant_pre_process, exported, prepared)
    except Exception as error:  # pre-processing is an optimisation; quantization works without it
        warnings.append(f"onnxruntime quant_pre_process failed ({first_line(error)}); quantized without it")
        prepared = exported
    kept: list[str] = []
    if options.quantize == "static" and options.rescue:
        import onnx

        kept = float_index_math(onnx.load(str(prepared), load_external_data=False))
    partial = path.with_name(f".{path.name}.partial")
    try:
        with captured_native_output(), contextlib.chdir(ctx.work_dir):
            types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
            if options.quantize == "dynamic":
                quantize_dynamic(
                    prepared,
                    partial,
                    per_channel=options.per_channel,
                    reduce_range=options.reduce_range,
                    weight_type=types[options.weight_type],
                )
            else:
                methods = {
                    "minmax": CalibrationMethod.MinMax,
                    "entropy": CalibrationMethod.Entropy,
                    "percentile": CalibrationMethod.Percentile,
                }
                quantize_static(
                    prepared,
                    partial,
                    _CalibrationReader(proto, ctx, histogram=options.calibration_method != "minmax"),
                    quant_format=QuantFormat.QDQ,
                    per_channel=options.per_channel,
                    reduce_range=options.reduce_range,
                    activation_type=types[options.activation_type],
                    weight_type=types[options.weight_type],
                    calibrate_method=methods[options.calibration_method],
                    nodes_to_exclude=kept,
                )
    except StageError:
        raise
    except Exception as error:  # onnxruntime raises many types; all mean "no artifact"
        partial.unlink(missing_ok=True)
        raise StageError(f"onnxruntime {options.quantize} quantization failed: {first_line(error)}") from error
    os.replace(partial, path)
    return warnings, kept


def _pre_process(quant_pre_process: Any, exported: Path, prepared: Path) -> None:
    """Symbolic shape inference fails on some graphs (several inputs); the rest of pre-processing still helps."""
    # It leaves temporary files in the current directory: keep them in the stage's work directory.
    with captured_native_output(), contextlib.chdir(prepared.parent):
        try:
            quant_pre_process(str(exported), str(prepared))
        except Exception:  # retried without the symbolic pass; a second failure propagates
            quant_pre_process(str(exported), str(prepared), skip_symbolic_shape=True)


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over data.calibration, keyed by the ONNX input names."""

    def __init__(self, proto: Any, ctx: StageContext, histogram: bool) -> None:
        if ctx.calibration is None:
            raise StageError("quantize: static needs representative inputs; add data.calibration")
        # onnxruntime's histogram calibrators (entropy, percentile) stack every batch's outputs into one array,
        # so their batches must all have one size: one sample each.
        size = _fixed_batch(proto) or (1 if histogram else None)
        self.batches: Iterator[dict[str, Any]] = _split(ctx.calibration(), size)
        self.onnx_inputs = [onnx_input_spec(graph_input) for graph_input in proto.graph.input]
        self.mapping: dict[str, str] | None = None

    def get_next(self) -> dict[str, Any] | None:
        batch = next(self.batches, None)
        if batch is None:
            return None
        if self.mapping is None:
            matches = match_feed(batch, self.onnx_inputs, "ONNX calibration inputs")
            self.mapping = {name: match.candidate for name, match in matches.items()}
        return {self.mapping[name]: array for name, array in batch.items()}


def _split(batches: Iterator[dict[str, Any]], size: int | None) -> Iterator[dict[str, Any]]:
    """A file with a fixed batch takes batches of exactly that size: every sample calibrates, in slices."""
    for batch in batches:
        if not size:
            yield batch
            continue
        count = len(next(iter(batch.values())))
        for start in range(0, count - size + 1, size):
            yield {name: array[start : start + size] for name, array in batch.items()}


def _fixed_batch(proto: Any) -> int | None:
    dim = proto.graph.input[0].type.tensor_type.shape.dim
    return dim[0].dim_value if dim and dim[0].dim_value > 0 else None


def _check(onnx: Any, proto: Any, what: str) -> None:
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as error:
        unranked = [value.name for value in proto.graph.output if not value.type.tensor_type.HasField("shape")]
        hint = ""
        if unranked:  # ONNX declares every graph output's rank; TensorFlow may leave one unknown
            hint = (
                f" (outputs of unknown rank: {', '.join(unranked)}; a tf.squeeze with no axis over a free batch "
                "leaves its rank unknown: give it its axis, as the model's author meant it)"
            )
        raise StageError(f"onnx.checker rejected {what}: {first_line(error)}{hint}") from error


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"tf2onnx {record.levelname.lower()}: {record.getMessage()}")


class _logged_warnings:  # a context manager, so named like one
    """Collect WARNING+ records of a library's logger, and keep them off the console."""

    def __init__(self, logger_name: str) -> None:
        self.logger = logging.getLogger(logger_name)
        self.handler = _ListHandler()

    def __enter__(self) -> list[str]:
        self._propagate = self.logger.propagate
        self.logger.addHandler(self.handler)
        self.logger.propagate = False
        return self.handler.messages

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.propagate = self._propagate
