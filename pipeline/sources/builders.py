"""Sources straight from training: import the model's builder, build it, restore saved weights into it.

Runs user code (the builder) only when trusted. Knows nothing of recipe files, stages or reports; every
failure is a ModelError naming the builder, file, layer or variable. Finding the builder's files and keying
them import nothing (`validate` uses them).
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import inspect
import itertools
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import key_of, sha256_of
from pipeline.core.artifact import Artifact
from pipeline.errors import ModelError, first_line
from pipeline.frameworks import captured_native_output, import_tensorflow
from pipeline.sources.imports import import_failure, import_from
from pipeline.sources.model import Source, keras_tensor_specs
from pipeline.sources.weights import (
    WeightsFile,
    checkpoint_full_names,
    checkpoint_root_children,
    h5_arrays,
    h5_layout,
    locate_weights,
)

_BOOKKEEPING = {"optimizer", "save_counter"}
_LISTED = 20  # names of unrestored/unused variables kept in the report
_SIDE_BY_SIDE = 4  # rows of a mismatch message: the first variables of the model and of the file


@dataclass
class Restore:
    """What a restore matched: counts, and the names left over on either side."""

    restored: int
    not_restored: list[str] = field(default_factory=list)  # model variables the weights had no value for
    unused: list[str] = field(default_factory=list)  # saved values the model has no variable for
    ignored: int = 0  # optimizer state, save counters, objects beside the model
    attached_as: str | None = None  # checkpoints: the name the model was saved under (`model`), or the root

    def describe(self) -> dict[str, Any]:
        return {
            "restored": self.restored,
            "unrestored": len(self.not_restored),
            "unused": len(self.unused),
            "ignored": self.ignored,
            "attached_as": self.attached_as,
            "not_restored": self.not_restored[:_LISTED],
            "unused_values": self.unused[:_LISTED],
        }


def find_builder_module(module: str, base_dir: Path) -> Path | None:
    """The file of `module` (dotted), looked up relative to `base_dir` first, then sys.path; imports nothing."""
    relative = Path(*module.split("."))
    suffixes = [".py", *importlib.machinery.EXTENSION_SUFFIXES]
    for root in [base_dir, *(Path(entry) for entry in sys.path if entry)]:
        candidates = [root / relative / "__init__.py", *(root / f"{relative}{suffix}" for suffix in suffixes)]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
    return None


def builder_key(builder: str, builder_args: dict[str, Any], weights_path: Path, base_dir: Path) -> str:
    """Key of a builder source: the builder, its arguments, the files of its code and the weights (no import)."""
    files = builder_files(builder.partition(":")[0], base_dir)
    code = {
        (path.relative_to(base_dir) if path.is_relative_to(base_dir) else path).as_posix(): sha256_of(path)
        for path in files
    }
    return key_of("builder", builder, builder_args, code, locate_weights(weights_path).hashes())


def builder_files(module: str, base_dir: Path) -> list[Path]:
    """The builder's module and every module it imports from the same tree, transitively, read with `ast`.

    An edit to a helper module the builder imports changes the model it builds, so it must change the key too.
    Modules found elsewhere (site-packages, the standard library) are covered by the package versions.
    """
    first = find_builder_module(module, base_dir)
    if first is None:
        return []
    root = first.parents[len(module.split(".")) - (0 if first.name == "__init__.py" else 1)]
    found, pending = {first}, [(module, first)]
    while pending:
        name, path = pending.pop()
        for imported in _imported_modules(name, path):
            candidate = find_builder_module(imported, root)
            if candidate is not None and candidate not in found and candidate.is_relative_to(root):
                found.add(candidate)
                pending.append((imported, candidate))
    return sorted(found)


def _imported_modules(module: str, path: Path) -> set[str]:
    """Dotted names a module imports (absolute, and relative resolved against its package)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".") if package else []
            base = ".".join([*parts[: len(parts) - node.level + 1], node.module or ""]) if node.level else node.module
            base = (base or "").strip(".")
            names.update(f"{base}.{alias.name}".strip(".") for alias in node.names)
            names.add(base)
    return {name for name in names if name}


