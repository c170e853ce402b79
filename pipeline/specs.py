"""Plain descriptions of tensors and artifacts shared by every layer; imports no framework."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ArtifactKind = Literal["keras", "savedmodel", "tflite", "onnx"]


@dataclass(frozen=True)
class TensorSpec:
    """A named model input or output; `None` in `shape` is a free dimension (usually batch)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} [{dims}] {self.dtype}"


@dataclass
class Artifact:
    """What a stage gives: a model file or directory, plus what later stages and runtimes need."""

    kind: ArtifactKind
    path: Path
    key: str
    signature: str | None = None
    flavour: str | None = None  # keras3 | tf_keras, for Keras artifacts
    handle: Any = None  # an already-loaded in-memory model, never serialised
    details: dict[str, Any] = field(default_factory=dict)  # e.g. the quantization mode, for default gates
    warnings: list[str] = field(default_factory=list)
