"""TensorFlow 1 sources: a frozen GraphDef (`.pb`), or a Saver checkpoint with its `.meta` graph.

The source is frozen (variables → constants from the checkpoint), its feeds fixed, pruned to the requested outputs
and repaired where shipped graphs need it; then written once per process as a SavedModel with one
`serving_default` signature in a marked work folder. From there it is a SavedModel like any other: the reference
runs it in TensorFlow, `tflite` and `onnx` convert it, the cache keys it by the files' content, names and feeds.

Knows nothing of recipes (it takes an `Tf1Origin`), stages or runtimes. Every failure is a ModelError naming the
file and the tensor at fault.
"""

from __future__ import annotations

import atexit
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.artifacts import key_of, sha256_of
from pipeline.core.artifact import Artifact
from pipeline.core.leftovers import make_work_dir
from pipeline.core.tensors import TensorSpec
from pipeline.errors import ModelError, first_line
from pipeline.frameworks import captured_native_output, import_tensorflow
from pipeline.sources import graphdef
from pipeline.sources.model import Source, signature_tensor_specs
from pipeline.sources.trust import TRUST_HINT
from pipeline.sources.weights import epoch_order, glob_escape, has_index, record_prefix, split_prefix

Tf1Kind = Literal["graph", "checkpoint"]
Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class Tf1Origin:
    """What a recipe's `source: {graph: …}` or `{checkpoint: …}` names, paths resolved."""

    kind: Tf1Kind
    path: Path  # the .pb file; or the checkpoint prefix or directory, as given
    inputs: dict[str, Shape | None] | None = None  # None: the graph decides; a shape where the graph has none
    outputs: tuple[str, ...] | None = None
    feeds: dict[str, Any] = field(default_factory=dict)
    meta_graph: Path | None = None  # default: PREFIX.meta

    @property
    def place(self) -> str:
        return f"source.{self.kind}"


@dataclass(frozen=True)
class CheckpointFiles:
    folder: Path
    stem: str  # the files' name before .index/.meta/.data-*; empty where the author saved to `folder/`
    meta_graph: Path
    warnings: tuple[str, ...] = ()
    outside: str | None = None  # the `checkpoint` record names a prefix outside its folder: what it says

    @property
    def prefix(self) -> Path:
        """The prefix as a path: the folder itself for an empty stem (a Path cannot end in `/`)."""
        return self.folder / self.stem

    @property
    def restore_prefix(self) -> str:
        """What `Saver.restore` takes: `folder/` for an empty stem, as its authors restore it."""
        return f"{self.folder}/{self.stem}"

    @property
    def files(self) -> list[Path]:
        shards = sorted(self.folder.glob(f"{glob_escape(self.stem)}.data-*"))
        return [self.meta_graph, self.folder / f"{self.stem}.index", *shards]


def locate_checkpoint(origin: Tf1Origin, trusted: bool = True) -> CheckpointFiles:
    """The prefix (given, or a directory's latest) and its meta graph. A `checkpoint` record naming a path that is
    not here (shipped checkpoints keep their author's absolute paths) falls back to this directory, with a warning;
    one naming a checkpoint that exists outside the directory is refused untrusted, before its files are read."""
    path, warnings, outside = origin.path, [], None
    if path.is_dir():
        folder, stem, warning = _latest_prefix(path)
        warnings += [warning] if warning else []
        if not folder.resolve().is_relative_to(path.resolve()):
            outside = f"{path / 'checkpoint'}: names {folder / stem}, outside {path}"
            if not trusted:
                raise ModelError(f"refused: {outside}; {TRUST_HINT}")
            warnings.append(f"{outside}; loading it (the model is trusted)")
    else:  # a prefix; or one of its files, named instead of it
        folder, stem = path.parent, path.name.removesuffix(".index").removesuffix(".meta")
    if not has_index(folder, stem):
        raise ModelError(
            f"{origin.path}: no checkpoint there (expected a prefix with {stem}.index and .data-* files, "
            "or a directory holding one)"
        )
    meta = origin.meta_graph or folder / f"{stem}.meta"
    if not meta.is_file():
        raise ModelError(f"{meta}: the checkpoint's meta graph does not exist; set source.meta_graph")
    located = CheckpointFiles(folder, stem, meta, tuple(warnings), outside)
    missing = [file.name for file in located.files if not file.is_file()]
    if len(located.files) < 3 or missing:
        odd = ", ".join(missing) or "none"
        raise ModelError(f"{located.restore_prefix}: checkpoint without data shards or with odd files ({odd})")
    return located


