"""Provenance: which recipe, source and edgeport made a shipped file, stamped into the file and read back from it.

An `.onnx` file carries it in `metadata_props` (`edgeport.version`, `edgeport.recipe`, ...); a `.tflite` file carries
the same keys and values as JSON in a flatbuffer `metadata` entry named `edgeport`. It holds no wall-clock time, so
stamping is a pure function of the file and the recipe: two cold runs stay byte-identical, and a cached conversion
is stamped on its way to `OUT/` (a new recipe name or version re-stamps it; nothing is converted again).

The one home of provenance: the run stamps with it, `inspect` shows it, `verify` compares it with a report.
onnx and the TFLite flatbuffer schema are imported only when a file of theirs is stamped or read.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipeline import __version__
from pipeline.artifacts import sha256_of, write_bytes_atomic
from pipeline.core.stored import regular_file_problem
from pipeline.errors import ModelError

StampedKind = Literal["tflite", "onnx"]
PREFIX = "edgeport."
TFLITE_ENTRY = "edgeport"  # the name of the flatbuffer `metadata` entry
STAGE_SEPARATOR = " -> "
_TFLITE_IDENTIFIER = b"TFL3"
_ALIGNMENT = 16  # TFLite's converter aligns buffer data to 16 bytes (schema: force_align 16); a stamped file too
_GIT_SECONDS = 10.0


class ProvenanceError(ValueError):
    """A file's edgeport metadata is there but cannot be read (not JSON, a required key missing)."""


@dataclass(frozen=True)
class Provenance:
    """What a shipped file says about how it was made. `key_of` names each field's key in the file."""

    edgeport_version: str
    recipe: str
    recipe_sha256: str
    source_sha256: str
    output: str = ""
    stages: tuple[str, ...] = ()  # each stage's label, e.g. ("prune sparsity=0.5", "tflite int8")
    model_version: str | None = None  # the recipe's `version`
    git_commit: str | None = None  # only when the recipe sits in a git work tree
    git_dirty: bool | None = None  # tracked files changed since that commit

    @staticmethod
    def key_of(field: str) -> str:
        return PREFIX + ("version" if field == "edgeport_version" else field)

    def file_fields(self) -> dict[str, str]:
        """The keys and text values a file carries, absent ones left out."""
        return {self.key_of(name): field_text(value) for name, value in self.to_json().items()}

    def to_json(self) -> dict[str, Any]:
        """As report.json and `inspect --json` show it: typed values, absent ones left out."""
        values = {field.name: getattr(self, field.name) for field in fields(self)}
        values["stages"] = list(self.stages)
        return {name: value for name, value in values.items() if value is not None}

    @classmethod
    def from_file_fields(cls, values: Mapping[str, str]) -> Provenance:
        """The inverse of `file_fields`; keys a later edgeport may add are ignored."""
        found: dict[str, Any] = {}
        for field in fields(cls):
            text = values.get(cls.key_of(field.name))
            if text is None:
                continue
            if field.name == "stages":
                found[field.name] = tuple(text.split(STAGE_SEPARATOR)) if text else ()
            elif field.name == "git_dirty":
                found[field.name] = text == "true"
            else:
                found[field.name] = text
        missing = [cls.key_of(name) for name in ("edgeport_version", "recipe", "recipe_sha256", "source_sha256")]
        missing = [key for key in missing if key not in values]
        if missing:
            raise ProvenanceError(f"edgeport metadata without {', '.join(missing)}")
        return cls(**found)

    def for_output(self, output: str, stages: list[str]) -> Provenance:
        return replace(self, output=output, stages=tuple(stages))


