"""`edgeport inspect`: what a model or weights file is, its entry points' tensors, or its stored variables.

Describes files only; knows nothing of recipes, stages or reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.artifacts import sha256_of, size_of
from pipeline.core.artifact import Artifact
from pipeline.core.text import one_line
from pipeline.errors import ModelError, first_line
from pipeline.frameworks import captured_native_output, import_tensorflow
from pipeline.provenance import ProvenanceError, field_text, read_provenance
from pipeline.runtimes import runtime_for
from pipeline.sources import check_model_path, load_source, signature_tensor_specs
from pipeline.sources.files import is_savedmodel
from pipeline.sources.tf1 import describe_tf1_graph
from pipeline.sources.weights import (
    H5_SUFFIXES,
    checkpoint_variables,
    checkpoints_in,
    h5_arrays,
    h5_layout,
    is_checkpoint_prefix,
    locate_weights,
)


def describe_model(path: Path, trusted: bool = False) -> dict[str, Any]:
    if is_checkpoint_prefix(path):
        return _describe_checkpoint(path, trusted)
    check_model_path(path)
    if path.is_file() and path.suffix.lower() in {".pb", ".meta"}:
        return _describe_tf1(path, trusted)
    if path.is_dir() and not is_savedmodel(path):
        return _describe_checkpoint_directory(path)
    description: dict[str, Any] = {"path": str(path), "size_bytes": size_of(path), "sha256": sha256_of(path)}
    suffix = path.suffix.lower()
    if suffix in {".tflite", ".onnx"}:
        description.update(_describe_runtime_artifact(path, "tflite" if suffix == ".tflite" else "onnx"))
    elif suffix in H5_SUFFIXES and h5_layout(path) != "model":
        description.update(_describe_weights_h5(path))
    elif path.is_dir():
        description.update(_describe_savedmodel(path, trusted))
    else:
        description.update(_describe_keras(path, trusted))
    return description


def _describe_keras(path: Path, trusted: bool) -> dict[str, Any]:
    source = load_source(path, trusted=trusted)
    return {
        "format": source.format,
        "flavour": source.artifact.flavour,
        "signatures": {"(keras call)": _tensors(source.inputs, source.outputs)},
    }


def _describe_savedmodel(path: Path, trusted: bool) -> dict[str, Any]:
    tf = import_tensorflow()
    load_source(path, trusted=trusted)  # validates the directory (untrusted: its graphs) with a readable error
    with captured_native_output():
        loaded = tf.saved_model.load(str(path))
    signatures = {
        name: _tensors(*signature_tensor_specs(function)) for name, function in sorted(loaded.signatures.items())
    }
    return {"format": "savedmodel", "tags": _savedmodel_tags(path), "signatures": signatures}


def _savedmodel_tags(path: Path) -> list[list[str]]:
    """The tag sets of each MetaGraph in saved_model.pb (what `saved_model_cli show` lists)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto_file = path / "saved_model.pb"
    if not proto_file.is_file():
        return []
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(proto_file.read_bytes())
    except Exception:  # protobuf's DecodeError; the model loaded, so tags are a nicety
        return []
    return [list(meta.meta_info_def.tags) for meta in proto.meta_graphs]


def _describe_checkpoint(prefix: Path, trusted: bool = False) -> dict[str, Any]:
    weights = locate_weights(prefix)
    description = {
        "path": str(prefix),
        "format": "checkpoint",
        "size_bytes": sum(size_of(file) for file in weights.files),
        "files": weights.hashes(),
        "variables": checkpoint_variables(prefix),
    }
    meta = prefix.with_name(prefix.name + ".meta")
    if meta.is_file():  # a TF1 Saver checkpoint: its graph tells what to feed and fetch
        graph = describe_tf1_graph(meta, trusted)
        description.update({**graph, "format": "tf1 checkpoint", "meta_graph": str(meta)})
    return description


def _describe_tf1(path: Path, trusted: bool) -> dict[str, Any]:
    description = {"path": str(path), "size_bytes": size_of(path), "sha256": sha256_of(path)}
    description.update(describe_tf1_graph(path, trusted))
    prefix = path.with_suffix("") if path.suffix.lower() == ".meta" else None
    if prefix is not None and is_checkpoint_prefix(prefix):
        description["checkpoint"] = str(prefix)
        description["variables"] = checkpoint_variables(prefix)
    return description


def _describe_checkpoint_directory(directory: Path) -> dict[str, Any]:
    weights = locate_weights(directory)
    latest = describe_model(weights.path)
    return {
        **latest,
        "path": str(directory),
        "format": "checkpoint directory",
        "latest": str(weights.path),
        "checkpoints": [candidate.name for candidate in checkpoints_in(directory)],
    }


def _describe_weights_h5(path: Path) -> dict[str, Any]:
    layout = h5_layout(path)
    return {"format": f"{layout} weights", "variables": h5_arrays(path)}


