"""onnxruntime runtime: a `.onnx` file on the CPU execution provider."""

from __future__ import annotations

import numpy as np

from pipeline.runtimes.base import Runtime
from pipeline.specs import Artifact, TensorSpec

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
    name = "onnxruntime"

    def __init__(self, artifact: Artifact, num_threads: int | None = None) -> None:
        super().__init__(artifact)
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings repeat what the report says
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.session = onnxruntime.InferenceSession(
            str(artifact.path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [_spec(node) for node in self.session.get_inputs()]
        self.outputs = [_spec(node) for node in self.session.get_outputs()]

    def predict_batch(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        typed = {spec.name: np.ascontiguousarray(feed[spec.name], dtype=spec.dtype) for spec in self.inputs}
        values = self.session.run([spec.name for spec in self.outputs], typed)
        return {spec.name: value for spec, value in zip(self.outputs, values, strict=True)}


def _spec(node: object) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else None for d in node.shape)  # type: ignore[attr-defined]
    return TensorSpec(name=node.name, shape=shape, dtype=_ONNX_DTYPES.get(node.type, "float32"))  # type: ignore[attr-defined]