def field_text(value: Any) -> str:
    """A provenance value as a file carries it (and `inspect` shows it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return STAGE_SEPARATOR.join(value)
    return str(value)


def recipe_provenance(recipe_file: Path, recipe: str, model_version: str | None, source_sha256: str) -> Provenance:
    """The part every output of a run shares; `for_output` adds the output's name and stages."""
    git = git_state(recipe_file.parent)
    return Provenance(
        edgeport_version=__version__,
        recipe=recipe,
        recipe_sha256=sha256_of(recipe_file),
        source_sha256=source_sha256,
        model_version=model_version,
        git_commit=git[0] if git else None,
        git_dirty=git[1] if git else None,
    )


def git_state(directory: Path) -> tuple[str, bool] | None:
    """The commit checked out where `directory` sits and whether tracked files changed since; None outside a work
    tree, before a first commit, or without git. Untracked files do not count: a run's own `--out` inside the tree
    would otherwise make the second of two runs dirty and its files differ from the first's."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        commit = _git(git, directory, "rev-parse", "--verify", "HEAD")
        changes = _git(git, directory, "--no-optional-locks", "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    if commit is None or changes is None:
        return None
    return commit, bool(changes)


def _git(git: str, directory: Path, *arguments: str) -> str | None:
    done = subprocess.run(
        [git, "-C", str(directory), *arguments], capture_output=True, text=True, timeout=_GIT_SECONDS, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else None


# --- files ---------------------------------------------------------------------------------------------------


def model_format(path: Path) -> StampedKind:
    """`tflite` or `onnx`, read from the file's bytes (never its name); ModelError (exit 2) naming it otherwise."""
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    problem = regular_file_problem(path)
    if problem is not None:
        raise ModelError(f"{path} is {problem}; expected a .tflite or .onnx file")
    with path.open("rb") as handle:
        head = handle.read(8)
    if head[4:8] == _TFLITE_IDENTIFIER:
        return "tflite"
    if _onnx_model(path.read_bytes()) is not None:
        return "onnx"
    raise ModelError(f"{path}: neither a TFLite flatbuffer nor an ONNX model")


def stamp_file(source: Path, target: Path, kind: StampedKind, provenance: Provenance) -> None:
    """Write `source` with `provenance` in it to `target` (atomically); `source` stays as it is."""
    write_bytes_atomic(target, stamped(source.read_bytes(), kind, provenance))


def stamped(data: bytes, kind: StampedKind, provenance: Provenance) -> bytes:
    """The model's bytes with `provenance` in place of any earlier edgeport metadata; everything else kept."""
    return _stamp_onnx(data, provenance) if kind == "onnx" else _stamp_tflite(data, provenance)


def read_provenance(path: Path, kind: StampedKind | None = None) -> Provenance | None:
    """What the file says made it; None when it carries no edgeport metadata, ProvenanceError when that is
    unreadable, ModelError when the file is neither format."""
    kind = kind or model_format(path)
    data = path.read_bytes()
    values = _onnx_fields(data) if kind == "onnx" else _tflite_fields(data)
    return None if values is None else Provenance.from_file_fields(values)


# --- ONNX: metadata_props --------------------------------------------------------------------------------------


def _onnx_model(data: bytes) -> Any:
    """The parsed ModelProto, or None: protobuf parses many byte strings, so a model must also say its IR version
    and have a graph."""
    import onnx
    from google.protobuf.message import DecodeError

    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError):
        return None
    return model if model.ir_version > 0 and model.HasField("graph") else None


def _stamp_onnx(data: bytes, provenance: Provenance) -> bytes:
    """The ModelProto with its edgeport metadata_props replaced, edited at the protobuf wire level: every other
    field's bytes kept in place, the new entries appended (a parser takes fields in any order). Not through the
    onnx package, whose import cost 0.5 s of a 1.2 s warm run (2 outputs, every file from the cache)."""
    fields = _wire_fields(data)
    if fields is None or not _is_onnx_model(data, fields):
        raise ModelError("cannot stamp provenance: not an ONNX model")
    stamped = bytearray()
    for number, start, payload, end in fields:
        if number == _METADATA_PROPS and _entry_key(data[payload:end]).startswith(PREFIX):
            continue
        stamped += data[start:end]
    for key, value in provenance.file_fields().items():
        entry = _length_delimited(1, key.encode()) + _length_delimited(2, value.encode())
        stamped += _length_delimited(_METADATA_PROPS, entry)
    return bytes(stamped)


