"""Load a source model (Keras 3 `.keras`, legacy `.h5`, SavedModel directory, or a builder plus weights,
through pipeline.builders) and describe its tensors.

Knows of recipes only their `source` section, nothing of stages; every failure is a ModelError naming the file.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.artifacts import key_of, sha256_of
from pipeline.core.artifact import Artifact
from pipeline.core.tensors import TensorSpec
from pipeline.errors import ModelError, first_line
from pipeline.frameworks import captured_native_output, import_tensorflow

if TYPE_CHECKING:
    from pipeline.recipe import SourceSpec

_TRUST_HINT = "set `source.trusted: true` in the recipe or pass --trust-model if you trust this file"


@dataclass
class Source:
    """A loaded source model, as the first artifact of every chain."""

    path: Path
    format: str  # keras | h5 | savedmodel
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


def load_source_spec(spec: SourceSpec, base_dir: Path, trusted: bool) -> Source:
    """A recipe's source: a model file or directory, or a builder plus weights (paths relative to `base_dir`)."""
    if spec.builder is None:
        assert spec.path is not None, "validated specs give path or builder"
        return load_source((base_dir / spec.path).resolve(), spec.signature, trusted)
    from pipeline.builders import load_builder_source

    assert spec.weights is not None, "validated specs give weights with builder"
    weights = (base_dir / spec.weights).resolve()
    return load_builder_source(spec.builder, spec.builder_args, weights, base_dir, spec.allow_partial, trusted)


def source_key(spec: SourceSpec, base_dir: Path, trusted: bool) -> str:
    """A content key of what `load_source_spec` would load, computed without TensorFlow or the builder."""
    if spec.builder is None:
        assert spec.path is not None, "validated specs give path or builder"
        return key_of("source", sha256_of((base_dir / spec.path).resolve()), spec.signature, trusted)
    from pipeline.builders import builder_key

    assert spec.weights is not None, "validated specs give weights with builder"
    weights = (base_dir / spec.weights).resolve()
    built = builder_key(spec.builder, spec.builder_args, weights, base_dir)
    return key_of("source", built, spec.allow_partial, trusted)


def load_source(path: Path, signature: str = "serving_default", trusted: bool = False) -> Source:
    if not path.exists():
        raise ModelError(f"{path}: model not found")
    if path.is_dir():
        return _load_savedmodel(path, signature)
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: the file is empty; expected a .keras or .h5 model")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return _load_keras3(path, trusted)
    if suffix in {".h5", ".hdf5"}:
        return _load_h5(path, trusted)
    raise ModelError(f"{path}: unknown model format; expected a .keras or .h5 file or a SavedModel directory")