def load_builder_source(
    builder: str,
    builder_args: dict[str, Any],
    weights_path: Path,
    base_dir: Path,
    allow_partial: bool,
    trusted: bool,
    sample_inputs: dict[str, SampleInput] | None = None,
) -> Source:
    """Build the model with `builder(**builder_args)` and restore `weights_path` into it.

    A subclassed model (no `keras.Input`) is read through a functional model around it, sized by the call that built
    it in the builder, else by `sample_inputs` (input name → per-sample shape and dtype: the evaluation data's)."""
    if not trusted:
        raise ModelError("source.builder: the builder is code; set source.trusted: true")
    weights = locate_weights(weights_path)
    import_tensorflow()
    function = import_builder(builder, base_dir)
    # Variables a partial restore leaves alone keep their initial values: seed them, so every process
    # that builds this source (the run and its conversion worker) builds the same model.
    import keras

    keras.utils.set_random_seed(0)
    model, flavour = _build(function, builder, builder_args)
    _size(model, builder, sample_inputs)
    with tempfile.TemporaryDirectory(prefix="edgeport-weights-") as work:
        if weights.form == "h5":
            restore = _restore_h5(model, flavour, weights, allow_partial, Path(work))
        else:
            restore = _restore_checkpoint(model, weights, allow_partial, Path(work))
    # Weights restore into the builder's own model (they were saved from it); the run reads the wrapper.
    model, called_as = _with_inputs(model, flavour, builder, sample_inputs)
    inputs, outputs = keras_tensor_specs(model, weights.path)
    hashes = weights.hashes()
    key = builder_key(builder, builder_args, weights_path, base_dir)
    extra = {
        "builder": builder,
        "builder_args": builder_args,
        "weights": {
            "form": weights.form,
            "path": str(weights.path),
            "picked_from": None if weights.picked_from is None else str(weights.picked_from),
            "files": hashes,
        },
        "restore": restore.describe(),
        **({"called_as": called_as} if called_as else {}),
    }
    artifact = Artifact(kind="keras", path=weights.path, key=key, flavour=flavour, handle=model)
    return Source(
        path=weights.path,
        format=f"builder+{weights.form}",
        sha256=key,
        inputs=inputs,
        outputs=outputs,
        artifact=artifact,
        extra=extra,
    )


def import_builder(pattern: str, base_dir: Path) -> Callable[..., Any]:
    """`module.path:function`, imported with the recipe's directory first on sys.path (for the import alone)."""
    module_name, _, function_name = pattern.partition(":")
    try:
        module = import_from(module_name, base_dir)
    except Exception as error:  # anything the module runs at import time
        raise ModelError(f"source.builder: cannot import {module_name} ({import_failure(error)})") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ModelError(f"source.builder: {module_name} has no function {function_name!r}")
    return function


