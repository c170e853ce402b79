"""Weights files as training leaves them: where they are, which files they span, and what they hold.

Finding and hashing needs no TensorFlow (`validate` uses it); listing contents imports TF or h5py lazily.
Knows nothing of recipes, builders or models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.artifacts import sha256_of
from pipeline.errors import ModelError, first_line
from pipeline.frameworks import import_tensorflow

WeightsForm = Literal["h5", "checkpoint"]
H5_SUFFIXES = (".h5", ".hdf5")
CHECKPOINT_RECORD = re.compile(r'^model_checkpoint_path:\s*"(.*)"\s*$', re.MULTILINE)
_NUMBER = re.compile(r"\d+")
_TABLE_ROW_LIMIT = 10_000


@dataclass(frozen=True)
class WeightsFile:
    """One set of saved weights: an HDF5 file or a TF checkpoint prefix (its `.index` and `.data-*` files)."""

    form: WeightsForm
    path: Path  # the .h5 file, or the checkpoint prefix (which is no file itself)
    picked_from: Path | None = None  # the directory it was chosen from, as the latest

    @property
    def files(self) -> list[Path]:
        if self.form == "h5":
            return [self.path]
        shards = sorted(self.path.parent.glob(f"{glob_escape(self.path.name)}.data-*"))
        return [self.path.with_name(self.path.name + ".index"), *shards]

    def hashes(self) -> dict[str, str]:
        return {file.name: sha256_of(file) for file in self.files}


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def is_checkpoint_prefix(path: Path) -> bool:
    return path.with_name(path.name + ".index").is_file()


def has_index(folder: Path, stem: str) -> bool:
    """A checkpoint `folder/stem` exists; `stem` may be empty (saved to `folder/`: files `.index`, `.data-*`)."""
    return (folder / f"{stem}.index").is_file()


def record_prefix(directory: Path) -> str | None:
    """The prefix the directory's `checkpoint` record names, as written: a trailing `/` is an empty stem, which a
    Path would drop."""
    record = directory / "checkpoint"
    if not record.is_file():
        return None
    match = CHECKPOINT_RECORD.search(record.read_text(encoding="utf-8", errors="replace"))
    return match.group(1) if match else None


def split_prefix(prefix: str, directory: Path) -> tuple[Path, str]:
    """`/a/model.ckpt` → (/a, `model.ckpt`); `/a/` → (/a, ``); a relative prefix starts at `directory`."""
    stem = prefix.rpartition("/")[2]
    head = prefix.removesuffix(stem)  # `/a/`, `sub/` or nothing; an absolute one replaces `directory`
    return (directory / head if head else directory), stem


def locate_weights(path: Path) -> WeightsFile:
    """The weights at `path`: an .h5 file, a checkpoint prefix, or the latest of a directory of either."""
    if is_checkpoint_prefix(path):
        return _checkpoint(path, None)
    if path.is_file():
        if path.name.endswith(".index"):  # the user named the index file instead of the prefix
            return _checkpoint(path.with_name(path.name.removesuffix(".index")), None)
        if path.suffix.lower() in H5_SUFFIXES:
            return WeightsFile(form="h5", path=path)
        raise ModelError(f"{path}: not a weights file; expected .weights.h5, .h5, a checkpoint prefix or a directory")
    if path.is_dir():
        return _latest_in(path)
    raise ModelError(f"{path}: no weights there (no such file, no {path.name}.index checkpoint, no directory)")


def _checkpoint(prefix: Path, directory: Path | None) -> WeightsFile:
    weights = WeightsFile(form="checkpoint", path=prefix, picked_from=directory)
    if len(weights.files) < 2:
        raise ModelError(f"{prefix}: checkpoint has an .index but no .data-* shard")
    odd = [file.name for file in weights.files if not file.is_file()]  # a FIFO shard would block its hashing
    if odd:
        raise ModelError(f"{prefix}: checkpoint files that are not regular files: {', '.join(odd)}")
    return weights


def _latest_in(directory: Path) -> WeightsFile:
    """As `tf.train.latest_checkpoint`: the `checkpoint` file's record, else the highest-numbered candidate."""
    record = directory / "checkpoint"
    if record.is_file():
        match = CHECKPOINT_RECORD.search(record.read_text(encoding="utf-8", errors="replace"))
        if match:
            named = Path(match.group(1))
            prefix = named if named.is_absolute() else directory / named
            if is_checkpoint_prefix(prefix):
                return _checkpoint(prefix, directory)
    candidates = [index.with_suffix("") for index in directory.glob("*.index")]
    candidates += [file for file in directory.iterdir() if file.is_file() and file.suffix.lower() in H5_SUFFIXES]
    if not candidates:
        raise ModelError(f"{directory}: no checkpoint (*.index) and no .weights.h5/.h5 file in this directory")
    latest = max(candidates, key=epoch_order)
    if latest.suffix.lower() in H5_SUFFIXES and latest.is_file():
        return WeightsFile(form="h5", path=latest, picked_from=directory)
    return _checkpoint(latest, directory)


