"""`edgeport inspect`: what a model file is, and the tensors of each of its entry points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.artifacts import sha256_of, size_of
from pipeline.errors import ModelError
from pipeline.specs import Artifact


def describe_model(path: Path, trusted: bool = False) -> dict[str, Any]:
    if not path.exists():
        raise ModelError(f"{path}: model not found")
    suffix = path.suffix.lower()
    description: dict[str, Any] = {"path": str(path), "size_bytes": size_of(path), "sha256": sha256_of(path)}
    if suffix in {".tflite", ".onnx"}:
        description.update(_describe_runtime_artifact(path, "tflite" if suffix == ".tflite" else "onnx"))
    else:
        description.update(_describe_source(path, trusted))
    return description


def _describe_source(path: Path, trusted: bool) -> dict[str, Any]:
    from pipeline.sources import load_source, signature_tensor_specs

    source = load_source(path, trusted=trusted) if not path.is_dir() else None
    if source is not None:
        return {
            "format": source.format,
            "flavour": source.artifact.flavour,
            "signatures": {"(keras call)": _tensors(source.inputs, source.outputs)},
        }
    from pipeline.frameworks import captured_native_output, import_tensorflow

    tf = import_tensorflow()
    load_source(path)  # validates the directory and reports a readable error
    with captured_native_output():
        loaded = tf.saved_model.load(str(path))
    signatures = {
        name: _tensors(*signature_tensor_specs(function)) for name, function in sorted(loaded.signatures.items())
    }
    return {"format": "savedmodel", "signatures": signatures}


def _describe_runtime_artifact(path: Path, kind: str) -> dict[str, Any]:
    from pipeline.runtimes import runtime_for

    try:
        runtime = runtime_for(Artifact(kind=kind, path=path, key=""))  # type: ignore[arg-type]
    except Exception as error:  # the runtimes raise their own types for corrupt files
        raise ModelError(f"{path}: cannot open as {kind}: {str(error).strip().splitlines()[0][:300]}") from None
    return {
        "format": kind,
        "runtime": runtime.name,
        "signatures": {"default": _tensors(runtime.inputs, runtime.outputs)},
    }


def _tensors(inputs: list, outputs: list) -> dict[str, list[dict[str, Any]]]:
    def one(spec: Any) -> dict[str, Any]:
        return {"name": spec.name, "shape": ["?" if d is None else d for d in spec.shape], "dtype": spec.dtype}

    return {"inputs": [one(spec) for spec in inputs], "outputs": [one(spec) for spec in outputs]}


def format_description(description: dict[str, Any]) -> str:
    lines = [
        f"{description['path']}",
        f"  format   {description['format']}" + (f" ({description['flavour']})" if description.get("flavour") else ""),
        f"  size     {description['size_bytes']:,} bytes",
        f"  sha256   {description['sha256']}",
    ]
    for signature, tensors in description["signatures"].items():
        lines.append(f"  signature {signature}")
        for role in ("inputs", "outputs"):
            for tensor in tensors[role]:
                shape = "[" + ", ".join(str(d) for d in tensor["shape"]) + "]"
                lines.append(f"    {role[:-1]:<7}{tensor['name']:<32}{shape:<20}{tensor['dtype']}")
    return "\n".join(lines)
