"""`edgeport init`: a starter recipe for a model, written so that `edgeport run` takes it to a verdict as it is.

Inspects the model (its kind, inputs and outputs), maps its inputs to the keys of an npz when one is given (else
seeded random data of the inputs' shapes and dtypes), lists the usual outputs with the default gates their stages
give, and writes the recipe as commented YAML text. The text is checked by the loader `run` uses, and the data by the
checks `run` makes, before the file is renamed into place: a recipe init writes is never half written or invalid.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import textwrap
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pipeline import __version__
from pipeline.artifacts import write_text_atomic
from pipeline.core.stored import regular_file_problem
from pipeline.core.tensors import TensorSpec
from pipeline.core.text import one_line
from pipeline.data import Dataset, label_outputs, load_dataset
from pipeline.errors import DataError, EdgeportError, ModelError, RecipeError, first_line
from pipeline.frameworks import import_tensorflow
from pipeline.recipe import NAME_PATTERN, RESERVED_NAMES, DataSpec, load_recipe
from pipeline.sources import graphdef, load_source
from pipeline.sources.tf1 import Tf1Origin, describe_tf1_graph, load_tf1_source
from pipeline.stages import STAGES

# (output, stage kind, stage options, what it is): the files most deployments weigh first. Gates are not listed here:
# each output gets its stage's own `default_gates`, the thresholds `run` applies to an output without gates.
OUTPUTS: tuple[tuple[str, str, dict[str, Any], str], ...] = (
    ("fp32", "tflite", {}, "TFLite, float32: the conversion alone"),
    ("float16", "tflite", {"quantize": "float16"}, "TFLite, float16 weights: half the size; what GPU delegates run"),
    (
        "int8",
        "tflite",
        {"quantize": "int8"},
        "TFLite, int8 calibrated on data.calibration (io: int8 too for integer-only devices)",
    ),
    ("onnx", "onnx", {}, "ONNX, float32 (opset 17)"),
    ("onnx-int8", "onnx", {"quantize": "static"}, "ONNX, static int8 (QDQ) calibrated on data.calibration"),
)
CALIBRATION_SAMPLES = 200  # int8 ranges settle well before this; more only slows each int8 conversion
RANDOM_SAMPLES = 64
# Words that mark an npz key as one split of the data: `x_train` calibrates, `x_test` is evaluated.
ROLE_WORDS = {
    "calibration": frozenset({"train", "training", "calib", "calibration", "cal", "fit"}),
    "evaluation": frozenset({"test", "testing", "eval", "evaluation", "val", "valid", "validation", "holdout"}),
}
LABEL_NAMES = frozenset(
    {"y", "label", "labels", "target", "targets", "class", "classes", "class_id", "class_ids", "category"}
)
# TF1 scalar switches a frozen graph may still need, and their inference values: (dtype, word in the name, value).
SWITCHES: tuple[tuple[str, str, bool | float], ...] = (
    ("bool", "train", False),
    ("float32", "keep", 1.0),
    ("float32", "dropout", 0.0),
)


@dataclass(frozen=True)
class InitRequest:
    """What `edgeport init` was asked for (paths as the user gave them)."""

    model: Path
    out: Path = Path("recipe.yaml")
    data: Path | None = None
    force: bool = False
    trusted: bool = False
    imports: tuple[str, ...] = ()
    signature: str = "serving_default"
    graph_outputs: tuple[str, ...] = ()

    def command(self) -> str:
        """The command line, as the recipe's header quotes it."""
        parts = ["edgeport init", self.model.as_posix()]
        parts += [f"--data {self.data.as_posix()}"] if self.data else []
        parts += [f"--out {self.out.as_posix()}"] if self.out != Path("recipe.yaml") else []
        parts += ["--trust-model"] if self.trusted else []
        parts += [f"--import {module}" for module in self.imports]
        parts += [f"--signature {self.signature}"] if self.signature != "serving_default" else []
        parts += [f"--graph-outputs {' '.join(self.graph_outputs)}"] if self.graph_outputs else []
        return " ".join(parts)


@dataclass
class Inspected:
    """What init learned from the model: the recipe's source section (paths absolute until written) and tensors."""

    label: str
    source: dict[str, Any]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    notes: list[str] = field(default_factory=list)  # comments above the source line


