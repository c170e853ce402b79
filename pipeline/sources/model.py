"""A loaded source model (`Source`) and the tensor specs of Keras models and SavedModel signatures.

A leaf: reads loaded models through their attributes, imports no framework, and of the pipeline only the
core types (Artifact, TensorSpec) and errors. Knows nothing of files, recipes, builders or stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.artifact import Artifact
from pipeline.core.tensors import TensorSpec
from pipeline.errors import ModelError


@dataclass
class Source:
    """A loaded source model, as the first artifact of every chain."""

    path: Path
    format: str  # keras | h5 | savedmodel | builder+h5 | builder+checkpoint
    sha256: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    artifact: Artifact
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. a builder source's builder and weight files

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "sha256": self.sha256,
            "flavour": self.artifact.flavour,
            "signature": self.artifact.signature,
            "inputs": [spec.describe() for spec in self.inputs],
            "outputs": [spec.describe() for spec in self.outputs],
            **self.extra,
        }


def keras_tensor_specs(model: Any, path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Named inputs and outputs of a Keras 3 or tf_keras model, in the model's (flattened) order.

    Outputs are named by the keys of a dict-structured output (what the model returns), else by output_names.
    """
    try:
        symbolic_inputs, symbolic_outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError):
        raise ModelError(
            f"{path}: the model has no defined inputs (a subclassed model never built?); "
            "save a functional or built model"
        ) from None
    output_names = _dict_output_names(model, symbolic_outputs) or list(getattr(model, "output_names", None) or [])
    if len(output_names) != len(symbolic_outputs):
        output_names = [f"output_{i}" for i in range(len(symbolic_outputs))]
    output_names = unique_names(output_names)
    inputs = [_symbolic_spec(tensor, tensor.name) for tensor in symbolic_inputs]
    outputs = [_symbolic_spec(tensor, name) for tensor, name in zip(symbolic_outputs, output_names, strict=True)]
    return inputs, outputs


def unique_names(names: list[str]) -> list[str]:
    """Names made unique in order: a nested model called twice gives two outputs named after it (`inner`,
    `inner`); the second becomes `inner_1` (the first suffix no other name takes), in the reference and every file."""
    taken, unique = set(names), []
    for name in names:
        if name in unique:
            suffix = 1
            while f"{name}_{suffix}" in taken:
                suffix += 1
            name = f"{name}_{suffix}"
            taken.add(name)
        unique.append(name)
    return unique


def _dict_output_names(model: Any, symbolic_outputs: list[Any]) -> list[str] | None:
    """A model that returns a dict (keras-hub backbones) is read by those keys; matched by identity, since the
    flattened order is the framework's."""
    structure = getattr(model, "output", None)
    if not isinstance(structure, dict):
        return None
    by_tensor = {id(tensor): str(key) for key, tensor in structure.items()}
    names = [by_tensor.get(id(tensor)) for tensor in symbolic_outputs]
    return None if None in names else names  # type: ignore[return-value]


def keras_call_inputs(model: Any, feed: dict[str, Any]) -> Any:
    """`feed` (input name → array) in the structure the model was built with: a dict keyed as its author keyed it
    (keras-hub's `token_ids`, `padding_mask`), a list in its order, one array, or nested as Keras allows. The one
    place that shapes a model call: the Keras runtime, training stages and the tf2onnx signature read it."""

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: fill(value) for key, value in node.items()}
        if isinstance(node, list | tuple):
            return [fill(value) for value in node]
        return feed[tensor_name(node)]

    structure = getattr(model, "input", None)
    if structure is None or (isinstance(structure, list | tuple) and len(structure) == 1):
        structure = list(model.inputs)
        return feed[tensor_name(structure[0])] if len(structure) == 1 else fill(structure)
    return fill(structure)


def tensor_name(tensor: Any) -> str:
    """A Keras tensor's name as signatures and feeds use it (tf_keras adds `:0`)."""
    return _tensor_name_of(tensor.name)


def _tensor_name_of(name: Any) -> str:
    return str(name).split(":")[0]


def _symbolic_spec(tensor: Any, name: str) -> TensorSpec:
    dtype = getattr(tensor.dtype, "name", tensor.dtype)
    shape = tuple(None if d is None else int(d) for d in tensor.shape)
    return TensorSpec(name=_tensor_name_of(name), shape=shape, dtype=str(dtype))


def signature_tensor_specs(function: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Named inputs and outputs of a SavedModel signature (outputs in sorted key order, as TFLite has them)."""
    input_specs = function.structured_input_signature[1]
    inputs = [TensorSpec(name, _dims(spec.shape), spec.dtype.name) for name, spec in input_specs.items()]
    outputs = [
        TensorSpec(name, _dims(spec.shape), spec.dtype.name)
        for name, spec in sorted(function.structured_outputs.items())
    ]
    return inputs, outputs


def _dims(shape: Any) -> tuple[int | None, ...]:
    """A signature tensor's dimensions; one of unknown rank (`tf.squeeze` with no axis over a free batch) as a batch
    of free samples, `[?]`: its real shape is what the model gives on the data."""
    return (None,) if shape.rank is None else tuple(shape.as_list())
