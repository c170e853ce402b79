"""What a stage gives and a runtime runs: a model file or directory with what later steps need to know.

A leaf: imports no framework and no other pipeline layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ArtifactKind = Literal["keras", "savedmodel", "tflite", "onnx"]


@dataclass
class Artifact:
    """A model file or directory, plus what later stages and runtimes need."""

    kind: ArtifactKind
    path: Path
    key: str
    signature: str | None = None
    flavour: str | None = None  # keras3 | tf_keras, for Keras artifacts
    handle: Any = None  # an already-loaded in-memory model, never serialised
    details: dict[str, Any] = field(default_factory=dict)  # e.g. the quantization mode, for default gates
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Everything but the in-memory handle, as JSON values (for the cache, the worker pipe, reports)."""
        return {
            "kind": self.kind,
            "path": str(self.path),
            "key": self.key,
            "signature": self.signature,
            "flavour": self.flavour,
            "details": self.details,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, fields: dict[str, Any], **overrides: Any) -> Artifact:
        """The inverse of to_json; `overrides` replace fields (a cache entry's path, a loaded handle)."""
        values = {
            "kind": fields["kind"],
            "path": Path(fields["path"]),
            "key": fields["key"],
            "signature": fields.get("signature"),
            "flavour": fields.get("flavour"),
            "details": dict(fields.get("details") or {}),
            "warnings": list(fields.get("warnings") or []),
        }
        return cls(**{**values, **overrides})