@dataclass
class Section:
    """One data section: its DataSpec document (an npz path absolute until written) and the comments above it."""

    document: dict[str, Any]
    comments: list[str] = field(default_factory=list)
    summary: str = ""
    notes: list[str] = field(default_factory=list)  # what the user must know: printed, and a NOTE in the file

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.comments.append(f"NOTE: {text}")


@dataclass
class Written:
    """What init wrote, for the command to print."""

    path: Path
    name: str
    label: str
    outputs: list[str]
    data: list[str]
    notes: list[str]


def init_recipe(request: InitRequest) -> Written:
    """Inspect the model, plan its data and outputs, and write the recipe; every problem is an EdgeportError."""
    out = request.out
    _check_target(request)
    inspected = inspect_model(request)
    if request.data is not None:
        sections = npz_sections(request.data, inspected.inputs, inspected.outputs)
    else:
        sections = random_sections(request.model, inspected.inputs)
    name = recipe_name(request.model)
    text = render(request, name, inspected, sections, out.resolve().parent)
    if out.exists() and not request.force:  # checked again: the model took seconds to load
        raise EdgeportError(f"{out} exists; pass --force to overwrite it")
    write_checked(out, text)
    return Written(
        path=out,
        name=name,
        label=inspected.label,
        outputs=[output for output, *_ in OUTPUTS],
        data=[f"data.{role}: {section.summary}" for role, section in sections.items()],
        notes=[*inspected.notes, *(note for section in sections.values() for note in section.notes)],
    )


def _check_target(request: InitRequest) -> None:
    """Before the model loads (seconds): the recipe file may not clobber anything it should not."""
    out = request.out
    if out.is_dir():
        raise EdgeportError(f"--out {out} is a folder; name the recipe file (e.g. {out / 'recipe.yaml'})")
    if out.exists() and not request.force:
        raise EdgeportError(f"{out} exists; pass --force to overwrite it")
    for given in (request.model, request.data):
        if given is not None and given.exists() and out.resolve() == given.resolve():
            raise EdgeportError(f"--out {out} is the model or data file itself; name another file")


# --- the model -------------------------------------------------------------------------------------


def inspect_model(request: InitRequest) -> Inspected:
    """Load the model as `run` will (untrusted unless --trust-model) and read its tensors."""
    model = request.model
    if model.name == "saved_model.pb" and model.is_file():  # the SavedModel's graph file named for its folder
        model = model.parent
    if model.is_file() and model.suffix.lower() == ".pb":
        return inspect_graph(model, request)
    if request.graph_outputs:
        raise EdgeportError("--graph-outputs names tensors of a TF1 frozen graph (.pb)")
    if model.suffix.lower() == ".meta" or model.with_name(model.name + ".index").is_file():
        raise ModelError(
            f"{model}: a TF1 checkpoint; init takes a .keras, .h5, SavedModel or frozen .pb (write the source "
            "by hand: docs/recipes.md, 'Sources from TensorFlow 1')"
        )
    source = load_source(model, request.signature, request.trusted, base_dir=Path.cwd())
    document: dict[str, Any] = {"path": model.resolve()}
    if source.format == "savedmodel":
        label = f"SavedModel, signature {request.signature}"
        if request.signature != "serving_default":
            document["signature"] = request.signature
    else:
        label = f"{source.format} ({source.artifact.flavour})"
    document.update(_trust(request))
    return Inspected(label, document, list(source.inputs), list(source.outputs))


def _trust(request: InitRequest) -> dict[str, Any]:
    """`trusted` only when the user trusted the model here: a recipe must not grant trust nobody gave."""
    if not request.trusted:
        return {}
    return {"trusted": True, **({"imports": list(request.imports)} if request.imports else {})}