def _latest_prefix(directory: Path) -> tuple[Path, str, str | None]:
    """The folder and stem of the directory's checkpoint, as `tf.train.latest_checkpoint` finds it, and a warning.

    The record's own folder is taken when it lies inside this directory, as TensorFlow reads it. Otherwise, when
    the stem it names exists here, the checkpoint is read here: shipped checkpoints keep their author's absolute
    path (`/home/author/model/`), and a copied folder whose original still exists is meant to be read as copied;
    reading in-folder files can never leave the folder (#36). Only a record whose stem is not here sends the load
    outside: refused untrusted by the caller."""
    record = directory / "checkpoint"
    named = record_prefix(directory)
    if named is not None:
        folder, stem = split_prefix(named, directory)
        if has_index(folder, stem) and folder.resolve().is_relative_to(directory.resolve()):
            return folder, stem, None
        if has_index(directory, stem):
            where = "outside this directory" if has_index(folder, stem) else "which is not here"
            return directory, stem, f"{record}: names {named}, {where}; using {_shown(stem)} in this directory"
        if has_index(folder, stem):
            return folder, stem, None
    stems = [index.name.removesuffix(".index") for index in directory.glob("*.index")]
    with_meta = [stem for stem in stems if (directory / f"{stem}.meta").is_file()]
    if not with_meta:
        raise ModelError(f"{directory}: no checkpoint with a .meta graph (*.index + *.meta) in this directory")
    latest = max(with_meta, key=lambda stem: _stem_order(directory, stem))
    warning = f"{record}: names {named}, which is not here; using {_shown(latest)}" if named else None
    return directory, latest, warning


def _stem_order(directory: Path, stem: str) -> tuple[int, float, str]:
    """The latest epoch first; an empty stem (there is at most one) orders by its index file's time."""
    return epoch_order(directory / stem) if stem else (-1, (directory / ".index").stat().st_mtime, "")


def _shown(stem: str) -> str:
    return stem or "the empty prefix (.index, .meta, .data-*)"


def tf1_files(origin: Tf1Origin) -> list[Path]:
    """The files the source is read from (hashed for the key, checked by validate)."""
    if origin.kind == "graph":
        if not origin.path.is_file():
            raise ModelError(f"{origin.path}: the frozen graph does not exist")
        return [origin.path]
    return locate_checkpoint(origin).files


def tf1_key(origin: Tf1Origin) -> str:
    """Content of the files, and every name and feed that changes what is frozen; and a `checkpoint` record that
    sends the load outside its folder, which makes another source (refused untrusted) of the same files."""
    inputs = None if origin.inputs is None else {name: shape for name, shape in origin.inputs.items()}
    hashes = [sha256_of(file) for file in tf1_files(origin)]
    outside = locate_checkpoint(origin).outside if origin.kind == "checkpoint" else None
    extra = [outside] if outside else []
    return key_of("tf1", origin.kind, hashes, inputs, origin.outputs, sorted(origin.feeds.items()), *extra)


def training_switch_warnings(origin: Tf1Origin, outputs: list[str] | None = None) -> list[str]:
    """A PlaceholderWithDefault named like a training switch that defaults to True (or a keep probability below
    1) and is not fed: the reference would run in training mode, and parity would compare files against it. The
    outputs' own (default: the recipe's; else the whole graph's). Read without TensorFlow: `validate` says it."""
    try:
        path = origin.path if origin.kind == "graph" else locate_checkpoint(origin).meta_graph
        data = path.read_bytes()
    except (ModelError, OSError):
        return []  # a missing file is validate's and the run's to report, with its own message
    wanted = outputs if outputs is not None else origin.outputs
    fed = {graphdef.node_name(name) for name in origin.feeds}
    switches = graphdef.training_switches(data, origin.kind == "checkpoint", wanted)
    return [switch.warning(f"{origin.path}: {origin.place}") for switch in switches if switch.name not in fed]


# --- loading ---------------------------------------------------------------------------------------


@dataclass
class _Frozen:
    graph_def: Any
    inputs: list[str]  # tensor names
    outputs: list[str]
    notes: list[str]