def _describe_runtime_artifact(path: Path, kind: str) -> dict[str, Any]:
    try:
        runtime = runtime_for(Artifact(kind=kind, path=path, key=""))  # type: ignore[arg-type]
    except Exception as error:  # the runtimes raise their own types for corrupt files
        raise ModelError(f"{path}: cannot open as {kind}: {first_line(error, 300)}") from None
    description = {
        "format": kind,
        "runtime": runtime.name,
        "signatures": {"default": _tensors(runtime.inputs, runtime.outputs)},
    }
    try:
        provenance = read_provenance(path, kind)  # type: ignore[arg-type]
    except ProvenanceError as error:  # damaged metadata: the rest of the file is still worth showing
        description["provenance"], description["provenance_error"] = None, str(error)
    else:
        description["provenance"] = provenance.to_json() if provenance is not None else None
    return description


def _tensors(inputs: list, outputs: list) -> dict[str, list[dict[str, Any]]]:
    def one(spec: Any) -> dict[str, Any]:
        return {"name": spec.name, "shape": ["?" if d is None else d for d in spec.shape], "dtype": spec.dtype}

    return {"inputs": [one(spec) for spec in inputs], "outputs": [one(spec) for spec in outputs]}


# --- text ------------------------------------------------------------------------------------------


def format_description(description: dict[str, Any]) -> str:
    description = _one_line_strings(description)
    flavour = f" ({description['flavour']})" if description.get("flavour") else ""
    lines = [f"{description['path']}", f"  format   {description['format']}{flavour}"]
    if "latest" in description:
        lines.append(f"  latest   {description['latest']}  (of {', '.join(description['checkpoints'])})")
    lines.append(f"  size     {description['size_bytes']:,} bytes")
    if "sha256" in description:
        lines.append(f"  sha256   {description['sha256']}")
    for name, digest in description.get("files", {}).items():
        lines.append(f"  file     {name}  sha256 {digest}")
    lines += _tf1_lines(description)
    if "provenance" in description:
        lines += _provenance_lines(description["provenance"], description.get("provenance_error"))
    for tags in description.get("tags", []):
        lines.append(f"  tags     {', '.join(tags)}")
    for signature, tensors in description.get("signatures", {}).items():
        lines.append(f"  signature {signature}")
        rows = [
            [role[:-1], t["name"], _shape(t["shape"]), t["dtype"]]
            for role in ("inputs", "outputs")
            for t in tensors[role]
        ]
        lines += _table(["", "name", "shape", "dtype"], rows, indent=4)
    if "variables" in description:
        rows = [_variable_row(variable) for variable in description["variables"]]
        lines.append(f"  variables ({len(rows)})")
        lines += _table(["name", "shape", "dtype", "stored as"], rows, indent=4)
    return "\n".join(lines)


def _one_line_strings(value: Any) -> Any:
    """Every name and path of the description escaped to one line (core.text): they come from the model, and a
    newline in a tensor name would print a line of its own in the listing."""
    if isinstance(value, str):
        return one_line(value)
    if isinstance(value, dict):
        return {_one_line_strings(key): _one_line_strings(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_one_line_strings(item) for item in value]
    return value


def _tf1_lines(description: dict[str, Any]) -> list[str]:
    if "placeholders" not in description:
        return []
    version = description.get("tensorflow_version")
    lines = [f"  written  TensorFlow {version}"] if version else []
    rows = [
        [p["name"], "?" if p["shape"] is None else _shape(p["shape"]), p["dtype"], "default" if p["default"] else ""]
        for p in description["placeholders"]
    ]
    lines.append(f"  placeholders ({len(rows)})")
    lines += _table(["name", "shape", "dtype", ""], rows, indent=4)
    signature = description.get("serving_signature")
    if signature:
        lines.append("  serving signature")
        for role in ("inputs", "outputs"):
            lines += [f"    {role[:-1]:<6} {key} = {name}" for key, name in signature[role].items()]
    lines.append(f"  likely outputs  {', '.join(description['likely_outputs']) or '(none found)'}")
    return lines


def _provenance_lines(provenance: dict[str, Any] | None, problem: str | None) -> list[str]:
    if provenance is None:
        return [f"  provenance  {f'unreadable: {problem}' if problem else 'none (not stamped by edgeport)'}"]
    rows = [[name, field_text(value)] for name, value in provenance.items()]
    return ["  provenance", *_table(["", ""], rows, indent=4)[1:]]  # no header: each row names its key


def _variable_row(variable: dict[str, Any]) -> list[str]:
    """Checkpoints: the variable's name and its checkpoint key; h5 weights: the owning layer and the array path."""
    key = str(variable["key"]).removesuffix("/.ATTRIBUTES/VARIABLE_VALUE")
    name = variable.get("name") or variable.get("layer") or key
    return [name, _shape(variable["shape"]), variable["dtype"], key]


def _shape(shape: list[Any]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _table(header: list[str], rows: list[list[str]], indent: int) -> list[str]:
    if not rows:
        return [" " * indent + "(none)"]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return (" " * indent + "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))).rstrip()

    return [line(header), *(line(row) for row in rows)]
