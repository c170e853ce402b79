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
    """Named inputs and outputs of a Keras 3 or tf_keras model, in the model's order."""
    try:
        symbolic_inputs, symbolic_outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError):
        raise ModelError(
            f"{path}: the model has no defined inputs (a subclassed model never built?); "
            "save a functional or built model"
        ) from None
    output_names = list(getattr(model, "output_names", None) or [])
    if len(output_names) != len(symbolic_outputs):
        output_names = [f"output_{i}" for i in range(len(symbolic_outputs))]
    inputs = [_symbolic_spec(tensor, tensor.name) for tensor in symbolic_inputs]
    outputs = [_symbolic_spec(tensor, name) for tensor, name in zip(symbolic_outputs, output_names, strict=True)]
    return inputs, outputs


def _symbolic_spec(tensor: Any, name: str) -> TensorSpec:
    dtype = getattr(tensor.dtype, "name", tensor.dtype)
    shape = tuple(None if d is None else int(d) for d in tensor.shape)
    return TensorSpec(name=str(name).split(":")[0], shape=shape, dtype=str(dtype))


def signature_tensor_specs(function: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Named inputs and outputs of a SavedModel signature (outputs in sorted key order, as TFLite has them)."""
    input_specs = function.structured_input_signature[1]
    inputs = [TensorSpec(name, tuple(spec.shape.as_list()), spec.dtype.name) for name, spec in input_specs.items()]
    outputs = [
        TensorSpec(name, tuple(spec.shape.as_list()), spec.dtype.name)
        for name, spec in sorted(function.structured_outputs.items())
    ]
    return inputs, outputs