def _build(function: Callable[..., Any], pattern: str, builder_args: dict[str, Any]) -> tuple[Any, str]:
    try:
        with captured_native_output(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = function(**builder_args)
    except Exception as error:  # the builder is user code
        raise ModelError(f"source.builder: {pattern} raised {type(error).__name__}: {first_line(error, 300)}") from None
    flavour = _flavour(model)
    if flavour is None:
        raise ModelError(f"source.builder: {pattern} returned {type(model).__name__}, not a Keras model")
    return model, flavour


def _flavour(model: Any) -> str | None:
    import keras

    if isinstance(model, keras.Model):
        return "keras3"
    import tf_keras

    return "tf_keras" if isinstance(model, tf_keras.Model) else None


# --- subclassed models ----------------------------------------------------------------------------

SampleInput = tuple[tuple[int, ...], str]  # one sample's shape (no batch axis) and dtype name


def _has_inputs(model: Any) -> bool:
    try:
        return bool(list(model.inputs or []))
    except (AttributeError, ValueError):  # Keras 3 subclassed models have no `inputs` at all
        return False


def _size(model: Any, pattern: str, sample_inputs: dict[str, SampleInput] | None) -> None:
    """Give a subclassed model the builder never called its variables: restoring needs them to exist. It is called
    once on zeros of the evaluation data's shapes (batch 1); without them the refusal says how to build it."""
    if model.weights or _has_inputs(model):
        return
    if sample_inputs:
        feed = {name: np.zeros((1, *shape), dtype) for name, (shape, dtype) in sample_inputs.items()}
        try:
            with captured_native_output(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model(next(iter(feed.values())) if len(feed) == 1 else feed)
        except Exception as error:  # the model's call is user code
            raise ModelError(
                f"source.builder: {pattern} returned a model it never called, and calling it on the evaluation "
                f"data's shapes ({_samples_text(sample_inputs)}, batch 1) raised {type(error).__name__}: "
                f"{first_line(error, 300)}"
            ) from None
    if not model.weights:
        raise ModelError(
            f"source.builder: {pattern} returned a subclassed {type(model).__name__} it never called, so it has no "
            "variables to restore the weights into and nothing says its input shapes; call it once in the builder on "
            "a batch shaped like your data (`model(np.zeros((1, 28, 28)))`) before returning it, or build it from "
            "keras.Input"
        )


def _samples_text(sample_inputs: dict[str, SampleInput]) -> str:
    return ", ".join(f"{name} {list(shape)} {dtype}" for name, (shape, dtype) in sample_inputs.items())


def _with_inputs(
    model: Any, flavour: str, pattern: str, sample_inputs: dict[str, SampleInput] | None
) -> tuple[Any, str | None]:
    """The model itself when it has inputs; a subclassed one wrapped in a functional model over the call that built
    it (its arguments' shapes, batch axis free), which every stage and runtime reads as any Keras model; and that
    call as text for the report."""
    if _has_inputs(model):
        return model, None
    import keras
    import tf_keras

    module = tf_keras if flavour == "tf_keras" else keras
    arguments = _built_with(model, flavour)
    if not arguments:
        raise ModelError(
            f"source.builder: {pattern} returned a subclassed {type(model).__name__} whose input shapes Keras did "
            "not record; build it from keras.Input, or call it once on a batch in the builder"
        )
    dtypes = {name: dtype for name, (_, dtype) in (sample_inputs or {}).items()}
    default = next(iter(dtypes.values())) if len(dtypes) == 1 else str(getattr(model, "input_dtype", "float32"))
    symbolic = [_symbolic(module, name, leaf, dtypes, default) for name, leaf in arguments]
    try:
        with captured_native_output(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outputs = model(*symbolic)
            wrapper = module.Model(inputs=symbolic[0] if len(symbolic) == 1 else symbolic, outputs=outputs)
    except Exception as error:  # the model's call is user code, and not every call traces symbolically
        raise ModelError(
            f"source.builder: {pattern} returned a subclassed {type(model).__name__} that cannot be called on "
            f"symbolic inputs ({type(error).__name__}: {first_line(error, 300)}); build it from keras.Input"
        ) from None
    called = ", ".join(
        f"{t.name.split(':')[0]} {tuple(t.shape)} {getattr(t.dtype, 'name', t.dtype)}" for t in wrapper.inputs
    )
    return wrapper, called


def _built_with(model: Any, flavour: str) -> list[tuple[str, Any]]:
    """(argument name, shapes) of the call that built a subclassed model: Keras 3 records the shapes, tf_keras the
    tensor specs. A nested argument (a dict of inputs) keeps its structure."""
    names = [name for name in inspect.signature(model.call).parameters if name not in {"training", "mask"}]
    if flavour == "tf_keras":
        spec = model.save_spec(dynamic_batch=True)
        return [] if spec is None else [(names[index], leaf) for index, leaf in enumerate(spec[0])]
    config = model.get_build_config() or {}
    if "input_shape" in config:
        return [(names[0] if names else "input", config["input_shape"])]
    return [(key.removesuffix("_shape"), value) for key, value in (config.get("shapes_dict") or {}).items()]


def _symbolic(module: Any, name: str, leaf: Any, dtypes: dict[str, str], default: str) -> Any:
    """keras.Input for each tensor of one call argument: a shape (Keras 3) or a TensorSpec (tf_keras) per tensor,
    named by the argument, by a dict's keys, or numbered in a list."""
    if isinstance(leaf, dict):
        return {key: _symbolic(module, str(key), value, dtypes, default) for key, value in leaf.items()}
    shape = getattr(leaf, "shape", leaf)
    if isinstance(shape, list | tuple) and shape and not all(d is None or isinstance(d, int) for d in shape):
        return [_symbolic(module, f"{name}_{i}", value, dtypes, default) for i, value in enumerate(shape)]
    dims = tuple(None if d is None else int(d) for d in (shape.as_list() if hasattr(shape, "as_list") else shape))
    dtype = getattr(getattr(leaf, "dtype", None), "name", None) or dtypes.get(name, default)
    return module.Input(shape=dims[1:], dtype=dtype, name=name)


# --- TF checkpoints -------------------------------------------------------------------------------


def _restore_checkpoint(model: Any, weights: WeightsFile, allow_partial: bool, work: Path) -> Restore:
    tf = import_tensorflow()
    prefix = str(weights.path)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as error:  # DataLossError, NotFoundError... for a broken checkpoint
        raise ModelError(f"{prefix}: cannot read the checkpoint: {first_line(error, 300)}") from None
    with captured_native_output():
        tf.train.Checkpoint(root=model).write(str(work / "own"))
    own_reader = tf.train.load_checkpoint(str(work / "own"))
    own_names = checkpoint_full_names(own_reader)
    own = _variable_shapes(own_reader, order=list(own_names))
    saved_all = _variable_shapes(reader, keep_bookkeeping=True)
    attach = _attachment(own, saved_all, checkpoint_root_children(reader))
    saved = {key: shape for key, shape in _under(saved_all, attach).items() if not _is_bookkeeping(key)}
    names = {key: checkpoint_full_names(reader).get(_join(attach, key), key) for key in saved}
    restore = _match(own, saved, own_names, names, where=f"{prefix}: the checkpoint")
    restore.ignored, restore.attached_as = len(saved_all) - len(saved), attach or "(root)"
    _refuse_partial(restore, prefix, allow_partial, len(own))
    try:
        with captured_native_output():
            status = tf.train.Checkpoint(**{attach or "root": model}).read(prefix)
            if not restore.not_restored and not restore.unused:
                status.assert_existing_objects_matched()
            status.expect_partial()
    except Exception as error:  # TF's own check, should ours have missed something
        raise ModelError(f"{prefix}: cannot restore the checkpoint into the model: {first_line(error, 300)}") from None
    return restore


def _variable_shapes(
    reader: Any, order: list[str] | None = None, keep_bookkeeping: bool = False
) -> dict[str, list[int]]:
    shapes = {key: list(shape) for key, shape in reader.get_variable_to_shape_map().items()}
    shapes.pop("_CHECKPOINTABLE_OBJECT_GRAPH", None)
    first = [key for key in (order or []) if key in shapes]
    ordered = first + sorted(set(shapes) - set(first))
    return {key: shapes[key] for key in ordered if keep_bookkeeping or not _is_bookkeeping(key)}


def _is_bookkeeping(key: str) -> bool:
    """Optimizer state and save counters: saved beside the weights, never part of the model."""
    return key.split("/")[0] in _BOOKKEEPING


def _attachment(own: dict[str, list[int]], saved: dict[str, list[int]], children: list[str]) -> str | None:
    """Where the model sits: `Checkpoint(model=m)` saves it under `model/`, tf_keras `save_weights` at the root."""
    candidates: list[str | None] = [None, *children]
    return max(candidates, key=lambda name: sum(_join(name, key) in saved for key in own))


def _under(saved: dict[str, list[int]], attach: str | None) -> dict[str, list[int]]:
    if attach is None:
        return saved
    return {key.removeprefix(f"{attach}/"): shape for key, shape in saved.items() if key.startswith(f"{attach}/")}


def _join(attach: str | None, key: str) -> str:
    return key if attach is None else f"{attach}/{key}"


# --- HDF5 weights ---------------------------------------------------------------------------------


def _restore_h5(model: Any, flavour: str, weights: WeightsFile, allow_partial: bool, work: Path) -> Restore:
    layout = h5_layout(weights.path)
    if layout == "keras3":
        if flavour != "keras3":
            raise ModelError(
                f"{weights.path}: Keras 3 .weights.h5 layout, but the builder returned a tf_keras model; "
                "build the model with Keras 3 (import keras)"
            )
        return _restore_keras3_h5(model, weights.path, allow_partial, work)
    if layout in {"legacy", "model"}:
        return _restore_legacy_h5(model, weights.path, work)
    raise ModelError(f"{weights.path}: no Keras weights in this HDF5 file (neither .weights.h5 nor legacy layout)")


def _restore_keras3_h5(model: Any, path: Path, allow_partial: bool, work: Path) -> Restore:
    import h5py

    own_path = work / "own.weights.h5"
    model.save_weights(own_path)
    own, own_names = _h5_shapes(own_path, model)
    saved_all, saved_names = _h5_shapes(path, None)
    saved = {key: shape for key, shape in saved_all.items() if not _is_bookkeeping(key)}
    restore = _match(own, saved, own_names, saved_names, where=f"{path}: the weights file")
    restore.ignored = len(saved_all) - len(saved)  # optimizer state that ModelCheckpoint keeps beside the weights
    _refuse_partial(restore, str(path), allow_partial, len(own))
    source = path
    if restore.not_restored or restore.unused:  # load what fits: the model's own file, overwritten where it fits
        with h5py.File(own_path, "r+") as merged, h5py.File(path, "r") as given:
            for key in own:
                if key in saved:
                    merged[key][...] = given[key][...]
        source = own_path
    _load_weights(model, source)
    return restore


def _h5_shapes(path: Path, model: Any) -> tuple[dict[str, list[int]], dict[str, str]]:
    """array path → shape, and array path → a readable name (`logits/kernel`, else `logits[0]`)."""
    shapes, names = {}, {}
    for array in h5_arrays(path):
        key, layer = array["key"], array["layer"]
        shapes[key] = array["shape"]
        names[key] = _variable_path(model, layer, key.rsplit("/", 1)[-1])
    return shapes, names


def _variable_path(model: Any, layer: str, index: str) -> str:
    if model is not None and index.isdigit():
        try:
            variables = model.get_layer(layer).weights
            # A subclassed model's paths start with its name, which Keras numbers per process (`net_3`).
            return str(variables[int(index)].path).removeprefix(f"{model.name}/")
        except (ValueError, IndexError, AttributeError):
            pass
    return f"{layer}[{index}]"


def _restore_legacy_h5(model: Any, path: Path, work: Path) -> Restore:
    """Legacy `.h5` weights load layer by layer, in order, so they must match layer for layer."""
    saved = _legacy_layers(path)
    own = [(layer.name, [(w.name, list(w.shape)) for w in layer.weights]) for layer in model.layers if layer.weights]
    for index, ((own_layer, own_weights), (saved_layer, saved_weights)) in enumerate(zip(own, saved, strict=False)):
        own_shapes, saved_shapes = [s for _, s in own_weights], [s for _, s in saved_weights]
        if own_shapes != saved_shapes:
            raise ModelError(
                f"{path}: the weights file does not fit the model: layer #{index} {own_layer!r} has weights "
                f"{_shapes(own_weights)} in the model, but the file's layer {saved_layer!r} has "
                f"{_shapes(saved_weights)}"
            )
    if len(own) != len(saved):
        more = "the file" if len(saved) > len(own) else "the model"
        extra = (saved if len(saved) > len(own) else own)[min(len(own), len(saved))][0]
        raise ModelError(
            f"{path}: the weights file does not fit the model: the model has {len(own)} layers with weights, "
            f"the file {len(saved)} ({more} has {extra!r} beyond the other); legacy .h5 weights load layer by "
            "layer and cannot be restored in part (allow_partial applies to .weights.h5 and checkpoints)"
        )
    loadable = path
    if path.name.lower().endswith(".weights.h5"):  # Keras 3 reads that suffix as its own layout
        loadable = work / "legacy.h5"
        loadable.symlink_to(path)
    _load_weights(model, loadable)
    return Restore(restored=sum(len(weights) for _, weights in own))


def _legacy_layers(path: Path) -> list[tuple[str, list[tuple[str, list[int]]]]]:
    import h5py

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    with h5py.File(path, "r") as handle:
        group = handle.get("model_weights", handle)
        layers = []
        for layer in map(text, group.attrs["layer_names"]):
            names = [text(name) for name in group[layer].attrs.get("weight_names", [])]
            if names:
                layers.append((layer, [(name, list(group[layer][name].shape)) for name in names]))
    return layers


def _shapes(weights: list[tuple[str, list[int]]]) -> str:
    return ", ".join(f"{name.split('/')[-1].split(':')[0]} {shape}" for name, shape in weights) or "none"


def _load_weights(model: Any, path: Path) -> None:
    try:
        with captured_native_output(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.load_weights(str(path))
    except Exception as error:  # Keras' own check, should ours have missed something
        raise ModelError(f"{path}: cannot load the weights into the model: {first_line(error, 300)}") from None


# --- shared ---------------------------------------------------------------------------------------


def _match(
    own: dict[str, list[int]],
    saved: dict[str, list[int]],
    own_names: dict[str, str],
    saved_names: dict[str, str],
    where: str,
) -> Restore:
    """Compare the model's variables with the saved values by key; a shape that differs is never partial."""
    for key, shape in own.items():
        if key in saved and saved[key] != shape:
            place = key.removesuffix("/.ATTRIBUTES/VARIABLE_VALUE")
            raise ModelError(
                f"{where} does not fit the model: variable '{own_names.get(key, key)}' is {shape} in the model, "
                f"but the saved '{saved_names.get(key, key)}' at {place} is {saved[key]}"
            )
    restored = [key for key in own if key in saved]
    if not restored:
        raise ModelError(f"{where} has nothing the model can use: {_unmatched(own, saved, own_names, saved_names)}")
    return Restore(
        restored=len(restored),
        not_restored=[own_names.get(key, key) for key in own if key not in saved],
        unused=[saved_names.get(key, key) for key in saved if key not in own],
    )


def _unmatched(
    own: dict[str, list[int]], saved: dict[str, list[int]], own_names: dict[str, str], saved_names: dict[str, str]
) -> str:
    """Why no saved value fits: the first variables of each side by side, each with its shape and where it is kept
    (a name alone can read the same on both sides: `conv1[0]` kept under `layers/conv2d` or under `conv1`)."""
    left = [_cell(key, own_names, own) for key in own]
    right = [_cell(key, saved_names, saved) for key in saved]
    header = f"model ({len(own)} variables)"
    width = max(len(text) for text in [header, *left[:_SIDE_BY_SIDE]])
    rows = [
        f"  {a:<{width}}  |  {b}"
        for a, b in itertools.zip_longest(left[:_SIDE_BY_SIDE], right[:_SIDE_BY_SIDE], fillvalue="-")
    ]
    counts = (("model", len(own) - _SIDE_BY_SIDE), ("file", len(saved) - _SIDE_BY_SIDE))
    rest = [f"{count} more in the {side}" for side, count in counts if count > 0]
    more = [f"  ... and {' and '.join(rest)}"] if rest else []
    same = sorted(map(tuple, own.values())) == sorted(map(tuple, saved.values()))
    why = (
        "the shapes match one for one, so the same layers were saved from a model that keeps them under other "
        "paths (saved by another Keras: tf_keras vs Keras 3; a Sequential or functional model's layers vs a "
        "subclassed model's attributes; another nesting); save the weights from the model the builder returns, "
        "or make the builder build the model that saved them"
        if same
        else "saved by another Keras (tf_keras vs Keras 3) or from another architecture?"
    )
    table = [f"  {header:<{width}}  |  file ({len(saved)} values)", *rows]
    return "\n".join([f"no saved value is kept where a variable of the model is; {why}", *table, *more])


def _cell(key: str, names: dict[str, str], shapes: dict[str, list[int]]) -> str:
    name, place = names.get(key, key), key.removesuffix("/.ATTRIBUTES/VARIABLE_VALUE")
    return f"{name} {shapes[key]}" + ("" if place == name else f" at {place}")


def _refuse_partial(restore: Restore, where: str, allow_partial: bool, total: int) -> None:
    if allow_partial or not (restore.not_restored or restore.unused):
        return
    parts = []
    if restore.not_restored:
        parts.append(
            f"{len(restore.not_restored)} of the model's {total} variables have no saved value "
            f"({', '.join(restore.not_restored[:5])})"
        )
    if restore.unused:
        parts.append(f"{len(restore.unused)} saved values fit no variable ({', '.join(restore.unused[:5])})")
    raise ModelError(f"{where}: partial restore refused: {'; '.join(parts)}; set source.allow_partial: true to accept")
