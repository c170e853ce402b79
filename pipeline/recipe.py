"""The recipe: its pydantic schema, YAML loading with readable errors, and chain type checks.

Imports neither TensorFlow nor any runtime: `edgeport validate` and `schema` must stay fast.
"""

from __future__ import annotations

import difflib
import re
import reprlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from pipeline.core.metric_registry import METRICS, Metric
from pipeline.core.stored import regular_file_problem
from pipeline.errors import RecipeError
from pipeline.sources.checks import check_source_files
from pipeline.stages import STAGES, StageOptions

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# What a run or a batch writes at the top of its output directory: an output or recipe of such a name would be
# a directory where a report goes. pipeline.report.REPORT_FILES and the batch's files (a test holds them in here;
# this module must not import the report writers).
RESERVED_NAMES = frozenset({"report.json", "report.md", "report.html", "junit.xml", "summary.md", "summary.json"})
MAX_RECIPE_BYTES = 1 << 20  # a recipe is a page of YAML; a bigger file is a mistake or an attack
MAX_RECIPE_VALUES = 100_000  # values after YAML aliases are expanded: a 459-byte alias bomb expands to billions
MAX_RECIPE_DEPTH = 64
MAX_PROBLEMS_SHOWN = 10
_EXCERPT = reprlib.Repr()  # Python 3.11's Repr takes no keyword arguments
_EXCERPT.maxstring = _EXCERPT.maxother = 80
_EXCERPT.maxlist = _EXCERPT.maxdict = 4
_EXCERPT.maxlevel = 2
# Deployment targets an output may name: the keys of pipeline.targets.TARGETS (a test holds them equal; this module
# must not import the targets, which load LiteRT).
TargetName = Literal["gpu", "xnnpack", "micro"]
BUILDER_PATTERN = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$"
MODULE_PATTERN = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$"
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"  # semantic versions with their pre-release and build parts


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


TensorShape = list[Annotated[int, Field(ge=1)] | None]
FeedValue = bool | int | float | list[Any]


