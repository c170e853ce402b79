"""The microcontroller target: the file run in TensorFlow Lite for Microcontrollers' Python interpreter
(`tflite_micro`), with the arena it used, whether it is integer-only, and its parity against the source.

The arena is what TFLM's RecordingMicroAllocator reports after an inference ("Arena allocation total N bytes",
printed by `print_allocations`, captured here); only if that line is missing is it the smallest arena that works,
found by bisection. `arena_method` in the report says which. An operator TFLM has no kernel for is named from
TFLM's own message; the file is then not run.

Knows LiteRT (tensor names, operator list) and TFLM; nothing of recipes, runs or reports.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipeline.core.artifact import Artifact
from pipeline.core.recording import OutputRecording
from pipeline.evaluate import Predictions, compare
from pipeline.frameworks import captured_native_output
from pipeline.runtimes.base import Runtime
from pipeline.runtimes.litert import LiteRTRuntime, dequantize_output, quantize_input
from pipeline.targets.base import Target, TargetContext, TargetReport, Unsupported, litert_operators

INTEGER_TYPES = {"int8", "int16", "int32"}
FIRST_ARENA, LAST_ARENA = 64 * 1024, 256 * 1024 * 1024  # bytes: tried growing ×4 until the file allocates
_RECORDED = re.compile(r"Arena allocation total (\d+) bytes")
_MISSING = re.compile(r"Didn't find op for (?:builtin|custom) opcode '([^']+)'")
_FAILED_NODE = re.compile(r"Node (\S+) \(number (\d+)\) failed to (prepare|invoke)")


class MicroFailure(Exception):
    """TFLM refused the file: what it printed, for the report."""

    def __init__(self, message: str, lines: list[str]) -> None:
        super().__init__(message)
        self.lines = lines


def _interpreter(path: Path, arena: int) -> Any:
    from tflite_micro.python.tflite_micro import runtime

    with captured_native_output() as lines:
        try:
            return runtime.Interpreter.from_file(str(path), arena_size=arena)
        except RuntimeError as error:
            failure = MicroFailure(str(error), lines)
    raise failure


def _detail(micro: dict[str, Any]) -> dict[str, Any]:
    """A TFLM tensor detail in the form LiteRT's (de)quantization takes."""
    params = micro.get("quantization_parameters") or {}
    scales, zeros = params.get("scales", []), params.get("zero_points", [])
    quantization = (float(scales[0]), int(zeros[0])) if len(scales) else (0.0, 0)
    return {"dtype": micro["dtype"], "quantization": quantization}


