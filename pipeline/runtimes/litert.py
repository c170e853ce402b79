"""LiteRT runtime: a `.tflite` file in ai_edge_litert's interpreter, integer I/O (de)quantized."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipeline.core.artifact import Artifact
from pipeline.core.tensors import TensorSpec
from pipeline.frameworks import captured_native_output, litert_interpreter
from pipeline.runtimes.base import Runs, Runtime, Setting


class LiteRTRuntime(Runtime):
    kind = "tflite"
    name = "litert"
    suffixes = (".tflite",)
    # XNNPACK is LiteRT's default delegate; "none" runs the reference builtin kernels only.
    settings: ClassVar[dict[str, tuple[str, ...]]] = {"delegate": ("xnnpack", "none")}

    def __init__(self, artifact: Artifact, threads: int | None = None, **settings: str) -> None:
        super().__init__(artifact, threads, **settings)
        self.delegate = self.values["delegate"]
        self.interpreter = litert_interpreter(Path(artifact.path), self.delegate, threads)
        self._first_call = True
        signatures = self.interpreter.get_signature_list()
        if signatures:
            # A signature gives stable names; its runner resizes inputs to each batch itself.
            self.runner = self.interpreter.get_signature_runner(next(iter(signatures)))
            self.input_details = self.runner.get_input_details()
            self.output_details = self.runner.get_output_details()
        else:
            self.runner = None
            self.input_details = {d["name"]: d for d in self.interpreter.get_input_details()}
            self.output_details = {d["name"]: d for d in self.interpreter.get_output_details()}
            self._batch_size: int | None = None
        self.inputs = [_spec(name, d) for name, d in self.input_details.items()]
        self.outputs = [_spec(name, d) for name, d in self.output_details.items()]

    @classmethod
    def runs_for(cls, requested: dict[str, str], artifact: Artifact) -> Runs:
        """With `delegate: both`, XNNPACK and the reference kernels, both gated (LiteRT has had bugs where they
        differ)."""
        xnnpack, plain = Setting({"delegate": "xnnpack"}, "xnnpack"), Setting({"delegate": "none"}, "reference kernels")
        delegate = requested.get("delegate", "xnnpack")
        if delegate == "both":
            return Runs(xnnpack, plain, other_gated=True)
        return Runs(plain if delegate == "none" else xnnpack)

    def label(self) -> str:
        return f"{self.name}, {self.delegate} delegate"

    def close(self) -> None:
        super().close()
        self.runner = None
        self.interpreter = None  # type: ignore[assignment]

    def predict_batch(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        quantized = {name: quantize_input(feed[name], self.input_details[name]) for name in self.input_details}
        if self._first_call:  # the first run applies the XNNPACK delegate, which announces itself on stderr
            self._first_call = False
            with captured_native_output():
                raw = self._invoke(quantized)
        else:
            raw = self._invoke(quantized)
        return {
            name: dequantize_output(np.asarray(raw[name]), self.output_details[name]) for name in self.output_details
        }

    def _invoke(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return self.runner(**feed) if self.runner is not None else self._invoke_by_index(feed)
        except RuntimeError as error:
            flex = re.findall(r"\((Flex\w+)\)", str(error))
            if "Select TensorFlow op" in str(error):
                raise RuntimeError(
                    f"the file uses TF Select (Flex) ops {', '.join(flex) or ''}; ai-edge-litert has no Flex "
                    "delegate, so it cannot run here (link tensorflow-lite-select-tf-ops where it is served)"
                ) from None
            raise

    def _invoke_by_index(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = len(next(iter(feed.values())))
        if batch != self._batch_size:
            for name, detail in self.input_details.items():
                self.interpreter.resize_tensor_input(detail["index"], list(feed[name].shape))
            self.interpreter.allocate_tensors()
            self._batch_size = batch
        for name, detail in self.input_details.items():
            self.interpreter.set_tensor(detail["index"], feed[name])
        self.interpreter.invoke()
        return {name: self.interpreter.get_tensor(d["index"]) for name, d in self.output_details.items()}


def _spec(name: str, detail: dict[str, Any]) -> TensorSpec:
    signature = detail.get("shape_signature", detail["shape"])
    shape = tuple(None if int(d) < 0 else int(d) for d in signature)
    return TensorSpec(name=name, shape=shape, dtype=np.dtype(detail["dtype"]).name)


def _scale_and_zero_point(detail: dict[str, Any]) -> tuple[float, int] | None:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return (float(scale), int(zero_point)) if scale else None


def quantize_input(array: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """A float input as an integer tensor of `detail` takes it (as is for float tensors). TFLite Micro's runtime
    (pipeline.targets.micro) feeds the same files, so it shares these two."""
    dtype = np.dtype(detail["dtype"])
    params = _scale_and_zero_point(detail)
    if params is None or not np.issubdtype(dtype, np.integer) or np.issubdtype(array.dtype, np.integer):
        return np.ascontiguousarray(array, dtype=dtype)
    scale, zero_point = params
    info = np.iinfo(dtype)
    return np.clip(np.round(array / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize_output(array: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """An integer output as float: (q - zero_point) * scale."""
    params = _scale_and_zero_point(detail)
    if params is None or not np.issubdtype(array.dtype, np.integer):
        return array
    scale, zero_point = params
    return (array.astype(np.float32) - zero_point) * scale