def epoch_order(path: Path) -> tuple[int, float, str]:
    """ModelCheckpoint names files `cp-{epoch:04d}...`: the last number in the name, then the newest file."""
    numbers = _NUMBER.findall(path.name.split(".")[0]) or _NUMBER.findall(path.name)
    newest = max((file.stat().st_mtime for file in path.parent.glob(f"{glob_escape(path.name)}*")), default=0.0)
    return (int(numbers[-1]) if numbers else -1, newest, path.name)


def checkpoints_in(directory: Path) -> list[Path]:
    """Every checkpoint prefix and weights file in a directory, oldest epoch first."""
    candidates = [index.with_suffix("") for index in directory.glob("*.index")]
    candidates += [file for file in directory.iterdir() if file.is_file() and file.suffix.lower() in H5_SUFFIXES]
    return sorted(candidates, key=epoch_order)


# --- contents --------------------------------------------------------------------------------------


def checkpoint_variables(prefix: Path) -> list[dict[str, Any]]:
    """The checkpoint's values: key, shape, dtype and the variable's own name (from the object graph)."""
    tf = import_tensorflow()
    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except Exception as error:  # TF raises DataLossError, NotFoundError... for a broken checkpoint
        raise ModelError(f"{prefix}: cannot read the checkpoint: {first_line(error, 300)}") from None
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    names = checkpoint_full_names(reader)
    return [
        {"key": key, "name": names.get(key, ""), "shape": list(shapes[key]), "dtype": dtypes[key].name}
        for key in sorted(shapes)
        if key != "_CHECKPOINTABLE_OBJECT_GRAPH"
    ]


def checkpoint_full_names(reader: Any) -> dict[str, str]:
    """checkpoint key → the variable's name when it was saved (`conv/kernel`), read from the object graph."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    if not reader.has_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"):
        return {}
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    return {a.checkpoint_key: a.full_name for node in graph.nodes for a in node.attributes if a.full_name}


def checkpoint_root_children(reader: Any) -> list[str]:
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    if not reader.has_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"):
        return []
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    return [child.local_name for child in graph.nodes[0].children]


def h5_arrays(path: Path) -> list[dict[str, Any]]:
    """Every array in an HDF5 weights file: its path, shape, dtype and the layer that owns it."""
    import h5py

    arrays: list[dict[str, Any]] = []

    def visit(name: str, node: Any) -> None:
        if isinstance(node, h5py.Dataset) and len(arrays) < _TABLE_ROW_LIMIT:
            arrays.append({"key": name, "layer": _owner(node), "shape": list(node.shape), "dtype": str(node.dtype)})

    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(visit)
    except OSError as error:
        raise ModelError(f"{path}: not a readable HDF5 file ({error})") from None
    return arrays


def h5_layout(path: Path) -> str:
    """`keras3` (layers/<name>/vars/<i>, what Keras 3 `.weights.h5` is), `legacy` (layer_names) or `model`."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            if "model_config" in handle.attrs:
                return "model"
            if "layer_names" in handle.attrs or "layer_names" in handle.get("model_weights", handle).attrs:
                return "legacy"
            return "keras3" if "layers" in handle or "vars" in handle else "unknown"
    except OSError as error:
        raise ModelError(f"{path}: not a readable HDF5 file ({error})") from None


def _owner(node: Any) -> str:
    """The layer an array belongs to: Keras 3 keeps its name on the `vars` group, legacy files in the path."""
    parent = node.parent
    name = parent.attrs.get("name")
    if name is not None:
        return name.decode() if isinstance(name, bytes) else str(name)
    return parent.name.strip("/").split("/")[0]