# ModelProto's field numbers (onnx.proto): ir_version, graph, metadata_props (StringStringEntryProto: key 1, value 2)
_IR_VERSION, _GRAPH, _METADATA_PROPS = 1, 7, 14


def _wire_fields(data: bytes) -> list[tuple[int, int, int, int]] | None:
    """Each top-level protobuf field as (number, start, payload start, end); None where the bytes are no message."""
    fields, position = [], 0
    try:
        while position < len(data):
            start = position
            tag, position = _varint(data, position)
            number, wire_type = tag >> 3, tag & 7
            if wire_type == 0:
                _, position = _varint(data, position)
                payload = start
            elif wire_type == 2:
                size, payload = _varint(data, position)
                position = payload + size
            elif wire_type in (1, 5):
                payload, position = position, position + (8 if wire_type == 1 else 4)
            else:  # groups: no ONNX message has them
                return None
            if number == 0 or position > len(data):
                return None
            fields.append((number, start, payload, position))
    except IndexError:
        return None
    return fields


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")


def _is_onnx_model(data: bytes, fields: list[tuple[int, int, int, int]]) -> bool:
    """A model says its IR version and has a graph (protobuf parses many byte strings)."""
    numbers = {number for number, *_ in fields}
    ir_version = next((_varint(data, start + 1)[0] for number, start, _, _ in fields if number == _IR_VERSION), 0)
    return ir_version > 0 and _GRAPH in numbers


def _entry_key(entry: bytes) -> str:
    fields = _wire_fields(entry) or []
    key = next((entry[payload:end] for number, _, payload, end in fields if number == 1), b"")
    return key.decode("utf-8", "replace")


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _encoded_varint(number << 3 | 2) + _encoded_varint(len(payload)) + payload


def _encoded_varint(value: int) -> bytes:
    encoded = bytearray()
    while value >= 0x80:
        encoded.append(value & 0x7F | 0x80)
        value >>= 7
    encoded.append(value)
    return bytes(encoded)


def _onnx_fields(data: bytes) -> dict[str, str] | None:
    model = _onnx_model(data)
    if model is None:
        raise ModelError("not an ONNX model")
    values = {entry.key: entry.value for entry in model.metadata_props if entry.key.startswith(PREFIX)}
    return values or None


# --- TFLite: a flatbuffer metadata entry -------------------------------------------------------------------------


def _stamp_tflite(data: bytes, provenance: Provenance) -> bytes:
    """Unpack the flatbuffer, set the `edgeport` metadata entry's buffer, pack it again. The signatures, the
    converter's own metadata (min_runtime_version, CONVERSION_METADATA) and every buffer's bytes are kept: packing
    aligns buffer data to 16 bytes as the converter does, and data stored past the flatbuffer (models over 2 GB,
    `offset`/`size` buffers) is placed past the new one."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    outside = {
        index: bytes(data[buffer.offset : buffer.offset + buffer.size])
        for index, buffer in enumerate(model.buffers or [])
        if buffer.offset > 1
    }
    payload = json.dumps(provenance.file_fields(), sort_keys=True).encode()
    entries = [entry for entry in model.metadata or [] if _name(entry.name) == TFLITE_ENTRY]
    if entries:
        outside.pop(entries[0].buffer, None)
        buffer = model.buffers[entries[0].buffer]
        buffer.data, buffer.offset, buffer.size = payload, 0, 0
    else:
        buffer, entry = schema.BufferT(), schema.MetadataT()
        buffer.data, entry.name, entry.buffer = payload, TFLITE_ENTRY, len(model.buffers)
        model.buffers.append(buffer)
        model.metadata = [*(model.metadata or []), entry]
    return serialized_tflite(model, outside)


def serialized_tflite(model: Any, outside: dict[int, bytes]) -> bytes:
    """A ModelT as file bytes; `outside` (buffer index → bytes) is stored past the flatbuffer, 16-byte aligned, the
    way the converter and LiteRT's quantizer store data a 2 GB flatbuffer cannot hold."""
    for index in outside:
        model.buffers[index].data, model.buffers[index].offset, model.buffers[index].size = None, 1, 1
    packed = _packed(model)
    if not outside:
        return packed
    position, places = _aligned(len(packed)), {}
    for index, blob in outside.items():
        places[index] = position
        model.buffers[index].offset, model.buffers[index].size = position, len(blob)
        position = _aligned(position + len(blob))
    packed = _packed(model)  # the same length: only the offsets' values changed
    whole = bytearray(position)
    whole[: len(packed)] = packed
    for index, blob in outside.items():
        whole[places[index] : places[index] + len(blob)] = blob
    return bytes(whole)


