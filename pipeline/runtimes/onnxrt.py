"""onnxruntime runtime: a `.onnx` file on the CPU execution provider."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from pipeline.core.artifact import Artifact
from pipeline.core.tensors import TensorSpec
from pipeline.frameworks import import_onnxruntime
from pipeline.runtimes.base import Runs, Runtime, Setting

QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger"}
_ONNX_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


class OnnxRuntime(Runtime):
    kind = "onnx"
    name = "onnxruntime"
    suffixes = (".onnx",)
    # "all" fuses QDQ pairs into int8 kernels (what deployments run); "disabled" keeps the graph's own
    # arithmetic. On some CPUs the two differ by more than the quantization error (kernel saturation).
    settings: ClassVar[dict[str, tuple[str, ...]]] = {"graph_optimization": ("all", "disabled")}

    def __init__(self, artifact: Artifact, threads: int | None = None, **settings: str) -> None:
        super().__init__(artifact, threads, **settings)
        onnxruntime = import_onnxruntime()

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings repeat what the report says
        levels = {
            "all": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "disabled": onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }
        self.graph_optimization = self.values["graph_optimization"]
        options.graph_optimization_level = levels[self.graph_optimization]
        if threads:
            options.intra_op_num_threads = threads
        # A file the onnx stage rescued runs as it found it runs (pipeline.stages.onnx_optimizers): without the
        # optimizer that breaks it, or without graph optimizations.
        mended = (artifact.details or {}).get("onnxruntime") or {}
        if mended.get("graph_optimization") == "disabled":
            options.graph_optimization_level = levels["disabled"]
        self.session = onnxruntime.InferenceSession(
            str(artifact.path),
            sess_options=options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=list(mended.get("disabled_optimizers") or []),
        )
        self.inputs = [_spec(node) for node in self.session.get_inputs()]
        self.outputs = [_spec(node) for node in self.session.get_outputs()]

    @classmethod
    def runs_for(cls, requested: dict[str, str], artifact: Artifact) -> Runs:
        """A quantized file always runs both ways: fused int8 kernels differ between CPUs. `both` gates both."""
        optimized = Setting({"graph_optimization": "all"}, "optimized")
        unoptimized = Setting({"graph_optimization": "disabled"}, "unoptimized")
        level = requested.get("graph_optimization", "all")
        if level == "both":
            return Runs(optimized, unoptimized, other_gated=True)
        quantized = bool(QUANTIZED_OPS & set((artifact.details or {}).get("ops") or {}))
        if level == "disabled":
            return Runs(unoptimized, optimized if quantized else None)
        return Runs(optimized, unoptimized if quantized else None)

    def label(self) -> str:
        return self.name if self.graph_optimization == "all" else f"{self.name}, graph optimizations disabled"

    def close(self) -> None:
        super().close()
        self.session = None  # type: ignore[assignment]

    def predict_batch(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run({spec.name: np.ascontiguousarray(feed[spec.name], dtype=spec.dtype) for spec in self.inputs})

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run([spec.name for spec in self.outputs], feed)
        return {spec.name: value for spec, value in zip(self.outputs, values, strict=True)}


def _spec(node: object) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else None for d in node.shape)  # type: ignore[attr-defined]
    dtype = _ONNX_DTYPES.get(node.type, "float32")  # type: ignore[attr-defined]
    return TensorSpec(name=node.name, shape=shape, dtype=dtype)  # type: ignore[attr-defined]
