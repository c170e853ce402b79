"""Recurrent models traced so that TFLite's builtins take them: no variables left, no tensor lists at a free batch.

Two causes, each measured on a two-layer LSTM (units 8, 6 steps, 4 features):
- Keras 3's RNN layers draw their dropout masks on every call, inference included (`RNN._maybe_config_dropout_masks`
  prepopulates them for JAX's sake and the mask goes unused): a trace then advances each layer's SeedGenerator, an
  assignment no freezing removes ("still reads variables (ASSIGN_VARIABLE, READ_VARIABLE, VAR_HANDLE)").
- A SavedModel's signature was traced at a free batch, and its tensor lists keep that batch free ("Lowering tensor
  list ops is failed"); retracing the restored function at fixed shapes does not refine the lists' element shapes,
  but TFLite's `_experimental_default_to_single_batch_in_tensor_list_ops` does, for batch 1 only (at batch 2 the
  file converts and fails in LiteRT: "WHILE failed to invoke"). A TF1 graph's control flow v1 TensorArrays become
  tensor lists on the way (no builtin runs TensorArrayV3).
Knows Keras's RNN cells and TensorFlow's freezing; nothing of recipes or reports.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import StageError
from pipeline.stages.tensor_arrays import function_tensor_arrays_as_lists, tensor_arrays_as_lists

# Ops that write a variable: at inference only RNG seeds advance (and a stateful RNN's state, which no file keeps).
_ASSIGNMENTS = {"AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp"}
_DROPOUT_RATES = ("dropout", "recurrent_dropout")


@contextlib.contextmanager
def inference_rnn_cells(model: Any) -> Iterator[None]:
    """Keras 3's recurrent cells with their dropout rates at 0 while `model` is traced: the trace draws no masks,
    so it advances no seed. Exact at inference, where the masks are drawn but never applied."""
    changed: list[tuple[Any, str, float]] = []
    try:
        for cell in _dropout_cells(model):
            for rate in _DROPOUT_RATES:
                value = getattr(cell, rate, 0.0)
                if isinstance(value, int | float) and value > 0:
                    changed.append((cell, rate, float(value)))
                    setattr(cell, rate, 0.0)
        yield
    finally:
        for cell, rate, value in changed:
            setattr(cell, rate, value)


def _dropout_cells(model: Any) -> list[Any]:
    try:
        from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell
    except ImportError:  # a Keras without it draws no masks at inference
        return []
    flatten = getattr(model, "_flatten_layers", None)
    layers = list(flatten(include_self=False, recursive=True)) if flatten else []
    return [layer for layer in layers if isinstance(layer, DropoutRNNCell)]


def signature_shapes(
    function: Any, batch: int, sample_shapes: dict[str, list[int]], signature: str
) -> dict[str, list[int]]:
    """Each input of a SavedModel signature at a fixed shape: the batch at `batch`, other free dimensions at the
    evaluation data's sizes; a free dimension the data does not size is a StageError naming it."""
    shapes = {}
    for name, spec in function.structured_input_signature[1].items():
        dims = spec.shape.as_list()
        data = sample_shapes.get(name)
        shape = [batch if dims[0] is None else int(dims[0])] if dims else []
        for axis, size in enumerate(dims[1:], start=1):
            if size is None and (data is None or len(data) < axis):
                raise StageError(
                    f"fixed-shape rescue: input {name!r} of signature {signature!r} leaves dimension {axis} free; "
                    "no data sizes it"
                )
            shape.append(int(size) if size is not None else int(data[axis - 1]))  # type: ignore[index]
        shapes[name] = shape
    return shapes


def signature_at_fixed_shapes(
    tf: Any, loaded: Any, signature: str, shapes: dict[str, list[int]], export_dir: Path
) -> Path:
    """The signature traced again at `shapes`, frozen without its variable assignments, and saved as the
    `serving_default` of a SavedModel of its own at `export_dir` (same input and output names); reused when there."""
    if (export_dir / "saved_model.pb").exists():
        return export_dir
    function = loaded.signatures[signature]
    inputs = function.structured_input_signature[1]
    specs = {name: tf.TensorSpec(shapes[name], spec.dtype, name=name) for name, spec in inputs.items()}
    fixed = tf.function(lambda **feeds: function(**feeds)).get_concrete_function(**specs)
    temporary = export_dir.with_name(export_dir.name + ".partial")
    shutil.rmtree(temporary, ignore_errors=True)
    tf.saved_model.save(tf.Module(), str(temporary), signatures={"serving_default": frozen_without_assignments(fixed)})
    temporary.rename(export_dir)
    return export_dir


def frozen_without_assignments(function: Any) -> Any:
    """`function` with its variables as constants and its variable writes dropped (with the control edges that
    ordered them): TensorFlow's own freezing refuses a graph that writes a variable it made a constant. TF1 control
    flow v1's TensorArrays become tensor lists (pipeline.stages.tensor_arrays)."""
    from tensorflow.python.framework import convert_to_constants as freezing

    data = freezing._FunctionConverterDataInEager(func=function, lower_control_flow=False, aggressive_inlining=True)
    graph_def, converted_inputs = freezing._replace_variables_by_constants(converter_data=data)
    _drop_assignments(graph_def.node)
    tensor_arrays_as_lists(graph_def.node)
    for library_function in graph_def.library.function:
        dropped = _drop_assignments(library_function.node_def)
        for key in [key for key, node in library_function.control_ret.items() if node in dropped]:
            del library_function.control_ret[key]
        function_tensor_arrays_as_lists(library_function)
    return freezing._construct_concrete_function(function, graph_def, converted_inputs)


def _drop_assignments(nodes: Any) -> set[str]:
    dropped = {node.name for node in nodes if node.op in _ASSIGNMENTS}
    kept = [node for node in nodes if node.name not in dropped]
    for node in kept:
        inputs = [name for name in node.input if not (name.startswith("^") and name[1:] in dropped)]
        del node.input[:]
        node.input.extend(inputs)
    del nodes[:]
    nodes.extend(kept)
    return dropped
