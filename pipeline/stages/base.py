"""The Stage base class: typed options, what it takes and gives, and one run method.

A stage knows nothing of recipes' YAML, reports or runtimes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from pipeline.core.artifact import Artifact, ArtifactKind
from pipeline.core.toolchain import TOOLCHAIN


class StageOptions(BaseModel):
    """Options of one stage kind; unknown keys are an error."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class StageContext:
    """What a running stage may use besides its input artifact."""

    work_dir: Path
    key: str
    calibration: Callable[[], Iterator[dict[str, np.ndarray]]] | None = None
    fine_tune: Any = None  # a pipeline.data.Dataset (inputs by name, labels) for stages that train
    log: Callable[[str], None] = lambda message: None
    warnings: list[str] = field(default_factory=list)
    # Set by the runner for an output's last stage: runs a candidate file through parity and says whether
    # the output's gates pass. Lets a stage search (e.g. int8 fallback) without knowing gates or runtimes.
    accept: Callable[[Path], bool] | None = None
    # Per model input, the evaluation data's shape without the sample axis: what a fixed-shape rescue gives the
    # dimensions a model leaves free (sequence lengths). In the node's key for stages that are `shape_bound`.
    sample_shapes: dict[str, list[int]] = field(default_factory=dict)


class Stage(ABC):
    """One kind of step in an output's chain; subclasses are listed in `pipeline.stages.STAGES`."""

    kind: ClassVar[str]
    Options: ClassVar[type[StageOptions]]
    takes: ClassVar[frozenset[str]]
    gives: ClassVar[ArtifactKind]
    # Packages whose version is part of this stage's cache key: an upgrade rebuilds its artifacts.
    packages: ClassVar[tuple[str, ...]] = TOOLCHAIN
    # Gives a file that runtimes read as it is (.tflite, .onnx): stored in the content-keyed cache.
    cacheable: ClassVar[bool] = False
    # Can run in the conversion worker process, from the source or from a model file an earlier stage saved.
    isolatable: ClassVar[bool] = False
    # May fix free input dimensions at the evaluation data's sizes (a rescue): those sizes are part of its key.
    shape_bound: ClassVar[bool] = False

    @classmethod
    def required_data(cls, options: StageOptions) -> list[str]:
        """`data.*` sections these options need, e.g. "calibration" or "fine_tune.labels" (checked at validation)."""
        return []

    @classmethod
    def refuses_source(cls, source_suffix: str) -> str | None:
        """Why this stage cannot take a model from a source file of this kind (e.g. `.keras`), if it cannot."""
        return None

    @classmethod
    def refuses_upstream(cls, kind: str, options: StageOptions) -> str | None:
        """Why this stage cannot follow a stage of this kind with these options, if its options show it cannot
        (checked at validation; `takes` has already matched)."""
        return None

    @classmethod
    def describe(cls, options: StageOptions) -> str:
        """A short human label, e.g. `tflite int8 io=int8`."""
        return cls.kind

    @classmethod
    def needs_verdicts(cls, options: StageOptions) -> bool:
        """Whether the stage asks the run for parity verdicts (`ctx.accept`): it then runs in the run's process,
        and its artifact depends on the output's gates and evaluation data."""
        return False

    @classmethod
    def default_gates(cls, options: StageOptions) -> dict[str, float]:
        """Gates applied to an output ending in this stage when the recipe gives none."""
        return {}

    @abstractmethod
    def run(self, upstream: Artifact, options: StageOptions, ctx: StageContext) -> Artifact:
        """Produce this stage's artifact under `ctx.work_dir`."""


class ConversionStage(Stage):
    """A converter: takes a Keras model or SavedModel, gives a file runtimes read as it is (cached, run in the
    worker process). Subclasses say whether their options need calibration data."""

    takes = frozenset({"keras", "savedmodel"})
    cacheable = True
    isolatable = True

    @classmethod
    def calibrated(cls, options: StageOptions) -> bool:
        return False

    @classmethod
    def required_data(cls, options: StageOptions) -> list[str]:
        return ["calibration"] if cls.calibrated(options) else []
