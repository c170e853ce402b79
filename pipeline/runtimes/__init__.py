"""The runtime registry: which runtime serves each artifact kind."""

from __future__ import annotations

from pipeline.runtimes.base import Runtime, align_names
from pipeline.runtimes.keras import KerasRuntime
from pipeline.runtimes.litert import LiteRTRuntime
from pipeline.runtimes.onnxrt import OnnxRuntime
from pipeline.runtimes.savedmodel import SavedModelRuntime
from pipeline.specs import Artifact

RUNTIMES: dict[str, type[Runtime]] = {
    "keras": KerasRuntime,
    "savedmodel": SavedModelRuntime,
    "tflite": LiteRTRuntime,
    "onnx": OnnxRuntime,
}


def runtime_for(
    artifact: Artifact, threads: int | None = None, delegate: str = "xnnpack", graph_optimization: str = "all"
) -> Runtime:
    """The runtime that serves `artifact`; threads apply to LiteRT and onnxruntime, the delegate to LiteRT,
    the graph optimization level to onnxruntime."""
    if artifact.kind == "tflite":
        return LiteRTRuntime(artifact, threads=threads, delegate=delegate)
    if artifact.kind == "onnx":
        return OnnxRuntime(artifact, threads=threads, graph_optimization=graph_optimization)
    return RUNTIMES[artifact.kind](artifact)


__all__ = ["RUNTIMES", "Runtime", "align_names", "runtime_for"]