def _load_keras3(path: Path, trusted: bool) -> Source:
    import_tensorflow()
    import keras

    try:
        with captured_native_output(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keras.saving.load_model(path, compile=False, safe_mode=not trusted)
    except Exception as error:  # Keras raises ValueError, TypeError, OSError, zip errors...
        raise _keras_load_error(path, error) from None
    return _keras_source(path, "keras", model, "keras3")


def _load_h5(path: Path, trusted: bool) -> Source:
    import_tensorflow()
    import keras

    if not trusted:
        code_layers = _h5_code_layers(path)
        if code_layers:
            raise ModelError(
                f"{path}: refused: the model runs arbitrary Python code when loaded "
                f"({', '.join(code_layers)}); {_TRUST_HINT}"
            )
    try:
        with captured_native_output(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keras.saving.load_model(path, compile=False, safe_mode=not trusted)
        return _keras_source(path, "h5", model, "keras3")
    except Exception as keras3_error:  # fall back to tf_keras for legacy files Keras 3 cannot read
        first = keras3_error
    import tf_keras

    try:
        with captured_native_output(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = tf_keras.models.load_model(path, compile=False)
    except Exception:  # report the Keras 3 reason: it is the primary loader
        raise _keras_load_error(path, first) from None
    return _keras_source(path, "h5", model, "tf_keras")


def _h5_code_layers(path: Path) -> list[str]:
    """Names of layers whose config carries Python code (Lambda), read without building the model."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            config = handle.attrs.get("model_config")
    except OSError as error:
        raise ModelError(f"{path}: not a readable HDF5 model ({error})") from None
    if config is None:
        raise ModelError(f"{path}: HDF5 file without a model config (weights only?); expected a full model")
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("class_name") == "Lambda":
                found.append(f"Lambda layer {node.get('config', {}).get('name', '?')!r}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(config if isinstance(config, str) else config.decode()))
    return found


def _keras_load_error(path: Path, error: BaseException) -> ModelError:
    text = str(error)
    if "safe_mode" in text or "arbitrary code" in text:
        return ModelError(
            f"{path}: refused: the model runs arbitrary Python code when loaded "
            f"(Lambda layer or pickled function); {_TRUST_HINT}"
        )
    if "Could not locate" in text or "Unknown layer" in text or "custom_objects" in text:
        return ModelError(f"{path}: the model needs custom classes edgeport cannot import: {first_line(error, 300)}")
    first = first_line(error, 300)
    return ModelError(f"{path}: cannot load the model (corrupt or not a Keras model?): {first}")


def _keras_source(path: Path, fmt: str, model: Any, flavour: str) -> Source:
    inputs, outputs = keras_tensor_specs(model, path)
    digest = sha256_of(path)
    artifact = Artifact(kind="keras", path=path, key=digest, flavour=flavour, handle=model)
    return Source(path=path, format=fmt, sha256=digest, inputs=inputs, outputs=outputs, artifact=artifact)


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
    inputs = [_spec(tensor, tensor.name) for tensor in symbolic_inputs]
    outputs = [_spec(tensor, name) for tensor, name in zip(symbolic_outputs, output_names, strict=True)]
    return inputs, outputs


def _spec(tensor: Any, name: str) -> TensorSpec:
    dtype = getattr(tensor.dtype, "name", tensor.dtype)
    shape = tuple(None if d is None else int(d) for d in tensor.shape)
    return TensorSpec(name=str(name).split(":")[0], shape=shape, dtype=str(dtype))


def _load_savedmodel(path: Path, signature: str) -> Source:
    if not any((path / name).is_file() for name in ("saved_model.pb", "saved_model.pbtxt")):
        raise ModelError(
            f"{path}: directory is not a SavedModel (no saved_model.pb); "
            "expected a SavedModel directory or a .keras/.h5 file"
        )
    tf = import_tensorflow()
    try:
        with captured_native_output():
            loaded = tf.saved_model.load(str(path))
    except Exception as error:  # TF raises many kinds for a corrupt SavedModel
        first = first_line(error, 300)
        raise ModelError(f"{path}: cannot load the SavedModel: {first}") from None
    signatures = dict(loaded.signatures)
    if signature not in signatures:
        raise ModelError(
            f"{path}: no signature {signature!r} (it has {', '.join(sorted(signatures)) or 'none'}); "
            "set source.signature"
        )
    inputs, outputs = signature_tensor_specs(signatures[signature])
    digest = sha256_of(path)
    artifact = Artifact(kind="savedmodel", path=path, key=digest, signature=signature, handle=loaded)
    return Source(path=path, format="savedmodel", sha256=digest, inputs=inputs, outputs=outputs, artifact=artifact)


def signature_tensor_specs(function: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Named inputs and outputs of a SavedModel signature (outputs in sorted key order, as TFLite has them)."""
    input_specs = function.structured_input_signature[1]
    inputs = [TensorSpec(name, tuple(spec.shape.as_list()), spec.dtype.name) for name, spec in input_specs.items()]
    outputs = [
        TensorSpec(name, tuple(spec.shape.as_list()), spec.dtype.name)
        for name, spec in sorted(function.structured_outputs.items())
    ]
    return inputs, outputs