class SourceSpec(_Strict):
    """A model file or directory (`path`), a function that builds the model plus saved weights, or a TensorFlow 1
    frozen graph (`graph`) or Saver checkpoint (`checkpoint`)."""

    path: str | None = Field(
        None, description="A .keras or .h5 file, or a SavedModel directory (relative to the recipe)."
    )
    signature: str = Field("serving_default", description="SavedModel signature to convert and compare.")
    trusted: bool = Field(
        False, description="Allow models whose loading runs arbitrary code (Lambda layers); required by builder."
    )
    builder: str | None = Field(
        None,
        pattern=BUILDER_PATTERN,
        description="`module.path:function` returning an uncompiled Keras model; the module is found relative "
        "to the recipe's directory first, then sys.path.",
    )
    builder_args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the builder.")
    weights: str | None = Field(
        None,
        description="Weights for the built model: a .weights.h5 or legacy .h5 file, a TF checkpoint prefix, "
        "or a directory (its latest checkpoint).",
    )
    allow_partial: bool = Field(
        False, description="Accept weights that leave model variables unrestored or have values the model lacks."
    )
    imports: list[Annotated[str, StringConstraints(pattern=MODULE_PATTERN)]] = Field(
        default_factory=list,
        max_length=32,
        description="Modules to import before loading (dotted names, found beside the recipe first, then on "
        "sys.path): those that register the model's custom classes. Importing runs code: needs trusted.",
    )
    graph: str | None = Field(None, description="A TensorFlow 1 frozen GraphDef (.pb), relative to the recipe.")
    checkpoint: str | None = Field(
        None,
        description="A TensorFlow 1 Saver checkpoint: its prefix (model.ckpt, beside model.ckpt.meta/.index/"
        ".data-*) or a directory (its latest checkpoint).",
    )
    meta_graph: str | None = Field(None, description="The checkpoint's .meta graph; default: PREFIX.meta.")
    inputs: list[str] | dict[str, TensorShape | None] | None = Field(
        None,
        max_length=64,
        description="TF1 sources: the tensors to feed (`op` or `op:N`), or {name: shape} giving shapes the graph "
        "leaves unknown (null for a free dimension). Default: the meta graph's serving signature, else the "
        "placeholders the outputs need that have no default and no feed.",
    )
    outputs: list[str] | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="TF1 sources: the tensors to fetch. Default: the meta graph's serving signature, else the one "
        "op nothing consumes (validation names the candidates when there are several).",
    )
    feeds: dict[str, FeedValue] = Field(
        default_factory=dict,
        max_length=64,
        description="TF1 sources: placeholders fixed to a constant (is_training: false, keep_prob: 1.0); "
        "placeholders with a default that are not listed keep it.",
    )

    @model_validator(mode="after")
    def _one_origin(self) -> SourceSpec:
        origins = [name for name in ("path", "builder", "graph", "checkpoint") if getattr(self, name) is not None]
        if len(origins) > 1:
            given = " and ".join(origins)
            raise ValueError(f"give one of path, builder (with weights), graph or checkpoint (got {given})")
        if self.builder is None and self.weights is not None:
            raise ValueError("weights go with builder (got weights without builder)")
        if not origins:
            raise ValueError("give path, builder with weights, graph or checkpoint (got none)")
        if self.builder is not None and self.weights is None:
            raise ValueError("give path, or builder with weights (got builder without weights)")
        if self.builder is None and (self.builder_args or self.allow_partial):
            raise ValueError("builder_args and allow_partial go with builder")
        tf1_fields = [name for name in ("meta_graph", "inputs", "outputs", "feeds") if getattr(self, name)]
        if tf1_fields and self.graph is None and self.checkpoint is None:
            raise ValueError(f"{', '.join(tf1_fields)} go with graph or checkpoint (TensorFlow 1 sources)")
        if self.meta_graph is not None and self.checkpoint is None:
            raise ValueError("meta_graph goes with checkpoint")
        overlap = set(self.feeds) & set(self.inputs or [])
        if overlap:
            raise ValueError(f"{sorted(overlap)[0]} is both an input and fed a constant; give it in one of them")
        if self.builder is not None and not self.trusted:
            raise ValueError("the builder is code; set source.trusted: true")
        if self.imports and not self.trusted:
            raise ValueError("imports run the modules' code; set source.trusted: true")
        return self

    @property
    def tf1_kind(self) -> str | None:
        """`graph` or `checkpoint` for a TensorFlow 1 source, else None."""
        return "graph" if self.graph is not None else "checkpoint" if self.checkpoint is not None else None


class RandomSpec(_Strict):
    samples: int = Field(64, ge=1, le=1_000_000, description="How many samples to draw.")
    seed: int = Field(0, description="Seed of the generator: the same seed gives the same samples.")
    low: float = Field(
        0.0, description="Lowest value (inclusive); integer inputs draw whole numbers from floor(low) to floor(high)."
    )
    high: float = Field(
        1.0, description="Highest value: exclusive for floats, inclusive (floored) for integers; must be above low."
    )

    @model_validator(mode="after")
    def _ordered(self) -> RandomSpec:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class LabelsSpec(_Strict):
    """Labels and the model output they belong to."""

    key: str = Field(description="npz key (or, with npy, an .npy file) of integer class labels.")
    output: str | None = Field(
        None,
        description="The source output the labels are classes of; default: the only output whose columns can "
        "hold every label (a run with several stops and asks).",
    )