class MicroRuntime(Runtime):
    """A .tflite file in TFLM, one inference per sample (TFLM shapes are fixed), tensors named as LiteRT names them."""

    kind = "tflite"
    name = "tflite-micro"

    def __init__(self, artifact: Artifact, arena: int) -> None:
        super().__init__(artifact)
        with LiteRTRuntime(artifact) as litert:
            self.inputs, self.outputs = litert.inputs, litert.outputs
            self._input_names = _by_position(litert.input_details, litert.interpreter.get_input_details())
            self._output_names = _by_position(litert.output_details, litert.interpreter.get_output_details())
        self.interpreter = _interpreter(artifact.path, arena)
        self._in = [_detail(self.interpreter.get_input_details(i)) for i in range(len(self._input_names))]
        self._out = [_detail(self.interpreter.get_output_details(i)) for i in range(len(self._output_names))]

    def predict_batch(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        samples = len(next(iter(feed.values())))
        produced: list[list[np.ndarray]] = [[] for _ in self._output_names]
        for sample in range(samples):
            for index, (name, detail) in enumerate(zip(self._input_names, self._in, strict=True)):
                self.interpreter.set_input(quantize_input(feed[name][sample : sample + 1], detail), index)
            self.interpreter.invoke()
            for index, detail in enumerate(self._out):
                produced[index].append(dequantize_output(np.asarray(self.interpreter.get_output(index)), detail))
        return {name: np.concatenate(parts) for name, parts in zip(self._output_names, produced, strict=True)}

    def arena_bytes(self) -> int | None:
        """What the RecordingMicroAllocator says the arena holds, after an inference; None if it says nothing."""
        with captured_native_output() as lines:
            self.interpreter.print_allocations()
        found = [int(match.group(1)) for line in lines if (match := _RECORDED.search(line))]
        return found[0] if found else None

    def close(self) -> None:
        super().close()
        self.interpreter = None


def _by_position(named: dict[str, dict[str, Any]], ordered: list[dict[str, Any]]) -> list[str]:
    """LiteRT's names for the subgraph's inputs (or outputs) in their order, which is TFLM's index order."""
    by_tensor = {detail["index"]: name for name, detail in named.items()}
    return [by_tensor.get(detail["index"], detail["name"]) for detail in ordered]


class MicroTarget(Target):
    name: ClassVar[str] = "micro"

    def analyze(self, context: TargetContext) -> TargetReport:
        path = context.artifact.path
        operators = litert_operators(path)
        floats = [{"op": op.name, "index": op.index} for op in operators if not set(op.types) <= INTEGER_TYPES]
        details: dict[str, Any] = {"integer_only": not floats, "float_ops": floats}
        try:
            arena, runtime = _first_arena_that_allocates(context.artifact)
        except MicroFailure as failure:
            unsupported = _unsupported(failure, operators)
            details["error"] = _first_error(failure)
            return TargetReport(self.name, False, unsupported, {**details, "arena_bytes": None})
        with runtime:
            names = [spec.name for spec in runtime.outputs]
            batches = context.evaluation.batches(context.batch_size)
            outputs = OutputRecording.record(runtime.predict(batches, context.input_map), names)
            recorded = runtime.arena_bytes()
        predictions = Predictions("tflite-micro", runtime.name, outputs)
        parity = compare(context.reference, predictions, context.evaluation, context.tensor_map)
        parity.plots = None  # the output's own parity carries the plots
        if recorded is not None:
            details.update(arena_bytes=recorded, arena_method="recorded (RecordingMicroAllocator)")
        else:
            details.update(arena_bytes=smallest_arena(context.artifact, arena), arena_method="bisection")
        return TargetReport(self.name, True, [], details, parity)


def _first_arena_that_allocates(artifact: Artifact) -> tuple[int, MicroRuntime]:
    arena = FIRST_ARENA
    while True:
        try:
            return arena, MicroRuntime(artifact, arena)
        except MicroFailure as failure:
            if _MISSING.search("\n".join(failure.lines)) or arena * 4 > LAST_ARENA:
                raise
            arena *= 4


def smallest_arena(artifact: Artifact, works: int) -> int:
    """The smallest arena (to 16 bytes) in which TFLM allocates and runs the file once on zeros."""
    low, high = 0, works
    while high - low > 16:
        middle = (low + high) // 2
        try:
            with MicroRuntime(artifact, middle) as runtime:
                zeros = {spec.name: np.zeros((1, *spec.shape[1:]), spec.dtype) for spec in runtime.inputs}
                runtime.predict_batch(zeros)
            high = middle
        except (MicroFailure, RuntimeError):
            low = middle
    return high


def _unsupported(failure: MicroFailure, operators: list[Any]) -> list[Unsupported]:
    missing = _MISSING.findall("\n".join(failure.lines))
    found = [
        Unsupported(op.name, op.index, "TFLite Micro has no kernel for it") for op in operators if op.name in missing
    ]
    lines = [line.strip() for line in failure.lines if line.strip()]
    for number, line in enumerate(lines):
        if (match := _FAILED_NODE.search(line)) is not None:
            why = f": {lines[number - 1]}" if number and not _FAILED_NODE.search(lines[number - 1]) else ""
            found.append(
                Unsupported(match.group(1), int(match.group(2)), f"TFLite Micro failed to {match.group(3)} it{why}")
            )
    return found


def _first_error(failure: MicroFailure) -> str:
    lines = [line.strip() for line in failure.lines if line.strip()]
    return "; ".join([*lines[:3], str(failure)])[:400]
