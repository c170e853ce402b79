"""A Keras 3 model traced once per run: its serving SavedModel, which every conversion of that model starts from.

Tracing is most of a conversion's time (MobileNetV2 96×96: `export` 9.4 s, `from_saved_model().convert()` 7.6 s), so
the tflite outputs of one model, the layer debugger's converter and the ONNX stage's saved-model route share it.
Knows Keras's export and the run's work folder; nothing of recipes or reports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pipeline.core.artifact import Artifact
from pipeline.errors import StageError
from pipeline.frameworks import captured_native_output


def traced_export(upstream: Artifact, work_dir: Path) -> Path:
    """The Keras 3 model exported as a serving SavedModel once per run, beside the stages' work folders (`work_dir`'s
    parent, the run's): every tflite output of that model converts from it, the layer debugger's converter too.
    Tracing is most of a conversion's time (MobileNetV2: export 9.4 s, convert 7.6 s). Two lanes that export at
    once each write a folder of their own; the first rename wins and the other's copy is dropped."""
    target = work_dir.parent / f"traced-{upstream.key[:16]}"
    if not (target / "saved_model.pb").exists():
        temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=work_dir.parent))
        with captured_native_output():
            upstream.handle.export(str(temporary / "saved_model"), format="tf_saved_model", verbose=False)
        with contextlib.suppress(OSError):  # another lane's export is in place: it is the same model
            os.rename(temporary / "saved_model", target)
        shutil.rmtree(temporary, ignore_errors=True)
    return target


def fixed_shapes(model: Any, batch: int, sample_shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    """Each Keras input's shape with the batch at `batch` and other free dimensions at the evaluation data's
    sizes, for a trace at fixed shapes (the tflite and onnx rescues); a free dimension the data does not size is a
    StageError naming it."""
    shapes = {}
    for tensor in model.inputs:
        name = str(tensor.name).split(":")[0]
        data = sample_shapes.get(name)
        shape = [batch]
        for axis, size in enumerate(tensor.shape[1:], start=1):
            if size is None and (data is None or len(data) < axis):
                raise StageError(f"fixed-shape rescue: input {name!r} leaves dimension {axis} free; no data sizes it")
            shape.append(int(size) if size is not None else int(data[axis - 1]))  # type: ignore[index]
        shapes[name] = shape
    return shapes