def load_tf1_source(origin: Tf1Origin, trusted: bool) -> Source:
    """Freeze, prune and repair the graph; write it as a SavedModel in a work folder; load that."""
    tf = import_tensorflow()
    if not trusted:
        check_tf1_graph(origin, tf)
    with captured_native_output():
        frozen = _freeze(origin, tf)
        directory = _write_savedmodel(origin, frozen, tf)
        loaded = tf.saved_model.load(str(directory))
    inputs, outputs = signature_tensor_specs(loaded.signatures["serving_default"])
    digest = tf1_key(origin)
    details = {"graph_def": _graph_def_record(frozen, directory, inputs)}
    artifact = Artifact(
        kind="savedmodel", path=directory, key=digest, signature="serving_default", handle=loaded, details=details
    )
    extra = {
        "tensor_names": {_safe(n): n for n in frozen.inputs + frozen.outputs if _safe(n) != n.removesuffix(":0")},
        "feeds": {name: _plain(value) for name, value in origin.feeds.items()},
        "repairs": frozen.notes,
    }
    located = locate_checkpoint(origin).warnings if origin.kind == "checkpoint" else ()
    warnings = [*located, *training_switch_warnings(origin, frozen.outputs)]
    if warnings:
        extra["warnings"] = warnings
    return Source(origin.path, origin.kind, digest, inputs, outputs, artifact, extra)


def _freeze(origin: Tf1Origin, tf: Any) -> _Frozen:
    if origin.kind == "graph":
        graph_def, signature = _read_graph(origin.path, tf), None
    else:
        graph_def, signature = _read_meta_graph(locate_checkpoint(origin).meta_graph, tf)
    # `_output_shapes` are hints every meta graph carries, and some disagree with the graph they describe (then
    # TensorFlow refuses to import it): dropped always, since TensorFlow infers the shapes again.
    graph_def = graphdef.without_output_shapes(graph_def)
    notes: list[str] = []
    outputs = _resolve_outputs(origin, graph_def, signature)
    inputs = _resolve_inputs(origin, graph_def, signature, outputs)
    _check_distinct_names(origin, outputs, "outputs")
    _check_distinct_names(origin, inputs, "inputs")
    if origin.kind == "checkpoint":
        graph_def = _restored_constants(origin, graph_def, outputs, tf)
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(graph_def, [graphdef.node_name(n) for n in outputs])
    graph_def, dropped = graphdef.without_assignments(graph_def)
    if dropped:
        notes.append(f"dropped {len(dropped)} variable updates ({', '.join(dropped[:3])}…)")
        graph_def = tf.compat.v1.graph_util.extract_sub_graph(graph_def, [graphdef.node_name(n) for n in outputs])
    _check_fed(origin, graph_def, inputs, outputs)
    graph_def = _feeds_folded(origin, graph_def, tf)
    graph_def = graphdef.with_defaults_inlined(graph_def, {graphdef.node_name(name) for name in inputs})
    return _Frozen(graph_def, inputs, outputs, notes)


def _read_graph(path: Path, tf: Any) -> Any:
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception as error:  # protobuf's DecodeError
        raise ModelError(f"{path}: not a frozen GraphDef (binary .pb): {first_line(error, 200)}") from None
    if not graph_def.node:
        raise ModelError(f"{path}: the GraphDef has no nodes; expected a frozen TensorFlow 1 graph")
    return graph_def


def _parse_meta_graph(path: Path, tf: Any) -> Any:
    meta = tf.compat.v1.MetaGraphDef()
    try:
        meta.ParseFromString(path.read_bytes())
    except Exception as error:
        raise ModelError(f"{path}: not a MetaGraphDef (.meta): {first_line(error, 200)}") from None
    return meta


def _read_meta_graph(path: Path, tf: Any) -> tuple[Any, Any]:
    meta = _parse_meta_graph(path, tf)
    if not meta.graph_def.node:
        raise ModelError(f"{path}: the meta graph has no nodes")
    return meta.graph_def, meta.signature_def.get("serving_default")