def _packed(model: Any) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    buffers = model.buffers
    model.buffers = [_AlignedBuffer.of(buffer, schema) for buffer in buffers]
    try:
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=_TFLITE_IDENTIFIER)
        return bytes(builder.Output())
    finally:
        model.buffers = buffers


class _AlignedBuffer:
    """A BufferT that packs its data 16-byte aligned: the generated code aligns a byte vector to 1."""

    def __init__(self, data: Any, offset: int, size: int, schema: Any) -> None:
        self.data, self.offset, self.size, self.schema = data, offset, size, schema

    @classmethod
    def of(cls, buffer: Any, schema: Any) -> _AlignedBuffer:
        return cls(buffer.data, buffer.offset, buffer.size, schema)

    def Pack(self, builder: Any) -> int:  # the name the generated ModelT.Pack calls
        data = None
        if self.data is not None:
            raw = self.data if isinstance(self.data, bytes) else np.asarray(self.data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(raw), _ALIGNMENT)
            builder.head -= len(raw)
            builder.Bytes[builder.head : builder.head + len(raw)] = raw
            builder.vectorNumElems = len(raw)
            data = builder.EndVector()
        self.schema.BufferStart(builder)
        if data is not None:
            self.schema.BufferAddData(builder, data)
        self.schema.BufferAddOffset(builder, self.offset)
        self.schema.BufferAddSize(builder, self.size)
        return self.schema.BufferEnd(builder)


def _tflite_fields(data: bytes) -> dict[str, str] | None:
    from ai_edge_litert import schema_py_generated as schema

    try:
        payload = _tflite_entry(schema.Model.GetRootAs(data, 0), data)
    except (struct.error, IndexError, ValueError, TypeError) as error:  # a truncated or damaged flatbuffer
        raise ProvenanceError(f"unreadable TFLite flatbuffer ({type(error).__name__}: {error})") from None
    if payload is None:
        return None
    try:
        values = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProvenanceError(f"the {TFLITE_ENTRY} metadata entry is not JSON ({error})") from None
    if not isinstance(values, dict) or not all(isinstance(value, str) for value in values.values()):
        raise ProvenanceError(f"the {TFLITE_ENTRY} metadata entry is not a JSON object of strings")
    return values


def _tflite_entry(model: Any, data: bytes) -> bytes | None:
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        if _name(entry.Name()) == TFLITE_ENTRY:
            buffer = model.Buffers(entry.Buffer())
            if buffer.DataLength():
                return buffer.DataAsNumpy().tobytes()
            return data[buffer.Offset() : buffer.Offset() + buffer.Size()]
    return None


def _name(name: str | bytes | None) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name or ""


def _aligned(position: int) -> int:
    return -(-position // _ALIGNMENT) * _ALIGNMENT
