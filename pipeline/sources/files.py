"""Source models from files: a Keras 3 `.keras`, a legacy `.h5`, or a SavedModel directory.

Knows file formats and how to tell them apart; nothing of recipes, builders or stages. Every failure is a
ModelError naming the file; TensorFlow is imported only to load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.artifacts import sha256_of
from pipeline.core.artifact import Artifact
from pipeline.core.stored import regular_file_problem
from pipeline.errors import ModelError, first_line
from pipeline.frameworks import captured_native_output, import_tensorflow
from pipeline.sources.graphdef import RefusedElement, asset_escapes, refuse_untrusted, saved_model_elements_refused
from pipeline.sources.keras import load_keras_file
from pipeline.sources.model import Source, keras_tensor_specs, signature_tensor_specs

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
SAVEDMODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def is_savedmodel(path: Path) -> bool:
    """A directory holding a SavedModel's graph (no TensorFlow needed to tell)."""
    return any((path / name).is_file() for name in SAVEDMODEL_FILES)


def check_model_path(path: Path) -> None:
    """A model is a regular file or a directory: a FIFO blocks whoever reads it and a device never ends, so they
    are refused before anything (hashing included) opens them."""
    if not path.exists():
        raise ModelError(f"{path}: model not found")
    problem = regular_file_problem(path)
    if problem is not None and problem != "a folder":
        raise ModelError(f"{path} is {problem}; expected a .keras or .h5 file or a SavedModel directory")


def load_source(
    path: Path, signature: str = "serving_default", trusted: bool = False, base_dir: Path | None = None
) -> Source:
    """A model file or SavedModel directory; a trusted Keras file's custom-class modules are looked up in
    `base_dir` (the recipe's folder) first."""
    check_model_path(path)
    if path.is_dir():
        return _load_savedmodel(path, signature, trusted)
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: the file is empty; expected a .keras or .h5 model")
    suffix = path.suffix.lower()
    if suffix in KERAS_SUFFIXES:
        model, flavour = load_keras_file(path, trusted, base_dir)
        return _keras_source(path, "keras" if suffix == ".keras" else "h5", model, flavour)
    raise ModelError(f"{path}: unknown model format; expected a .keras or .h5 file or a SavedModel directory")


def _keras_source(path: Path, fmt: str, model: Any, flavour: str) -> Source:
    inputs, outputs = keras_tensor_specs(model, path)
    digest = sha256_of(path)
    artifact = Artifact(kind="keras", path=path, key=digest, flavour=flavour, handle=model)
    return Source(path=path, format=fmt, sha256=digest, inputs=inputs, outputs=outputs, artifact=artifact)


def _load_savedmodel(path: Path, signature: str, trusted: bool) -> Source:
    if not is_savedmodel(path):
        # A ModelCheckpoint folder of whole models (cp-01.keras, cp-02.keras): the user means one of them.
        kept = sorted(entry.name for entry in path.iterdir() if entry.suffix.lower() in KERAS_SUFFIXES)
        held = f"; it holds Keras model files ({', '.join(kept[-3:])}): give one as source.path" if kept else ""
        raise ModelError(
            f"{path}: directory is not a SavedModel (no saved_model.pb); "
            f"expected a SavedModel directory or a .keras/.h5 file{held}"
        )
    if not trusted:
        check_savedmodel(path)
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


def check_savedmodel(path: Path) -> None:
    """Refuse a SavedModel whose graphs hold anything but pure computation, or whose assets lie outside it. Its
    ops run when it loads (resource initializers) and when it is called (signatures), so its `saved_model.pb` is
    read as a protobuf message first: nothing is built in TensorFlow and no op runs before this passes."""
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    binary = path / "saved_model.pb"
    try:
        if binary.is_file():
            proto.ParseFromString(binary.read_bytes())
        else:
            text_format.Parse((path / "saved_model.pbtxt").read_text(encoding="utf-8"), proto)
    except Exception as error:  # protobuf's DecodeError and ParseError, a file we cannot read
        unreadable = first_line(error, 200)
        raise ModelError(f"{path}: cannot load the SavedModel: its graph is unreadable: {unreadable}") from None
    refused = saved_model_elements_refused(proto)
    root = path.resolve()
    for meta in proto.meta_graphs:
        for asset in meta.asset_file_def:
            # A symlink in assets/ reaches as far as a `..` would.
            target = (path / "assets" / asset.filename).resolve()
            if not asset_escapes(asset.filename) and not target.is_relative_to(root):
                why = f"asset file {asset.filename!r} resolves outside the model's folder"
                refused.append(RefusedElement("", asset.tensor_info.name, None, why))
    refuse_untrusted(path, refused, "SavedModel")