class DataSpec(_Strict):
    """One data section: arrays from an .npz or .npy file, or seeded random inputs."""

    npz: str | None = Field(None, description="An .npz file (relative to the recipe).")
    npy: str | None = Field(None, description="An .npy file of inputs, for single-input models.")
    random: RandomSpec | None = Field(None, description="Seeded random inputs of the model's shapes and dtypes.")
    inputs: str | dict[str, str] | None = Field(
        None, description="npz key of the inputs, or {model input name: npz key} for several inputs."
    )
    labels: str | LabelsSpec | None = Field(
        None,
        description="npz key (or, with npy, an .npy file) of integer class labels, or {key: KEY, output: NAME} "
        "naming the source output they are classes of.",
    )
    limit: int | None = Field(None, ge=1, description="Use at most this many samples.")
    cast: bool = Field(
        False,
        description="Accept a cast of inputs to the model's dtype that changes values (int64 above 2**24 to "
        "float32, int64 beyond int32, float64 too small for float32 to 0); by default the first such value is "
        "refused. Rounding float64 to float32's precision is not refused; values out of range (to Inf) always are.",
    )

    @property
    def labels_key(self) -> str | None:
        return self.labels.key if isinstance(self.labels, LabelsSpec) else self.labels

    @property
    def labels_output(self) -> str | None:
        return self.labels.output if isinstance(self.labels, LabelsSpec) else None

    @model_validator(mode="after")
    def _one_origin(self) -> DataSpec:
        origins = [name for name in ("npz", "npy", "random") if getattr(self, name) is not None]
        if len(origins) != 1:
            raise ValueError(f"give exactly one of npz, npy, random (got {', '.join(origins) or 'none'})")
        if self.npz is not None and self.inputs is None:
            raise ValueError("npz needs `inputs`: the key of the input array in the file")
        if self.npz is None and self.inputs is not None:
            raise ValueError("`inputs` names keys of an npz file; it goes with npz only")
        if self.random is not None and self.labels is not None:
            raise ValueError("random data has no labels")
        return self


class DataSection(_Strict):
    calibration: DataSpec | None = Field(None, description="Representative inputs for int8 quantization.")
    evaluation: DataSpec | None = Field(
        None, description="Inputs (and labels) for parity; default: 64 random samples in [0, 1]."
    )
    fine_tune: DataSpec | None = Field(None, description="Training inputs and labels for stages that fine-tune.")
    validation: DataSpec | None = Field(
        None,
        description="Held-out inputs (and labels) on which `fallback: auto` chooses its file; default: calibration. "
        "Never the evaluation data: the final gates must judge a choice made on other samples.",
    )


def _metric_field(metric: Metric) -> Any:
    described = f"{metric.direction} {metric.meaning}"
    return (float | None, Field(None, ge=metric.low, le=metric.high, description=described))


class _MetricGatesBase(_Strict):
    def thresholds(self) -> dict[str, float]:
        return {name: value for name, value in self.model_dump().items() if value is not None}


# Pass/fail thresholds, one field a gateable metric of the registry: errors at most the threshold, similarities at
# least (each field's description starts with its direction).
MetricGates = create_model(  # type: ignore[call-overload]
    "MetricGates",
    __base__=_MetricGatesBase,
    __doc__="Pass/fail thresholds. Errors must be at most the threshold; similarities at least.",
    **{name: _metric_field(metric) for name, metric in METRICS.items() if metric.gate},
)


class Gates(MetricGates):  # type: ignore[misc,valid-type]
    """Thresholds for the whole output, and per output tensor: `{max_abs: 1e-4, boxes: {max_abs: 1e-3}}`."""

    tensors: dict[str, MetricGates] = Field(
        default_factory=dict, description="Per-tensor gates; in YAML written as `<tensor name>: {metric: threshold}`."
    )
    reproducible: bool | None = Field(
        None, description="true: build the output's file a second time, cache bypassed; it must come out identical."
    )
    micro_arena_kib: float | None = Field(
        None, gt=0, description="At most this many KiB of TFLite Micro arena (needs `micro` in the output's targets)."
    )
    float32_noise: float | None = Field(
        None,
        ge=1,
        le=100,
        description="An unquantized file's whole-output `max_abs` gate also passes within this many times the source's "
        "own float32 spread (how far its outputs move with every floating input one ulp off); the gate then shows "
        "the raised threshold. For deep networks whose float32 rounding, amplified, is larger than the threshold.",
    )

    @model_validator(mode="before")
    @classmethod
    def _tensor_sections(cls, value: Any) -> Any:
        # A mapping under a name that is no metric gates that output tensor.
        if not isinstance(value, dict):
            return value
        metrics = set(MetricGates.model_fields)
        flat = {k: v for k, v in value.items() if k in metrics or not isinstance(v, dict) or k == "tensors"}
        tensors = {k: v for k, v in value.items() if k not in flat}
        if tensors:
            flat["tensors"] = {**flat.get("tensors", {}), **tensors}
        return flat

    def thresholds(self) -> dict[str, float]:
        dumped = self.model_dump(exclude={"tensors", "reproducible", "micro_arena_kib", "float32_noise"})
        return {name: value for name, value in dumped.items() if value is not None}

    def tensor_thresholds(self) -> dict[str, dict[str, float]]:
        return {name: gates.thresholds() for name, gates in self.tensors.items() if gates.thresholds()}