def _restored_constants(origin: Tf1Origin, graph_def: Any, outputs: list[str], tf: Any) -> Any:
    """The checkpoint's values in place of the variables, as `freeze_graph` does."""
    v1 = tf.compat.v1
    located = locate_checkpoint(origin)
    meta = v1.MetaGraphDef()
    meta.ParseFromString(located.meta_graph.read_bytes())
    meta.graph_def.CopyFrom(graph_def)  # without the _output_shapes that make import_meta_graph fail
    graph = tf.Graph()
    try:
        with graph.as_default():
            saver = v1.train.import_meta_graph(meta, clear_devices=True)
        with v1.Session(graph=graph) as session:
            if saver is not None:
                saver.restore(session, located.restore_prefix)
            return v1.graph_util.convert_variables_to_constants(
                session, graph.as_graph_def(), [graphdef.node_name(name) for name in outputs]
            )
    except Exception as error:  # TF raises many kinds for a graph or checkpoint it cannot take
        raise ModelError(f"{located.restore_prefix}: cannot restore the checkpoint: {first_line(error, 300)}") from None


def _resolve_outputs(origin: Tf1Origin, graph_def: Any, signature: Any) -> list[str]:
    nodes = {node.name: node for node in graph_def.node}
    if origin.outputs is not None:
        names = [graphdef.tensor_name(name) for name in origin.outputs]
    elif signature is not None and signature.outputs:
        names = [signature.outputs[key].name for key in sorted(signature.outputs)]
    else:
        candidates = graphdef.likely_outputs(graph_def)
        if len(candidates) != 1:
            shown = ", ".join(candidates[:12]) or "none"
            raise ModelError(f"{origin.path}: {origin.place}: set outputs; the graph's likely outputs are: {shown}")
        names = [graphdef.tensor_name(candidates[0])]
    for name in names:
        _check_tensor(origin, nodes, name, "outputs")
    return names


def _resolve_inputs(origin: Tf1Origin, graph_def: Any, signature: Any, outputs: list[str]) -> list[str]:
    nodes = {node.name: node for node in graph_def.node}
    for name in origin.feeds:
        node = _check_tensor(origin, nodes, graphdef.tensor_name(name), "feeds")
        if node.op not in graphdef.PLACEHOLDERS:
            raise ModelError(f"{origin.path}: {origin.place}: feeds: {name} is a {node.op}, not a placeholder")
    if origin.inputs is not None:
        names = [graphdef.tensor_name(name) for name in origin.inputs]
    elif signature is not None and signature.inputs:
        names = [signature.inputs[key].name for key in sorted(signature.inputs)]
        names = [name for name in names if graphdef.node_name(name) not in origin.feeds]
    else:
        needed = graphdef.upstream(graph_def, outputs)
        names = [
            graphdef.tensor_name(p.name)
            for p in graphdef.placeholders(graph_def)
            # A scalar placeholder is a switch (is_training, keep_prob), not data: _check_fed asks for its feed.
            if p.name in needed and not p.has_default and p.name not in origin.feeds and p.shape != ()
        ]
        if not names:
            raise ModelError(f"{origin.path}: {origin.place}: the outputs depend on no placeholder; set inputs")
    for name in names:
        _check_tensor(origin, nodes, name, "inputs")
    return names


def _check_tensor(origin: Tf1Origin, nodes: dict[str, Any], name: str, role: str) -> Any:
    node = nodes.get(graphdef.node_name(name))
    if node is None:
        near = [n for n in nodes if graphdef.node_name(name).split("/")[-1].lower() in n.lower()][:6]
        hint = f"; names like it: {', '.join(near)}" if near else ""
        raise ModelError(f"{origin.path}: {origin.place}: {role}: no op named {graphdef.node_name(name)!r}{hint}")
    return node


def _check_fed(origin: Tf1Origin, graph_def: Any, inputs: list[str], outputs: list[str]) -> None:
    """A placeholder an output needs that is neither an input nor fed would fail every run: name it now."""
    given = {graphdef.node_name(name) for name in inputs}
    needed = graphdef.upstream(graph_def, outputs, stop=given)
    unfed = [
        p
        for p in graphdef.placeholders(graph_def)
        if p.name in needed and p.name not in given and p.name not in origin.feeds and not p.has_default
    ]
    if unfed:
        first = unfed[0]
        raise ModelError(
            f"{origin.path}: {origin.place}: output {graphdef.node_name(outputs[0])} depends on placeholder "
            f"{first.name} ({first.dtype}), which is neither an input nor fed; add it to inputs or to feeds "
            f"(e.g. feeds: {{{first.name}: false}})"
        )


