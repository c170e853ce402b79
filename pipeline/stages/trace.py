"""A Keras 3 model traced once per run: its serving SavedModel, which every conversion of that model starts from.

Tracing is most of a conversion's time (MobileNetV2 96×96: `export` 9.4 s, `from_saved_model().convert()` 7.6 s), so
the tflite outputs of one model, the layer debugger's converter and the ONNX stage's saved-model route share it.
Knows Keras's export and the run's work folder; nothing of recipes or reports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pipeline.core.artifact import Artifact
from pipeline.errors import StageError
from pipeline.frameworks import captured_native_output, import_tensorflow
from pipeline.sources.model import keras_call_inputs, keras_tensor_specs, tensor_name
from pipeline.stages.dft import fft_as_matmul
from pipeline.stages.recurrent import inference_rnn_cells


def traced_export(
    upstream: Artifact, work_dir: Path, shapes: dict[str, list[int]] | None = None, dft: bool = False
) -> Path:
    """The model (Keras 3 or tf_keras) exported as a serving SavedModel once per run, beside the stages' work
    folders (`work_dir`'s parent, the run's): every tflite output of that model, the layer debugger's converter and
    every ONNX output convert from it, so that all formats read one graph, traced once in inference mode.
    Tracing is most of a conversion's time (MobileNetV2: export 9.4 s, convert 7.6 s). `shapes` (input name → full
    shape) traces at fixed shapes, `dft` with Keras's FFTs as DFT matrix products (the rescues); each its own export.
    Two lanes that export at once each write a folder of their own; the first rename wins, the other's is dropped.

    Signature outputs are keyed as Keras 3's `export` keys them: a dict's keys, else `output_0`, `output_1`, ... in
    the model's order (`signature_output_names` maps them back to the model's names)."""
    variant = "" if shapes is None else "-" + _shapes_tag(shapes) + ("-dft" if dft else "")
    target = work_dir.parent / f"traced-{upstream.key[:16]}{variant}"
    if not (target / "saved_model.pb").exists():
        temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=work_dir.parent))
        with captured_native_output(), fft_as_matmul() if dft else contextlib.nullcontext():
            _save_serving(upstream, temporary / "saved_model", shapes)
        with contextlib.suppress(OSError):  # another lane's export is in place: it is the same model
            os.rename(temporary / "saved_model", target)
        shutil.rmtree(temporary, ignore_errors=True)
    return target


def _shapes_tag(shapes: dict[str, list[int]]) -> str:
    return "_".join("x".join(map(str, shape)) for _, shape in sorted(shapes.items()))


def _save_serving(upstream: Artifact, path: Path, shapes: dict[str, list[int]] | None) -> None:
    """Keras 3 through its own `export`; tf_keras (whose `from_keras` routes lose Sequential models' tensor names)
    through `tf.saved_model.save` of a function that calls the model in inference mode, keyed the same way."""
    model = upstream.handle
    tf = import_tensorflow()
    dtypes = {tensor_name(tensor): tensor.dtype for tensor in model.inputs}
    free = {tensor_name(tensor): [None, *tensor.shape[1:]] for tensor in model.inputs}
    specs = {name: tf.TensorSpec((shapes or free)[name], dtypes[name], name=name) for name in dtypes}
    if upstream.flavour != "tf_keras":
        signature = None if shapes is None else [keras_call_inputs(model, specs)]
        with inference_rnn_cells(model):  # no dropout-mask draws in the trace: they leave variable writes
            model.export(str(path), format="tf_saved_model", input_signature=signature, verbose=False)
        return
    names = list(specs)

    def serve(*tensors: Any) -> Any:
        outputs = model(keras_call_inputs(model, dict(zip(names, tensors, strict=True))), training=False)
        if isinstance(outputs, dict):
            return outputs
        flat = outputs if isinstance(outputs, list | tuple) else [outputs]
        return {f"output_{index}": tensor for index, tensor in enumerate(flat)}

    function = tf.function(serve, input_signature=[specs[name] for name in names])
    tf.saved_model.save(model, str(path), signatures={"serving_default": function.get_concrete_function()})


def signature_output_names(keys: list[str], model: Any) -> dict[str, str]:
    """A traced export's signature output keys → the model's own output names (pipeline.sources.model's, which the
    reference records under): `output_N` is the model's N-th output; a dict's keys are its names already."""
    _, specs = keras_tensor_specs(model, Path(getattr(model, "name", "model")))
    numbered = {f"output_{index}": spec.name for index, spec in enumerate(specs)}
    if set(keys) <= set(numbered):
        return {key: numbered[key] for key in keys}
    return {key: key for key in keys}


def fixed_shapes(model: Any, batch: int, sample_shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    """Each Keras input's shape with the batch at `batch` and other free dimensions at the evaluation data's
    sizes, for a trace at fixed shapes (the tflite and onnx rescues); a free dimension the data does not size is a
    StageError naming it."""
    shapes = {}
    for tensor in model.inputs:
        name = tensor_name(tensor)
        data = sample_shapes.get(name)
        shape = [batch]
        for axis, size in enumerate(tensor.shape[1:], start=1):
            if size is None and (data is None or len(data) < axis):
                raise StageError(f"fixed-shape rescue: input {name!r} leaves dimension {axis} free; no data sizes it")
            shape.append(int(size) if size is not None else int(data[axis - 1]))  # type: ignore[index]
        shapes[name] = shape
    return shapes
