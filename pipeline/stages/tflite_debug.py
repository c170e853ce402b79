"""Per-layer int8 quantization error of a TFLite conversion, from TensorFlow's QuantizationDebugger.

Knows the TFLite converter and debugger only; nothing of recipes, gates, runtimes or reports.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.frameworks import captured_native_output

TOP_LAYERS = 10
DEBUG_SAMPLES = 256  # the debugger invokes sample by sample; more adds time, not ranking quality
_SERVING_PREFIX = "serving_default_"


def run_debugger(
    tf: Any, converter: Any, batches: Callable[[], Iterator[dict[str, np.ndarray]]], input_tensors: list[str]
) -> Any:
    """Calibrate with `converter` (already configured for int8) and measure every layer on the samples.

    `input_tensors`: the converted model's input tensor names, in order; the debugger feeds by position.
    """
    dataset = _debug_dataset(batches, _input_order(input_tensors))
    with captured_native_output(), warnings.catch_warnings():
        # The debugger runs tf.lite.Interpreter, which warns that it is deprecated; nothing for a user to do.
        warnings.simplefilter("ignore")
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=dataset)
        debugger.run()
    return debugger


def layer_errors_csv(debugger: Any) -> str:
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    return buffer.getvalue()


def rank_layers(csv_text: str) -> list[dict[str, Any]]:
    """Every measured layer, worst first: by RMSE in quantization steps (sqrt(MSE)/scale), then max |error|.

    About 0.29 steps is plain rounding; a layer far above that loses information to int8.
    """
    rows = []
    for row in csv.DictReader(io.StringIO(csv_text)):
        scale = _float(row.get("scale"))
        mse = _float(row.get("mean_squared_error"))
        ratio = math.sqrt(max(mse, 0.0)) / scale if scale > 0 and math.isfinite(mse) else 0.0
        rows.append(
            {
                "tensor_name": row.get("tensor_name", ""),
                "op_name": row.get("op_name", ""),
                "rmse_over_scale": _finite(ratio),
                "max_abs_error": _finite(_float(row.get("max_abs_error"))),
            }
        )
    return sorted(rows, key=lambda r: (r["rmse_over_scale"], r["max_abs_error"]), reverse=True)


def write_layer_errors(csv_text: str, ranked: list[dict[str, Any]], work_dir: Path) -> Path:
    """The debugger's full CSV with the ranking column added, worst first, as `layer_errors.csv`."""
    rows = {row["tensor_name"]: row for row in csv.DictReader(io.StringIO(csv_text))}
    path = work_dir / "layer_errors.csv"
    fields = ["rank", "rmse_over_scale", *(csv.DictReader(io.StringIO(csv_text)).fieldnames or [])]
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fields)
        writer.writeheader()
        for rank, layer in enumerate(ranked, start=1):
            extra = {"rank": rank, "rmse_over_scale": f"{layer['rmse_over_scale']:.6g}"}
            writer.writerow({**rows.get(layer["tensor_name"], {}), **extra})
    return path


def _debug_dataset(
    batches: Callable[[], Iterator[dict[str, np.ndarray]]], order: Callable[[list[str]], list[str]]
) -> Callable[[], Iterator[list[np.ndarray]]]:
    def samples() -> Iterator[list[np.ndarray]]:
        given = 0
        for batch in batches():
            names = order(list(batch))
            for i in range(len(next(iter(batch.values())))):
                if given >= DEBUG_SAMPLES:
                    return
                given += 1
                yield [batch[name][i : i + 1] for name in names]

    return samples


def _input_order(input_tensors: list[str]) -> Callable[[list[str]], list[str]]:
    """Data input names in the order of the model's input tensors (`serving_default_pixels:0` → `pixels`)."""
    tensor_names = [name.split(":")[0].removeprefix(_SERVING_PREFIX) for name in input_tensors]

    def order(names: list[str]) -> list[str]:
        if sorted(names) == sorted(tensor_names):
            return tensor_names
        return sorted(names)  # a frozen function's inputs: flattened, i.e. sorted, order

    return order


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _finite(value: float) -> float:
    return float(f"{value:.6g}") if math.isfinite(value) else 0.0