def check_tf1_graph(origin: Tf1Origin, tf: Any) -> None:
    """Untrusted: refuse the graph (every node, every library function; a meta graph under its own saver) unless
    it is pure computation, and a checkpoint its folder's record sends elsewhere. Before anything imports the
    graph: a meta graph names its own restore op, which `saver.restore` runs."""
    if origin.kind == "graph":
        graphdef.refuse_untrusted(origin.path, graphdef.graph_elements_refused(_read_graph(origin.path, tf)))
        return
    located = locate_checkpoint(origin, trusted=False)
    meta = _parse_meta_graph(located.meta_graph, tf)
    graphdef.refuse_untrusted(located.meta_graph, graphdef.meta_graph_elements_refused(meta), "meta graph")


def _check_distinct_names(origin: Tf1Origin, names: list[str], role: str) -> None:
    """Two tensors whose file-safe names collide (`a/b`, `a_b`) would be one signature key: one lost, one
    mislabelled."""
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(_safe(name), name)
        if other != name:
            raise ModelError(
                f"{origin.path}: {origin.place}: {role}: {other} and {name} both become {_safe(name)!r} in the "
                "converted files; name one of them differently in the graph, or leave one out"
            )


def _write_savedmodel(origin: Tf1Origin, frozen: _Frozen, tf: Any) -> Path:
    v1 = tf.compat.v1

    def imported() -> None:
        tf.graph_util.import_graph_def(frozen.graph_def, name="")

    try:
        wrapped = v1.wrap_function(imported, [])
        input_tensors = [wrapped.graph.get_tensor_by_name(name) for name in frozen.inputs]
        pruned = wrapped.prune(input_tensors, [wrapped.graph.get_tensor_by_name(name) for name in frozen.outputs])
    except Exception as error:
        raise ModelError(f"{origin.path}: TensorFlow cannot import the graph: {first_line(error, 300)}") from None
    specs = [_input_spec(origin, name, tensor, tf) for name, tensor in zip(frozen.inputs, input_tensors, strict=True)]
    output_keys = [_safe(name) for name in frozen.outputs]

    @tf.function(input_signature=specs)
    def serve(*arguments: Any) -> dict[str, Any]:
        return dict(zip(output_keys, pruned(*arguments), strict=True))

    module = tf.Module()
    module.pruned = pruned  # tracked, so the saved signature finds the function it calls
    directory = make_work_dir("tf1-")
    atexit.register(shutil.rmtree, directory, True)
    target = directory / "saved_model"
    try:
        tf.saved_model.save(module, str(target), signatures={"serving_default": serve.get_concrete_function()})
    except Exception as error:
        raise ModelError(f"{origin.path}: cannot trace the frozen graph: {first_line(error, 300)}") from None
    return target


def _graph_def_record(frozen: _Frozen, saved: Path, inputs: list[TensorSpec]) -> dict[str, Any]:
    """The frozen GraphDef the SavedModel was written from, beside it, for the `onnx` stage: tf2onnx converts a
    control flow v1 loop (dynamic_rnn, tf.scan) from the graph, never from the function the SavedModel holds it in.
    Tensor names to the signature's keys, and each input's shape as the signature has it (the recipe's)."""
    path = saved.parent / "frozen_graph.pb"
    path.write_bytes(frozen.graph_def.SerializeToString())
    shapes = {spec.name: list(spec.shape) for spec in inputs}
    return {
        "path": str(path),
        "inputs": {name: _safe(name) for name in frozen.inputs},
        "outputs": {name: _safe(name) for name in frozen.outputs},
        "shapes": {name: shapes.get(_safe(name)) for name in frozen.inputs},
    }


def _feeds_folded(origin: Tf1Origin, graph_def: Any, tf: Any) -> Any:
    """A copy where each fed placeholder is a constant of its value: the reference and every converted file hold
    the feed, none has it as an input. A PlaceholderWithDefault (a `training` switch defaulting to True) is fed
    like any placeholder: its default is dropped with it."""
    if not origin.feeds:
        return graph_def
    fed = {graphdef.node_name(name): value for name, value in origin.feeds.items()}
    found = {p.name: p for p in graphdef.placeholders(graph_def) if p.name in fed}
    folded = type(graph_def)()
    folded.CopyFrom(graph_def)
    for node in folded.node:
        if node.name in found:
            value = _feed_tensor(origin, found[node.name], fed[node.name], tf)
            del node.input[:]
            node.attr.clear()
            node.op = "Const"
            node.attr["dtype"].type = value.dtype
            node.attr["value"].tensor.CopyFrom(value)
    return folded


