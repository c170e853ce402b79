"""The Runtime base: one `predict(feed) -> outputs` over every serving runtime, and how each describes itself.

Subclasses say what they serve (artifact kind, file suffixes), the settings they run under, and implement
loading and one batch; the base aligns tensor names. A runtime knows nothing of recipes, stages or parity.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from pipeline.core.artifact import Artifact
from pipeline.core.tensors import TensorMatch, TensorSpec, match_feed


@dataclass(frozen=True)
class Setting:
    """One way to run a file: runtime settings (`{"delegate": "none"}`) and the role reports call it by."""

    values: dict[str, str] = field(default_factory=dict)
    role: str = ""  # "xnnpack", "reference kernels", "optimized", "unoptimized"


@dataclass(frozen=True)
class Runs:
    """How an output's file runs: the gated setting, another setting it also runs in (or None), and whether
    that other run is gated too."""

    main: Setting
    other: Setting | None = None
    other_gated: bool = False


class Runtime(ABC):
    """Runs one artifact; `inputs`/`outputs` describe its tensors in its own order. Use it as a context manager
    (or call close) so sessions and interpreters are released as soon as a comparison is done."""

    kind: ClassVar[str]  # the artifact kind it serves
    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]] = ()  # files of this kind, by suffix
    # Settings this runtime takes, each with its allowed values (the first is the default).
    settings: ClassVar[dict[str, tuple[str, ...]]] = {}
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    inputs_matched: dict[str, TensorMatch] | None = None  # source input → this runtime's, once predict has run

    def __init__(self, artifact: Artifact, threads: int | None = None, **settings: str) -> None:
        unknown = set(settings) - set(self.settings)
        if unknown:
            raise TypeError(f"{self.name} has no setting {', '.join(sorted(unknown))}")
        self.artifact = artifact
        self.threads = threads
        self.values = {name: settings.get(name, allowed[0]) for name, allowed in self.settings.items()}

    @classmethod
    def runs_for(cls, requested: dict[str, str], artifact: Artifact) -> Runs:
        """The runs an output asks for (`both` means the two values of a setting); default: one run."""
        return Runs(Setting({name: value for name, value in requested.items() if name in cls.settings}))

    @abstractmethod
    def predict_batch(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch keyed by this runtime's input names; return arrays keyed by its output names."""

    def predict(
        self, batches: Iterable[dict[str, np.ndarray]], input_map: dict[str, str] | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """Run batches keyed by the source model's input names, paired with this runtime's inputs by
        `match_feed`'s rules (kept in `inputs_matched`); yield float outputs."""
        for batch in batches:
            if self.inputs_matched is None:
                self.inputs_matched = match_feed(batch, self.inputs, f"{self.name} inputs", input_map)
            feed = {self.inputs_matched[name].candidate: array for name, array in batch.items()}
            yield self.predict_fixed(feed)

    @property
    def fixed_batch(self) -> int | None:
        """The batch size a file was converted for (a fixed-shape rescue, an export at batch 1), if it has one."""
        first = self.inputs[0].shape if self.inputs else ()
        return first[0] if first and first[0] else None

    def predict_fixed(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`predict_batch`, in chunks of the file's fixed batch when it has one (the last chunk padded with zeros,
        its padding cut from the outputs)."""
        size, count = self.fixed_batch, len(next(iter(feed.values())))
        if not size or size == count:
            return self.predict_batch(feed)
        chunks = []
        for start in range(0, count, size):
            part = {name: array[start : start + size] for name, array in feed.items()}
            missing = size - len(next(iter(part.values())))
            if missing:
                part = {name: _pad(array, missing) for name, array in part.items()}
            chunks.append({name: value[: size - missing] for name, value in self.predict_batch(part).items()})
        return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}

    def label(self) -> str:
        """`litert, xnnpack delegate`: the runtime and any setting that differs from what a reader assumes."""
        return self.name

    def close(self) -> None:
        """Release what the runtime holds (a session, an interpreter, a model); subclasses drop their handles."""
        self.closed = True

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": self.name,
            "inputs": [s.describe() for s in self.inputs],
            "outputs": [s.describe() for s in self.outputs],
        }


def _pad(array: np.ndarray, missing: int) -> np.ndarray:
    """`missing` rows of zeros after the array's own."""
    return np.concatenate([array, np.zeros((missing, *array.shape[1:]), array.dtype)])