class BenchmarkSpec(_Strict):
    """Time the output in its runtime (and the source model in Keras, for the speedup)."""

    runs: int = Field(50, ge=1, le=100_000, description="Timed runs; the report gives their median and p90.")
    warmup: int = Field(5, ge=0, le=10_000, description="Untimed runs before the timed ones.")
    threads: int | None = Field(None, ge=1, le=256, description="Threads of the runtime; default: its own choice.")
    batch: int = Field(1, ge=1, le=65_536, description="Samples per timed run.")


class RuntimeSpec(_Strict):
    """How the output runs for parity (and would run in production)."""

    delegate: Literal["xnnpack", "none", "both"] = Field(
        "xnnpack",
        description="LiteRT only: XNNPACK (the default delegate), no delegate, or both with their difference "
        "(LiteRT has had bugs where they differ)",
    )
    graph_optimization: Literal["all", "disabled", "both"] = Field(
        "all",
        description="onnxruntime only: all graph optimizations (fused int8 kernels, as deployments run), "
        "disabled (the QDQ graph's own arithmetic), or both, gated both ways. Quantized files always also "
        "run the other way, as a comparison",
    )
    threads: int | None = Field(None, ge=1, le=256, description="intra-op threads of LiteRT / onnxruntime")


def _stage_entry_model() -> type[BaseModel]:
    """A model with one optional field per registered stage kind; an entry sets exactly one."""
    fields: dict[str, Any] = {kind: (stage.Options | None, None) for kind, stage in STAGES.items()}

    def _normalise(cls: type, value: Any) -> Any:
        if isinstance(value, str):
            return {value: {}}
        if isinstance(value, dict):
            return {key: ({} if options is None else options) for key, options in value.items()}
        return value

    def _exactly_one(self: BaseModel) -> BaseModel:
        chosen = [kind for kind in STAGES if getattr(self, kind) is not None]
        if len(chosen) != 1:
            raise ValueError(f"a stage entry names exactly one stage kind (got {', '.join(chosen) or 'none'})")
        return self

    validators = {
        "normalise": model_validator(mode="before")(classmethod(_normalise)),
        "exactly_one": model_validator(mode="after")(_exactly_one),
    }
    return create_model("StageEntry", __base__=_Strict, __validators__=validators, **fields)


StageEntry = _stage_entry_model()


def stage_of(entry: BaseModel) -> tuple[str, StageOptions]:
    for kind in STAGES:
        options = getattr(entry, kind)
        if options is not None:
            return kind, options
    raise AssertionError("validated entries name one stage")


class OutputSpec(_Strict):
    stages: list[StageEntry] = Field(min_length=1, description="The chain of stages from the source.")  # type: ignore[valid-type]
    gates: Gates = Field(
        default_factory=Gates,
        description="Pass/fail thresholds of this output; without any, the last stage's default gates apply.",
    )
    runtime: RuntimeSpec = Field(
        default_factory=RuntimeSpec, description="How the file runs for parity (LiteRT delegate, onnxruntime setup)."
    )
    benchmark: BenchmarkSpec | None = Field(None, description="median/p90 latency, beside the source's in Keras")
    tensor_map: dict[str, str] = Field(
        default_factory=dict,
        description="{source output: this file's output}: pairs tensors that names, `:N` indices and unique shapes "
        "cannot (same-shaped outputs of a renamed file).",
    )
    input_map: dict[str, str] = Field(
        default_factory=dict,
        description="{source input: this file's input}: feeds inputs that names and unique shapes cannot pair "
        "(same-shaped inputs of a renamed file); without it such inputs stop the run.",
    )
    targets: list[TargetName] = Field(
        default_factory=list,
        description="tflite only: deployment targets the file must suit (gpu: TFLite's GPU delegate rules; xnnpack: "
        "every operator taken by the XNNPACK delegate; micro: runs in TFLite for Microcontrollers); each is a gate.",
    )

    @field_validator("targets")
    @classmethod
    def _distinct_targets(cls, targets: list[str]) -> list[str]:
        repeated = sorted({target for target in targets if targets.count(target) > 1})
        if repeated:
            raise ValueError(f"each target once (repeated: {', '.join(repeated)})")
        return targets