def inspect_graph(path: Path, request: InitRequest) -> Inspected:
    """A TF1 frozen graph: its one likely output (or --graph-outputs), the placeholders that output needs as
    inputs, and the scalar switches it needs fed (is_training, keep_prob) where their names tell the inference
    value. Anything init cannot decide is exit 2 naming what to fill in."""
    described = describe_tf1_graph(path, request.trusted)  # a ModelError: no GraphDef, or refused untrusted
    outputs = list(request.graph_outputs) or list(described["likely_outputs"])
    if len(outputs) != 1 and not request.graph_outputs:
        shown = ", ".join(outputs[:12]) or "none found"
        raise ModelError(
            f"{path}: cannot tell the graph's output (likely outputs: {shown}); name it: "
            f"edgeport init {path.as_posix()} --graph-outputs NAME"
        )
    tf = import_tensorflow()
    graph_def = tf.compat.v1.GraphDef.FromString(path.read_bytes())
    needed = graphdef.upstream(graph_def, outputs)
    feeds: dict[str, bool | float] = {}
    notes = []
    for placeholder in graphdef.placeholders(graph_def):
        if placeholder.name not in needed or placeholder.has_default or placeholder.shape != ():
            continue
        value = _switch_value(placeholder.name, placeholder.dtype)
        if value is None:
            raise ModelError(
                f"{path}: output {outputs[0]} needs the scalar placeholder {placeholder.name} ({placeholder.dtype}) "
                "and init cannot tell what to feed it; write the source by hand: source: {graph: "
                f"{path.name}, outputs: [{', '.join(outputs)}], feeds: {{{placeholder.name}: VALUE}}}}"
            )
        feeds[placeholder.name] = value
        notes.append(f"feeds {placeholder.name}: {_flow(value)} is guessed from its name (inference); check it")
    # A switch with a default that keeps the graph training (training: True, keep_prob: 0.5) is fed its inference
    # value too: unfed, the reference would run with batch statistics and dropout.
    for switch in graphdef.training_switches(path.read_bytes(), meta=False, outputs=outputs):
        feeds[switch.name] = False if isinstance(switch.default, bool) else 1.0
        notes.append(f"feeds {switch.name}: {_flow(feeds[switch.name])}: its default keeps the model training")
    origin = Tf1Origin("graph", path.resolve(), outputs=tuple(outputs), feeds=feeds)
    source = load_tf1_source(origin, trusted=request.trusted)
    original = source.extra.get("tensor_names", {})  # file-safe names back to the graph's
    document: dict[str, Any] = {
        "graph": path.resolve(),
        "inputs": [original.get(spec.name, spec.name) for spec in source.inputs],
        "outputs": outputs,
        **({"feeds": feeds} if feeds else {}),
        **_trust(request),
    }
    return Inspected("TF1 frozen graph", document, list(source.inputs), list(source.outputs), notes)


def _switch_value(name: str, dtype: str) -> bool | float | None:
    words = name.lower()
    return next((value for kind, word, value in SWITCHES if dtype == kind and word in words), None)


# --- the data --------------------------------------------------------------------------------------


def random_sections(model: Path, inputs: list[TensorSpec]) -> dict[str, Section]:
    """Seeded random inputs, calibration on another seed than evaluation (held-out samples). Random data needs
    fixed shapes and numeric dtypes; an integer input gets 0 and 1, valid ids for any vocabulary."""
    notes = []
    for spec in inputs:
        if any(d is None for d in spec.shape[1:]):
            raise DataError(
                f"{model}: input {spec.describe()} has free dimensions besides the batch, which random data cannot "
                "fill; give --data FILE.npz with samples of the sizes you deploy"
            )
        try:
            dtype = np.dtype(spec.dtype)
        except TypeError:
            dtype = np.dtype(object)
        if dtype.kind not in "fiub":
            raise DataError(f"{model}: input {spec.describe()} is not numeric; random data cannot feed it: give --data")
        if dtype.kind in "iu":
            notes.append(
                f"input {spec.name} is {spec.dtype}: random values are 0 and 1 (valid ids for any vocabulary, but "
                "they exercise little of it); raise `high` to the largest valid id, or give real data"
            )
    calibration = Section({"random": {"samples": RANDOM_SAMPLES, "seed": 1, "low": 0.0, "high": 1.0}})
    calibration.note(
        "the data is seeded random: it runs, but proves little (int8 calibrated on random inputs learns wrong "
        "ranges); replace it with real samples (edgeport init MODEL --data FILE.npz)"
    )
    calibration.comments += [
        "Real samples look like this (held-out samples for evaluation, labels for accuracy):",
        "  calibration: {npz: data.npz, inputs: x_train, limit: 200}",
        "  evaluation: {npz: data.npz, inputs: x_test, labels: y_test}",
    ]
    for note in notes:
        calibration.note(note)
    calibration.comments.append("calibration: another seed than evaluation, so the gates judge unseen samples")
    evaluation = Section({"random": {"samples": RANDOM_SAMPLES, "seed": 0, "low": 0.0, "high": 1.0}})
    calibration.summary = f"{RANDOM_SAMPLES} random samples, seed 1"
    evaluation.summary = f"{RANDOM_SAMPLES} random samples, seed 0"
    return {"calibration": calibration, "evaluation": evaluation}


