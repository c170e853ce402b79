"""Whether the source answers the same question the same way: its first evaluation batch run again, and a few of
its samples run one at a time, against what the reference recorded. A source that is not deterministic (a dropout
or noise layer left in training mode, a TF1 training switch that defaults to True, batch statistics, a random op)
makes every gate measure its randomness, not the file; the run says so once, as a warning, and `float32_noise`
then loosens no gate (pipeline.run.checker).

Costs one batch and SINGLE_SAMPLES single samples, in the process that records the reference (this one, or the
conversion worker). Knows runtimes and recordings; nothing of recipes, parity or reports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pipeline.core.artifact import Artifact
from pipeline.core.recording import OutputRecording
from pipeline.runtimes import runtime_for

# The same batch run twice by a deterministic model gives the same bits on CPU; threaded reductions that split
# differently could move the last few bits. 1e-5 of the output's largest |value| is ~80 float32 ulps there, and a
# dropout at rate 0.2 moves outputs by tens of percent.
RERUN_TOLERANCE = 1e-5
# A sample alone against the same sample in its batch: other kernels, other summation orders, ~1e-7 of the output's
# scale (EfficientNetB0: 6.1e-5 of logits up to 103, 6e-7); batch statistics over one sample move it by its scale.
SAMPLE_TOLERANCE = 1e-3
SINGLE_SAMPLES = 8  # samples of the first batch also run one at a time

Predict = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]

# Names TF1 code gives the boolean that switches dropout and batch statistics on (`is_training`, `phase_train`...).
_SWITCH = re.compile(r"(^|[/_])(is_)?(training|train|train_phase|phase_train|phase|training_mode|mode)$", re.I)
_RANDOM_OPS = frozenset(
    {"RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal", "Multinomial",
     "RandomShuffle", "RandomGamma", "RandomPoisson", "RandomPoissonV2"}
)  # fmt: skip
_RANDOM_LAYERS = ("Dropout", "Noise", "Random")  # Keras: (Spatial|Alpha|Gaussian)Dropout, GaussianNoise, RandomFlip…


@dataclass(frozen=True)
class Determinism:
    """What running the source again found: each measure is the largest |difference| over its floating outputs,
    relative to that output's largest |value|, with the output it was largest on."""

    rerun: float  # the first batch run again, against the recorded reference
    batch_vs_sample: float  # the first SINGLE_SAMPLES samples alone, against the same samples in that batch
    batch: int
    singles: int
    tensor: str | None = None  # the output that differed most
    switches: list[str] = field(default_factory=list)  # TF1 training switches that default to True
    suspects: list[str] = field(default_factory=list)  # what in the model draws random numbers or batch statistics

    @property
    def deterministic(self) -> bool:
        return self.rerun <= RERUN_TOLERANCE and self.batch_vs_sample <= SAMPLE_TOLERANCE

    def cause(self) -> str:
        if self.switches:
            named = ", ".join(f"`{name}`" for name in self.switches)
            cause = f"the training switch {named} defaults to True, so the graph runs in training mode"
        elif self.rerun > RERUN_TOLERANCE:
            cause = "random ops run at inference: a dropout or noise layer in training mode, or a random op"
        else:
            cause = "batch statistics: batch normalization in training mode, or a model that mixes a batch's samples"
        return f"{cause} ({', '.join(self.suspects)})" if self.suspects else cause

    def fix(self) -> str:
        if self.switches:
            return f"add `feeds: {{{', '.join(f'{name}: false' for name in self.switches)}}}` to the source"
        return (
            "save the model in inference mode: no `training=True` in its layers' calls (or a SavedModel signature "
            "traced with training=False); a model that samples on purpose needs a seed input or a relative gate"
        )

    def warning(self) -> str | None:
        """The run's warning, or None for a deterministic source."""
        if self.deterministic:
            return None
        where = f" ({self.tensor})" if self.tensor else ""
        effect = (
            "every gate measures that randomness too"
            if self.rerun > RERUN_TOLERANCE
            else "files are checked on the same batches, but a sample served alone answers otherwise"
        )
        return (
            f"the source is not deterministic: its first batch of {self.batch} run again differs by "
            f"{self.rerun:.3g}, and {self.singles} of its samples run alone by {self.batch_vs_sample:.3g}, of its "
            f"outputs' scale{where}; {effect}, and float32_noise loosens no gate. "
            f"Likely cause: {self.cause()}. Fix: {self.fix()}."
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Determinism:
        return cls(**document)


def check_determinism(artifact: Artifact, batch: dict[str, np.ndarray], recorded: OutputRecording) -> Determinism:
    """The source (`artifact`) on `batch` (the first evaluation batch, keyed by the source's input names) against
    the reference's recording of that batch (its first rows)."""
    from pipeline.run.latency import feed_for

    with runtime_for(artifact) as runtime:
        feed = feed_for(runtime, batch)
        count = len(next(iter(feed.values())))
        before = {name: recorded.read(name, 0, count) for name in recorded.names}
        again = runtime.predict_fixed(feed)
        rows = _one_at_a_time(runtime.predict_fixed, feed, min(SINGLE_SAMPLES, count))
    singles = len(rows)
    rerun, tensor = _largest(before, again)
    sample, sample_tensor = 0.0, None
    if rows:
        alone = {name: np.concatenate([row[name] for row in rows]) for name in before}
        sample, sample_tensor = _largest({name: array[:singles] for name, array in before.items()}, alone)
    determinism = Determinism(rerun, sample, count, singles, tensor if rerun > RERUN_TOLERANCE else sample_tensor)
    if determinism.deterministic:
        return determinism
    switches, suspects = _suspects(artifact)
    return Determinism(**{**determinism.to_json(), "switches": switches, "suspects": suspects})


def _one_at_a_time(predict: Predict, feed: dict[str, np.ndarray], count: int) -> list[dict[str, np.ndarray]]:
    """The first `count` samples run alone; none where the model cannot run one sample (it ran the batch)."""
    try:
        return [predict({name: array[i : i + 1] for name, array in feed.items()}) for i in range(count)]
    except Exception:  # a model built for its batch only: the rerun still tells
        return []


def _largest(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> tuple[float, str | None]:
    """The largest |difference| relative to the reference's largest |value|, over floating outputs; and where."""
    worst, where = 0.0, None
    for name, expected in reference.items():
        if not np.issubdtype(expected.dtype, np.floating):
            continue
        got = np.asarray(other[name], dtype=np.float64).reshape(expected.shape)
        scale = max(float(np.abs(expected).max(initial=0.0)), np.finfo(np.float32).tiny)
        moved = float(np.nan_to_num(np.abs(expected.astype(np.float64) - got), nan=np.inf).max(initial=0.0)) / scale
        if moved > worst:
            worst, where = moved, name
    return worst, where


def _suspects(artifact: Artifact) -> tuple[list[str], list[str]]:
    """TF1 training switches set to True, and the layers or ops that draw random numbers or batch statistics."""
    handle = artifact.handle
    if artifact.kind == "keras" and handle is not None:
        layers = sorted({type(layer).__name__ for layer in _keras_layers(handle)})
        found = [name for name in layers if any(word in name for word in _RANDOM_LAYERS) or "BatchNorm" in name]
        return [], [f"layers {', '.join(found)}"] if found else []
    if artifact.kind != "savedmodel" or handle is None:
        return [], []
    try:
        nodes = list(_graph_nodes(handle.signatures[artifact.signature or "serving_default"]))
    except (KeyError, AttributeError, ValueError):
        return [], []
    return _switches(nodes), _ops(nodes)


def _keras_layers(model: Any) -> list[Any]:
    flatten = getattr(model, "_flatten_layers", None)
    return list(flatten(include_self=False)) if flatten is not None else list(getattr(model, "layers", []))


def _graph_nodes(function: Any) -> Iterator[Any]:
    graph_def = function.graph.as_graph_def()
    yield from graph_def.node
    for library_function in graph_def.library.function:
        yield from library_function.node_def


def _switches(nodes: list[Any]) -> list[str]:
    """Boolean switches named like `training` whose value is a constant True: a PlaceholderWithDefault, or the
    Identity of its default a TF1 source becomes when frozen (pipeline.sources.graphdef.with_defaults_inlined)."""
    constants = {node.name: node for node in nodes if node.op == "Const"}
    found = []
    for node in nodes:
        if node.op not in {"Identity", "PlaceholderWithDefault"} or not _SWITCH.search(node.name) or not node.input:
            continue
        default = constants.get(node.input[0].split(":")[0])
        if default is not None and _is_true(default):
            found.append(node.name)
    return sorted(set(found))


def _is_true(const: Any) -> bool:
    value = const.attr["value"].tensor
    return value.dtype == 10 and list(value.bool_val) == [True]  # 10: DT_BOOL


def _ops(nodes: list[Any]) -> list[str]:
    random = sorted({node.op for node in nodes if node.op in _RANDOM_OPS})
    statistics = [n.name for n in nodes if n.op.startswith("FusedBatchNorm") and n.attr["is_training"].b]
    found = [f"ops {', '.join(random)}"] if random else []
    return found + ([f"batch norms in training mode ({statistics[0]}…)"] if statistics else [])
