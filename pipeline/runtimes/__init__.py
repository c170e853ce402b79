"""The runtime registry: the one list of runtimes; each describes the artifact kind and files it serves."""

from __future__ import annotations

from pathlib import Path

from pipeline.core.artifact import Artifact
from pipeline.runtimes.base import Runs, Runtime, Setting
from pipeline.runtimes.keras import KerasRuntime
from pipeline.runtimes.litert import LiteRTRuntime
from pipeline.runtimes.onnxrt import OnnxRuntime
from pipeline.runtimes.savedmodel import SavedModelRuntime

RUNTIMES: dict[str, type[Runtime]] = {
    runtime.kind: runtime for runtime in (KerasRuntime, SavedModelRuntime, LiteRTRuntime, OnnxRuntime)
}


def runtime_for(artifact: Artifact, threads: int | None = None, **settings: str) -> Runtime:
    """The runtime that serves `artifact`; settings it does not take (another runtime's) are left out."""
    runtime = RUNTIMES[artifact.kind]
    return runtime(artifact, threads, **{name: value for name, value in settings.items() if name in runtime.settings})


def kind_of(path: Path) -> str | None:
    """The artifact kind a path holds, by its suffix (a directory is a SavedModel); None if no runtime reads it."""
    if path.is_dir():
        return "savedmodel"
    suffix = path.suffix.lower()
    return next((kind for kind, runtime in RUNTIMES.items() if suffix in runtime.suffixes), None)


__all__ = ["RUNTIMES", "Runs", "Runtime", "Setting", "kind_of", "runtime_for"]