def npz_sections(file: Path, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> dict[str, Section]:
    """Each model input mapped to an npz key for calibration and for evaluation (`x_train` / `x_test` where the
    file splits them), the evaluation labels when a key holds them, all checked as `run` checks them."""
    members = npz_members(file)
    picked = {role: _pick_inputs(file, role, inputs, members) for role in ("evaluation", "calibration")}
    evaluation_keys, calibration_keys = picked["evaluation"][0], picked["calibration"][0]
    samples = {role: members[next(iter(keys.values()))][0][0] for role, (keys, _) in picked.items()}
    absolute = file.resolve()
    evaluation = Section({"npz": absolute, "inputs": _inputs_field(evaluation_keys)}, picked["evaluation"][1])
    calibration = Section({"npz": absolute, "inputs": _inputs_field(calibration_keys)}, picked["calibration"][1])
    available = samples["calibration"]
    if calibration_keys == evaluation_keys:
        # One set of samples for both: calibrate on its first half at most, so that some judged samples are unseen.
        limit = max(1, min(CALIBRATION_SAMPLES, available // 2))
        calibration.document["limit"] = limit
        calibration.note(
            f"{', '.join(sorted(set(calibration_keys.values())))} is the evaluation data too: its first {limit} "
            f"of {available} samples calibrate and are also judged, so the verdict is optimistic (the report warns); "
            "give held-out samples (e.g. x_train / x_test in the npz)"
        )
    elif available > CALIBRATION_SAMPLES:
        calibration.document["limit"] = limit = CALIBRATION_SAMPLES
        calibration.comments.append(f"int8 ranges settle on {limit} samples; more only slows each int8 conversion")
    else:
        limit = available
    _check_inputs(file, {"calibration": calibration, "evaluation": evaluation}, inputs)
    label = _label_key(members, samples["evaluation"], set(evaluation_keys.values()))
    if label is not None:
        _add_labels(file, evaluation, label, outputs)
    else:
        evaluation.comments.append(
            "no labels found (an integer key such as y_test, one class id a sample): add `labels: KEY` to measure "
            "accuracy"
        )
    calibration.summary = _summary(file, calibration_keys, limit)
    evaluation.summary = _summary(file, evaluation_keys, samples["evaluation"], evaluation.document.get("labels"))
    return {"calibration": calibration, "evaluation": evaluation}


def _summary(file: Path, keys: dict[str, str], samples: int, labels: str | None = None) -> str:
    shown = ", ".join(keys.values())
    return f"{file.name}[{shown}], {samples} samples" + (f", labels {labels}" if labels else "")


def _inputs_field(keys: dict[str, str]) -> str | dict[str, str]:
    """One input: the key alone (`inputs: x_test`); several: `{model input name: key}`."""
    return next(iter(keys.values())) if len(keys) == 1 else keys


def npz_members(file: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array's shape and dtype from its header: the arrays themselves are not read (they may be gigabytes)."""
    problem = regular_file_problem(file) if file.exists() else "not there"
    if problem is not None:
        raise DataError(f"--data {file}: {problem}; expected an .npz file")
    members: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(file) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as stream:
                    version = np.lib.format.read_magic(stream)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else _header_2_0
                    shape, _, dtype = read(stream)
                members[info.filename.removesuffix(".npy")] = (tuple(shape), dtype)
    except Exception as error:  # zipfile and numpy raise several kinds for a file that is no npz
        raise DataError(f"--data {file}: not a readable .npz ({first_line(error, 200)})") from None
    if not members:
        raise DataError(f"--data {file}: the .npz holds no arrays")
    return members


def _header_2_0(stream: Any) -> Any:
    return np.lib.format.read_array_header_2_0(stream)


def _tokens(key: str) -> list[str]:
    return [token for token in re.split(r"[^a-z0-9]+", key.lower()) if token]


def _role_of(key: str) -> str | None:
    tokens = set(_tokens(key))
    return next((role for role, words in ROLE_WORDS.items() if tokens & words), None)


def _base(key: str) -> str:
    """The key without its split words: `x_train` → `x`, `test_labels` → `labels`."""
    every = ROLE_WORDS["calibration"] | ROLE_WORDS["evaluation"]
    return "_".join(token for token in _tokens(key) if token not in every)


def _fits(spec: TensorSpec, shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """The array can feed the input as `run` checks it: rank, fixed dimensions, and no floats into integers."""
    if len(shape) != len(spec.shape) or not shape or dtype.kind not in "fiub":
        return False
    if any(want is not None and want != got for want, got in zip(spec.shape[1:], shape[1:], strict=True)):
        return False
    try:
        wanted = np.dtype(spec.dtype)
    except TypeError:
        return False
    return not (wanted.kind in "iu" and dtype.kind == "f")


def _pick_inputs(
    file: Path, role: str, inputs: list[TensorSpec], members: dict[str, tuple[tuple[int, ...], np.dtype]]
) -> tuple[dict[str, str], list[str]]:
    """Per model input, the key that fits it best for this role: named after the input, then not label-like, then
    of this split (`_test` for evaluation), then of the input's dtype kind; ties go to the file's order and the
    others are listed in a comment. No key that fits is exit 2 naming the input and the keys."""
    chosen: dict[str, str] = {}
    comments = []
    for spec in inputs:
        fitting = [k for k, (s, d) in members.items() if k not in chosen.values() and _fits(spec, s, d)]
        if not fitting:
            keys = ", ".join(f"{k} {list(s)} {d}" for k, (s, d) in members.items())
            raise DataError(
                f"--data {file}: no array fits input {spec.describe()} (the npz has {keys}); expected "
                f"[N, {', '.join('?' if d is None else str(d) for d in spec.shape[1:])}] of numbers"
            )

        def score(key: str, spec: TensorSpec = spec) -> tuple[int, int, int, int]:
            named = spec.name.lower() in {key.lower(), _base(key)}
            role_of = _role_of(key)
            split = 1 if role_of == role else (0 if role_of is None else -1)
            same_kind = members[key][1].kind == np.dtype(spec.dtype).kind
            return (int(named), int(_base(key) not in LABEL_NAMES), split, int(same_kind))

        best = max(score(key) for key in fitting)
        top = [key for key in fitting if score(key) == best]
        chosen[spec.name] = top[0]
        if len(top) > 1:
            comments.append(f"input {spec.name}: {top[0]} chosen; {', '.join(top[1:])} fit as well")
    return chosen, comments


def _label_key(members: dict[str, tuple[tuple[int, ...], np.dtype]], samples: int, used: set[str]) -> str | None:
    """An integer key named like labels (y, labels, y_test…) with one value per evaluation sample; the evaluation
    split's first."""
    candidates = [
        key
        for key, (shape, dtype) in members.items()
        if key not in used and len(shape) == 1 and shape[0] == samples and dtype.kind in "iu"
        if _base(key) in LABEL_NAMES
    ]
    candidates.sort(key=lambda key: _role_of(key) != "evaluation")  # stable: the file's order otherwise
    return candidates[0] if candidates else None


def _check_inputs(file: Path, sections: dict[str, Section], inputs: list[TensorSpec]) -> None:
    """What `run` checks before any stage (shapes, dtypes, NaN/Inf, lossless casts), now rather than then."""
    for role, section in sections.items():
        try:
            document = {key: str(v) if isinstance(v, Path) else v for key, v in section.document.items()}
            spec = DataSpec.model_validate(document)
            load_dataset(role, spec, Path.cwd(), inputs)
        except DataError as error:
            raise DataError(f"--data {file}: {error}") from None


def _add_labels(file: Path, evaluation: Section, key: str, outputs: list[TensorSpec]) -> None:
    """Labels that are classes of exactly one output go in; others are left out with the reason as a comment
    (a recipe that runs matters more than one that measures accuracy)."""
    shapes = [(spec.name, tuple(spec.shape[1:])) for spec in outputs]
    try:
        with np.load(file, allow_pickle=False) as archive:
            labels = np.asarray(archive[key])
        dataset = Dataset(section="evaluation", origin=file.name, inputs={}, labels=labels, labels_key=key)
        label_outputs(dataset, shapes, "data.evaluation")
    except Exception as error:  # numpy's several kinds for a corrupt member; label_outputs' DataError
        evaluation.note(f"key {key!r} looks like labels but is left out: {first_line(error, 300)}")
        return
    if dataset.labelled_output is None:
        evaluation.note(
            f"key {key!r} looks like labels but is left out: no output is shaped [batch, classes] with a column "
            "for each of its values"
        )
        return
    evaluation.document["labels"] = key
    evaluation.comments.append(
        f"labels {key} are classes of output {dataset.labelled_output}: accuracy and accuracy_drop are measured; "
        "gate them too where they matter (e.g. accuracy_drop: 0.02)"
    )


# --- the recipe text -------------------------------------------------------------------------------


def recipe_name(model: Path) -> str:
    """The model's name as a recipe name (it becomes the default output folder artifacts/<name>/)."""
    stem = model.parent.name if model.name == "saved_model.pb" else (model.stem or model.resolve().name)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:64] or "model"
    if not re.fullmatch(NAME_PATTERN, name) or name.lower() in RESERVED_NAMES:
        name = f"model-{name}"[:64]
    return name


def _flow(value: Any) -> str:
    """A value as one line of YAML (flow style, quoted where YAML would misread it: `'yes'`, `1.0e-05`)."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1 << 30, allow_unicode=True)
    return text.removesuffix("\n...\n").strip()


def _relative(document: dict[str, Any], base: Path) -> dict[str, Any]:
    """Paths are written relative to the recipe's folder, which is what `run` resolves them against."""
    return {key: Path(os.path.relpath(v, base)).as_posix() if isinstance(v, Path) else v for key, v in document.items()}


def _tensor_lines(role: str, specs: list[TensorSpec]) -> list[str]:
    shown = [f"#   {role:<6} {one_line(spec.describe())}" for spec in specs[:8]]
    return shown + ([f"#   ... and {len(specs) - 8} more {role}s"] if len(specs) > 8 else [])


def _comments(lines: list[str], indent: str) -> list[str]:
    """Comment lines wrapped to the house's 120 columns; a line that starts with spaces is an example, kept whole.
    Names in them come from the model: a newline would end the comment and start live YAML (`version: 9`), and YAML
    refuses a file with ESC or NUL in it anywhere, so each line is escaped first."""
    wrapped = []
    for line in map(one_line, lines):
        if line.startswith(" "):
            wrapped.append(f"{indent}# {line}")
            continue
        prefix = f"{indent}# "
        wrapped += textwrap.wrap(line, 118, initial_indent=prefix, subsequent_indent=prefix + "  ")
    return wrapped


def render(request: InitRequest, name: str, inspected: Inspected, sections: dict[str, Section], base: Path) -> str:
    """The recipe as commented YAML: written as text, since a YAML dump loses comments."""
    source = _relative(inspected.source, base)
    out = one_line(request.out.as_posix())  # the comments' names are escaped as `_comments` says why
    lines = [
        f"# Starter recipe written by edgeport {__version__}:",
        f"#   {one_line(request.command())}",
        f"# It runs as written: edgeport run {out}",
        f"# Check an edit in a second (no TensorFlow): edgeport validate {out}",
        f"# Model: {one_line(inspected.label)}",
        *_tensor_lines("input", inspected.inputs),
        *_tensor_lines("output", inspected.outputs),
        "# Gates are the defaults each output's last stage gives (docs/gates-and-metrics.md, 'Default gates'); set",
        "# them to what your release needs. Paths are relative to this file.",
        f"name: {_flow(name)}",
        *_comments([f"NOTE: {note}" for note in inspected.notes], ""),
        f"source: {_flow(source['path'] if list(source) == ['path'] else source)}",
        "data:",
    ]
    for role, section in sections.items():
        lines += _comments(section.comments, "  ")
        lines.append(f"  {role}: {_flow(_relative(section.document, base))}")
    lines.append("outputs:")
    for output, kind, options, what in OUTPUTS:
        stage = STAGES[kind]
        gates = stage.default_gates(stage.Options(**options))
        lines += [
            f"  # {what}",
            f"  {output}:",
            f"    stages: {_flow([{kind: options} if options else kind])}",
            f"    gates: {_flow(gates)}",
        ]
    return "\n".join(lines) + "\n"


def write_checked(out: Path, text: str) -> None:
    """Validate the text where it will live (relative paths resolve against that folder), then rename it into place.
    A recipe that does not validate is init's own bug: nothing is written, and the error says why."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, scratch = tempfile.mkstemp(dir=out.parent, prefix=".edgeport-init-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        load_recipe(Path(scratch))
    except RecipeError as error:
        problem = str(error).replace(scratch, str(out))
        raise EdgeportError(f"{out}: not written: the recipe init made does not validate (a bug): {problem}") from None
    finally:
        with contextlib.suppress(OSError):
            Path(scratch).unlink()
    write_text_atomic(out, text)
