"""`onnx` stage: Keras model or SavedModel → `.onnx` through tf2onnx, checked with onnx.checker."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from pydantic import Field

from pipeline.artifacts import write_bytes_atomic
from pipeline.errors import StageError
from pipeline.frameworks import captured_native_output, import_tensorflow, notable_log_lines
from pipeline.specs import Artifact
from pipeline.stages.base import Stage, StageContext, StageOptions


class OnnxOptions(StageOptions):
    # tf2onnx 1.17 knows opsets up to 18; below 9 it cannot express common Keras layers.
    opset: int = Field(17, ge=9, le=18)


class OnnxStage(Stage):
    kind = "onnx"
    Options = OnnxOptions
    takes = frozenset({"keras", "savedmodel"})
    gives = "onnx"

    @classmethod
    def describe(cls, options: OnnxOptions) -> str:
        return f"onnx opset={options.opset}"

    @classmethod
    def default_gates(cls, options: OnnxOptions) -> dict[str, float]:
        return {"max_abs": 1e-4}

    def run(self, upstream: Artifact, options: OnnxOptions, ctx: StageContext) -> Artifact:
        tf = import_tensorflow()
        import onnx

        with _logged_warnings("tf2onnx") as logged, captured_native_output() as native:
            try:
                proto = _export(tf, upstream, options.opset)
            except Exception as error:  # tf2onnx raises many types; all mean "no artifact"
                raise StageError(f"tf2onnx export failed: {str(error).strip().splitlines()[0][:500]}") from error
        try:
            onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as error:
            raise StageError(f"onnx.checker rejected the exported model: {str(error).splitlines()[0]}") from error
        path = ctx.work_dir / "model.onnx"
        write_bytes_atomic(path, proto.SerializeToString())
        ops = Counter(node.op_type for node in proto.graph.node)
        return Artifact(
            kind="onnx",
            path=path,
            key=ctx.key,
            warnings=[*logged, *notable_log_lines(native)],
            details={"opset": options.opset, "nodes": len(proto.graph.node), "ops": dict(ops.most_common())},
        )


def _export(tf: Any, upstream: Artifact, opset: int) -> Any:
    import tf2onnx
    from tf2onnx import tf_loader

    if upstream.kind == "savedmodel":
        # The saved-model loader freezes the signature's function: fine for every SavedModel kind.
        graph, inputs, outputs, renames = tf_loader.from_saved_model(
            str(upstream.path),
            None,
            None,
            tag="serve",
            signatures=[upstream.signature or "serving_default"],
            return_tensors_to_rename=True,
        )
        proto, _ = tf2onnx.convert.from_graph_def(
            graph, input_names=inputs, output_names=outputs, opset=opset, tensors_to_rename=renames
        )
        return proto
    model = upstream.handle
    signature = [tf.TensorSpec(_shape(t.shape), t.dtype, name=_input_name(t)) for t in model.inputs]
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    return proto


def _input_name(tensor: Any) -> str:
    # Keras 3 names symbolic inputs after their Input layer; tf_keras adds ":0".
    return tensor.name.split(":")[0]


def _shape(shape: Any) -> list[int | None]:
    dims = list(shape)
    return [None, *dims[1:]] if dims else dims


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname.lower()}: {record.getMessage()}")


class _logged_warnings:
    """Collect WARNING+ records of a library's logger, and keep them off the console."""

    def __init__(self, logger_name: str) -> None:
        self.logger = logging.getLogger(logger_name)
        self.handler = _ListHandler()

    def __enter__(self) -> list[str]:
        self._propagate = self.logger.propagate
        self.logger.addHandler(self.handler)
        self.logger.propagate = False
        return self.handler.messages

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.propagate = self._propagate
