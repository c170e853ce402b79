"""The Runtime base: one `predict(feed) -> outputs` over every serving runtime.

Subclasses implement loading and one batch; the base aligns tensor names and checks results.
A runtime knows nothing of recipes, stages or parity.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import ClassVar

import numpy as np

from pipeline.errors import DataError
from pipeline.specs import Artifact, TensorSpec


def normalise_name(name: str) -> str:
    """Strip what converters add to tensor names: `serving_default_` prefixes and `:0` suffixes."""
    name = re.sub(r":\d+$", "", name)
    return name.removeprefix("serving_default_")


def align_names(wanted: list[str], offered: list[str], what: str) -> dict[str, str]:
    """Map each wanted name to an offered one: exact, then normalised, then by position."""
    if set(wanted) == set(offered):
        return {name: name for name in wanted}
    by_normal = {normalise_name(name): name for name in offered}
    if all(normalise_name(name) in by_normal for name in wanted) and len(wanted) == len(offered):
        return {name: by_normal[normalise_name(name)] for name in wanted}
    if len(wanted) == len(offered):
        return dict(zip(wanted, offered, strict=True))
    raise DataError(f"{what}: cannot match tensors {', '.join(wanted)} to {', '.join(offered)}")


class Runtime(ABC):
    """Runs one artifact; `inputs`/`outputs` describe its tensors in its own order."""

    name: ClassVar[str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact

    @abstractmethod
    def predict_batch(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch keyed by this runtime's input names; return arrays keyed by its output names."""

    def predict(self, batches: Iterable[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
        """Run batches keyed by any compatible names (the source model's); yield float outputs."""
        mapping: dict[str, str] | None = None
        for batch in batches:
            if mapping is None:
                mapping = align_names(list(batch), [spec.name for spec in self.inputs], f"{self.name} inputs")
            feed = {mapping[name]: array for name, array in batch.items()}
            yield self.predict_batch(feed)

    def describe(self) -> dict[str, object]:
        return {
            "runtime": self.name,
            "inputs": [s.describe() for s in self.inputs],
            "outputs": [s.describe() for s in self.outputs],
        }