def _feed_tensor(origin: Tf1Origin, placeholder: graphdef.Placeholder, value: Any, tf: Any) -> Any:
    """The feed as a TensorProto of the placeholder's dtype, refused when its type or shape cannot be fed there."""
    where = f"{origin.path}: {origin.place}: feeds: {placeholder.name}"
    try:
        proto = tf.make_tensor_proto(value, dtype=tf.as_dtype(placeholder.dtype))
    except (TypeError, ValueError) as error:
        raise ModelError(f"{where}: {value!r} is not a {placeholder.dtype} ({first_line(error, 120)})") from None
    shape = tuple(dim.size for dim in proto.tensor_shape.dim)
    expected = placeholder.shape
    if expected is not None and (
        len(shape) != len(expected) or any(want not in (None, got) for want, got in zip(expected, shape, strict=True))
    ):
        shown = ["?" if dim is None else dim for dim in expected]
        raise ModelError(f"{where}: the placeholder's shape is {shown}; the feed's is {list(shape)}")
    return proto


def _input_spec(origin: Tf1Origin, name: str, tensor: Any, tf: Any) -> Any:
    given = (origin.inputs or {}).get(graphdef.node_name(name)) or (origin.inputs or {}).get(name)
    shape = tensor.shape
    if given is not None:
        if shape.rank is not None and len(given) != shape.rank:
            raise ModelError(
                f"{origin.path}: {origin.place}: inputs: {name} has rank {shape.rank} in the graph "
                f"({shape}); the recipe gives {list(given)}"
            )
        shape = tf.TensorShape(list(given))
    elif shape.rank is None:
        raise ModelError(
            f"{origin.path}: {origin.place}: inputs: {name} has no known rank; give its shape "
            f"(inputs: {{{graphdef.node_name(name)}: [1, …]}})"
        )
    return tf.TensorSpec(shape, tensor.dtype, name=_safe(name))


def _safe(tensor: str) -> str:
    """A tensor name every format keeps as it is (signature keys, TFLite and ONNX names): `scope/op:1` →
    `scope_op_1`, `op:0` → `op`."""
    return re.sub(r"[^A-Za-z0-9_]", "_", tensor.removesuffix(":0"))


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


# --- inspect ---------------------------------------------------------------------------------------


def describe_tf1_graph(path: Path, trusted: bool = False) -> dict[str, Any]:
    """A frozen `.pb` or a `.meta`: its placeholders (defaults marked), likely outputs, the serving signature and
    the TensorFlow version that wrote a meta graph. For a `recipe` to start from: nothing is frozen or run; an
    untrusted graph that `run` would refuse is refused here too, naming the same elements."""
    tf = import_tensorflow()
    if path.suffix.lower() == ".meta":
        meta = _parse_meta_graph(path, tf)
        if not trusted:
            graphdef.refuse_untrusted(path, graphdef.meta_graph_elements_refused(meta), "meta graph")
        graph_def, written_by = meta.graph_def, meta.meta_info_def.tensorflow_version or "unknown"
        signature = meta.signature_def.get("serving_default")
    else:
        graph_def, written_by, signature = _read_graph(path, tf), None, None
        if not trusted:
            graphdef.refuse_untrusted(path, graphdef.graph_elements_refused(graph_def))
    description: dict[str, Any] = {
        "format": "tf1 meta graph" if written_by else "tf1 frozen graph",
        "nodes": len(graph_def.node),
        "placeholders": [p.describe() for p in graphdef.placeholders(graph_def) if not p.name.startswith("save/")],
        "likely_outputs": graphdef.likely_outputs(graph_def)[:20],
    }
    if written_by:
        description["tensorflow_version"] = written_by
    if signature is not None:
        description["serving_signature"] = {
            "inputs": {key: value.name for key, value in sorted(signature.inputs.items())},
            "outputs": {key: value.name for key, value in sorted(signature.outputs.items())},
        }
    return description