class Recipe(_Strict):
    """An edgeport recipe: a source model, data, and named outputs each made by a chain of stages."""

    name: str = Field(pattern=NAME_PATTERN, description="Names the run; default output dir artifacts/<name>/.")
    version: str | None = Field(
        None,
        pattern=VERSION_PATTERN,
        description="The model's release version (1.4.0, 2024.06-rc1), stamped into every .tflite and .onnx file as "
        'edgeport.model_version and recorded in report.json. Text: quote a number (version: "1.10").',
    )
    source: SourceSpec = Field(
        description="The model: a path (shorthand for {path: ...}), a builder with weights, or a TF1 graph or "
        "checkpoint."
    )
    data: DataSection = Field(
        default_factory=DataSection, description="Calibration, evaluation, fine-tune and validation data."
    )
    outputs: dict[str, OutputSpec] = Field(
        min_length=1, description="{output name: its stages, gates and settings}; each name becomes a directory."
    )
    fail_on_converter_warnings: bool = Field(
        False, description="Treat warnings the converters log (and still 'succeed') as stage errors."
    )
    stage_timeout: float | None = Field(
        None,
        gt=0,
        description="Seconds a conversion may run in its worker process before the worker is killed and the "
        "output reported as error (default 1800; `--stage-timeout` overrides).",
    )

    @field_validator("source", mode="before")
    @classmethod
    def _path_shorthand(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_text(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            # YAML reads 1.10 as the number 1.1: converting it back would stamp the wrong version
            raise ValueError(
                f'version was read as the number {value!r}: quote it as written (version: "1.10"; unquoted, '
                "YAML reads 1.10 as 1.1)"
            )
        return value

    @field_validator("name")
    @classmethod
    def _safe_recipe_name(cls, name: str) -> str:
        return _directory_name("recipe name", name)

    @field_validator("outputs")
    @classmethod
    def _safe_output_names(cls, outputs: dict[str, OutputSpec]) -> dict[str, OutputSpec]:
        for name in outputs:
            _directory_name("output name", str(name))
        return outputs


def _directory_name(what: str, name: str) -> str:
    """A name that becomes a directory beside the reports: no path parts, no trailing newline, no report's name."""
    if not re.fullmatch(NAME_PATTERN.strip("^$"), name):
        raise ValueError(f"{what} {excerpt(name)} must match {NAME_PATTERN} (it becomes a directory name)")
    if name.lower() in RESERVED_NAMES:
        raise ValueError(f"{what} {name!r} is the name of a report file edgeport writes beside the outputs")
    return name


@dataclass
class LoadedRecipe:
    """A validated recipe and the directory its relative paths start from."""

    spec: Recipe
    path: Path

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        return (self.base_dir / relative).resolve()

    @property
    def source_path(self) -> Path:
        """The model file or directory; for a builder source, the weights as given (file, prefix or directory)."""
        source = self.spec.source
        relative = source.path or source.weights or source.graph or source.checkpoint
        assert relative is not None, "validated specs give path, builder with weights, graph or checkpoint"
        return self.resolve(relative)

    def source_kind(self) -> str:
        """What the source gives the first stage: `keras` or `savedmodel` (TF1 graphs are frozen into one)."""
        if self.spec.source.builder is not None:
            return "keras"
        if self.spec.source.tf1_kind is not None:
            return "savedmodel"
        return "savedmodel" if self.source_path.is_dir() else "keras"

    def source_label(self) -> str:
        """The source's kind as a user names it."""
        tf1 = {"graph": "TF1 frozen graph", "checkpoint": "TF1 checkpoint"}
        return tf1.get(self.spec.source.tf1_kind or "", self.source_kind())


def load_recipe(path: Path, check_files: bool = True) -> LoadedRecipe:
    """Read, validate and type-check a recipe file; every problem is a RecipeError naming its place."""
    text = _read_recipe(path)
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no tags that build objects
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: YAML syntax error{_yaml_place(error)}: {_yaml_problem(error)}") from None
    except RecursionError:
        raise RecipeError(f"{path}: the YAML nests deeper than Python can read") from None
    _check_expanded_size(path, document)
    if not isinstance(document, dict):
        raise RecipeError(
            f"{path}: a recipe is a YAML mapping with name, source and outputs (got {type(document).__name__})"
        )
    try:
        spec = Recipe.model_validate(document)
    except ValidationError as error:
        raise RecipeError(_describe_validation_error(path, text, error)) from None
    loaded = LoadedRecipe(spec=spec, path=path.resolve())
    if check_files:
        _check_files(loaded)
    check_chains(loaded)
    return loaded


def _read_recipe(path: Path) -> str:
    """The recipe's text: a regular file of bounded size (a FIFO or a device would block or never end)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except OSError as error:
        raise RecipeError(f"{path}: cannot read recipe ({error})") from None
    problem = regular_file_problem(path)
    if problem is not None:
        raise RecipeError(f"{path} is {problem}; a recipe is a YAML file")
    if info.st_size > MAX_RECIPE_BYTES:
        raise RecipeError(f"{path}: {info.st_size:,} bytes; a recipe is at most {MAX_RECIPE_BYTES:,}")
    try:
        with path.open("rb") as handle:
            return handle.read(MAX_RECIPE_BYTES + 1).decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RecipeError(f"{path}: cannot read recipe ({error})") from None


def _check_expanded_size(path: Path, document: Any) -> None:
    """YAML aliases share one Python object however often they repeat: count values as expanded (each shared
    object once, by id), and refuse a document past the bound or one that contains itself."""
    sizes: dict[int, int] = {}

    def size(node: Any, depth: int) -> int:
        if not isinstance(node, dict | list):
            return 1
        if depth > MAX_RECIPE_DEPTH:
            raise RecipeError(f"{path}: the recipe nests deeper than {MAX_RECIPE_DEPTH} levels")
        known = sizes.get(id(node))
        if known == -1:
            raise RecipeError(f"{path}: a YAML alias refers to a mapping or list that contains it")
        if known is not None:
            return known
        sizes[id(node)] = -1
        total = 1 + sum(size(child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
        if total > MAX_RECIPE_VALUES:
            raise RecipeError(
                f"{path}: the recipe expands to over {MAX_RECIPE_VALUES:,} values (YAML aliases repeating "
                "each other?); a recipe is a page of settings"
            )
        sizes[id(node)] = total
        return total

    size(document, 0)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, list | dict):
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value, not a list or mapping", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {excerpt(key)} (first at line {seen[key]})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def check_chains(recipe: LoadedRecipe) -> None:
    """Each stage must take what the one before gives; data a stage needs must be in the recipe."""
    spec = recipe.spec
    source_kind = recipe.source_kind()
    for name, output in spec.outputs.items():
        given, giver = source_kind, f"the source ({recipe.source_label()})"
        previous: tuple[str, StageOptions] | None = None
        for index, entry in enumerate(output.stages):
            kind, options = stage_of(entry)
            stage = STAGES[kind]
            place = f"outputs.{name}.stages[{index}].{kind}"
            refusal = stage.refuses_source(recipe.source_path.suffix.lower()) if given == "keras" else None
            if refusal:
                raise RecipeError(f"{recipe.path}: {place}: {refusal}")
            if given not in stage.takes:
                raise RecipeError(
                    f"{recipe.path}: {place}: {kind} takes {' or '.join(sorted(stage.takes))}, "
                    f"but {giver} gives {given}"
                )
            refusal = stage.refuses_upstream(*previous) if previous is not None else None
            if refusal:
                raise RecipeError(f"{recipe.path}: {place}: {refusal}")
            previous = (kind, options)
            for needed in stage.required_data(options):
                section, _, part = needed.partition(".")
                spec_of_section = getattr(spec.data, section)
                if spec_of_section is None or (part and getattr(spec_of_section, part, None) is None):
                    raise RecipeError(
                        f"{recipe.path}: {place}: {stage.describe(options)} needs data.{needed}; add it to the recipe"
                    )
            given, giver = stage.gives, f"stages[{index}] ({kind})"
        if output.runtime.delegate != "xnnpack" and given != "tflite":
            raise RecipeError(
                f"{recipe.path}: outputs.{name}.runtime.delegate: delegates apply to tflite outputs; "
                f"this output gives {given}"
            )
        if output.runtime.graph_optimization != "all" and given != "onnx":
            raise RecipeError(
                f"{recipe.path}: outputs.{name}.runtime.graph_optimization: applies to onnx outputs; "
                f"this output gives {given}"
            )
        _check_targets(recipe, name, output, given)
        _check_float32_noise(recipe, name, output, given, previous)
        gated = set(output.gates.thresholds()).union(*map(set, output.gates.tensor_thresholds().values()))
        needs_labels = {"accuracy", "accuracy_drop"} & gated
        evaluation = spec.data.evaluation
        if needs_labels and (evaluation is None or evaluation.labels is None):
            raise RecipeError(
                f"{recipe.path}: outputs.{name}.gates: {', '.join(sorted(needs_labels))} "
                "needs labels; set data.evaluation.labels"
            )


def _check_float32_noise(
    recipe: LoadedRecipe, name: str, output: OutputSpec, given: str, last: tuple[str, StageOptions] | None
) -> None:
    """float32_noise holds a float32 file against the source's float32 rounding: quantized files have none to
    hold."""
    if output.gates.float32_noise is None:
        return
    quantize = getattr(last[1], "quantize", "none") if last is not None else "none"
    if given not in {"tflite", "onnx"} or quantize != "none":
        made = f"quantize: {quantize} {given}" if quantize != "none" else given
        raise RecipeError(
            f"{recipe.path}: outputs.{name}.gates.float32_noise: applies to unquantized tflite and onnx outputs; "
            f"this output gives {made}"
        )


def _check_targets(recipe: LoadedRecipe, name: str, output: OutputSpec, given: str) -> None:
    """Targets judge .tflite files; the arena gate needs the micro target that measures it."""
    if output.targets and given != "tflite":
        raise RecipeError(
            f"{recipe.path}: outputs.{name}.targets: targets apply to tflite outputs; this output gives {given}"
        )
    if output.gates.micro_arena_kib is not None and "micro" not in output.targets:
        raise RecipeError(
            f"{recipe.path}: outputs.{name}.gates.micro_arena_kib: the arena is measured by the micro target; "
            f"add micro to outputs.{name}.targets"
        )


def _check_files(recipe: LoadedRecipe) -> None:
    check_source_files(recipe.spec.source, recipe.base_dir, recipe.path)
    _check_data_files(recipe)


def _check_data_files(recipe: LoadedRecipe) -> None:
    for section in ("calibration", "evaluation", "fine_tune", "validation"):
        spec = getattr(recipe.spec.data, section)
        if spec is None:
            continue
        place = f"data.{section}"
        if spec.npz is not None:
            _check_npz(recipe, place, spec)
        if spec.npy is not None:
            for key, relative in (("npy", spec.npy), ("labels", spec.labels_key)):
                if relative is not None:
                    _check_data_file(recipe, f"{place}.{key}", recipe.resolve(relative))


def _check_data_file(recipe: LoadedRecipe, place: str, file: Path) -> None:
    """The file exists and is a regular file: a FIFO would block the check itself, a device never end."""
    if not file.exists():
        raise RecipeError(f"{recipe.path}: {place}: {file} does not exist")
    problem = regular_file_problem(file)
    if problem is not None:
        raise RecipeError(f"{recipe.path}: {place}: {file} is {problem}; data files must be regular files")


def _check_npz(recipe: LoadedRecipe, place: str, spec: DataSpec) -> None:
    assert spec.npz is not None
    file = recipe.resolve(spec.npz)
    _check_data_file(recipe, f"{place}.npz", file)
    try:
        with np.load(file, allow_pickle=False) as archive:
            keys = set(archive.files)
    except Exception as error:  # numpy raises several types for a file that is not an npz
        raise RecipeError(f"{recipe.path}: {place}.npz: {file} is not a readable .npz ({error})") from None
    wanted = [spec.inputs] if isinstance(spec.inputs, str) else list((spec.inputs or {}).values())
    wanted += [spec.labels_key] if spec.labels_key else []
    for key in wanted:
        if key not in keys:
            raise RecipeError(
                f"{recipe.path}: {place}: key {key!r} is not in {file.name} "
                f"(it has {', '.join(sorted(keys)) or 'no arrays'})"
            )


def recipe_schema() -> dict[str, Any]:
    return Recipe.model_json_schema()


# --- readable errors -------------------------------------------------------------------------------


def excerpt(value: Any) -> str:
    """A bounded repr of user input: an error message never echoes a 50 MB string or an alias bomb whole."""
    return _EXCERPT.repr(value)


def _describe_validation_error(path: Path, text: str, error: ValidationError) -> str:
    lines = [f"{path}: the recipe does not fit the schema:"]
    problems = error.errors()
    if len(problems) > MAX_PROBLEMS_SHOWN:
        lines[0] = f"{path}: the recipe does not fit the schema ({len(problems)} problems, the first shown):"
    for problem in problems[:MAX_PROBLEMS_SHOWN]:
        loc = _user_loc([part for part in problem["loc"] if not _is_union_tag(part)])
        where = _format_loc(loc) or "(top level)"
        line = _line_of(text, loc)
        at = f" (line {line})" if line else ""
        lines.append(f"  {where}{at}: {_explain(problem, loc)}")
    return "\n".join(lines)


def _user_loc(loc: list[Any]) -> list[Any]:
    """Per-tensor gates are written `gates.<tensor>` in YAML; the model keeps them under `gates.tensors`."""
    return [part for i, part in enumerate(loc) if not (part == "tensors" and i and loc[i - 1] == "gates")]


def _is_union_tag(part: Any) -> bool:
    # pydantic inserts the tried union member into locations ("str", "dict[str,str]", "function-before[...]")
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool"})


def _format_loc(loc: list[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _explain(problem: dict[str, Any], loc: list[Any]) -> str:
    kind = problem["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else ""
        if (len(loc) >= 4 and loc[-3] == "stages") or (len(loc) >= 2 and loc[-2] == "stages"):
            return f"unknown stage {key!r} (known: {', '.join(STAGES)})"
        suggestion = difflib.get_close_matches(key, sorted(_known_keys()), n=1) if len(key) <= 64 else []
        hint = f"; did you mean {suggestion[0]!r}?" if suggestion else ""
        return f"unknown key {excerpt(key)}{hint}"
    if kind == "missing":
        return "required key is missing"
    message = problem["msg"].removeprefix("Value error, ")
    return f"{message} (got {excerpt(problem['input'])})" if kind not in {"value_error", "assertion_error"} else message


@cache
def _known_keys() -> set[str]:
    keys: set[str] = set()
    models: list[type[BaseModel]] = [Recipe, SourceSpec, RandomSpec, DataSpec, LabelsSpec, DataSection, Gates]
    models += [OutputSpec]
    models += [RuntimeSpec, BenchmarkSpec]
    models += [stage.Options for stage in STAGES.values()]
    for model in models:
        keys.update(model.model_fields)
    return keys


def _line_of(text: str, loc: list[Any]) -> int | None:
    """1-based line of the YAML node at `loc`, or of the deepest ancestor that exists."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    child, line = value_node, key_node.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def _yaml_place(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _yaml_problem(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None)
    context = getattr(error, "context", None)
    return " ".join(part for part in (context, problem) if part) or str(error)
