"""tflite `debug: true`: TFLite's QuantizationDebugger ranks the digits CNN's layers by int8 error."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.sources import load_source
from pipeline.stages.tflite import TfliteOptions

from ..helpers import predict, run_stage, top1_agreement


def test_debug_ranks_layers_and_writes_the_full_csv(zoo, tmp_path: Path) -> None:
    source = load_source(zoo.keras3)
    artifact = run_stage(
        "tflite", source.artifact, tmp_path, calibration=zoo.x_test[:100], quantize="int8", io="int8", debug=True
    )
    layers = artifact.details["layer_errors"]
    assert 4 <= len(layers) <= 10
    assert {"tensor_name", "op_name", "rmse_over_scale", "max_abs_error"} <= set(layers[0])
    ratios = [layer["rmse_over_scale"] for layer in layers]
    assert ratios == sorted(ratios, reverse=True) and ratios[0] > 0
    assert {layer["op_name"] for layer in layers} >= {"CONV_2D", "FULLY_CONNECTED"}
    with (tmp_path / "layer_errors.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == len(layers)  # this model has fewer than 10 measured layers: all of them
    assert {"rank", "rmse_over_scale", "mean_squared_error", "scale", "tensor_name"} <= set(rows[0])
    assert rows[0]["tensor_name"] == layers[0]["tensor_name"] and rows[0]["rank"] == "1"
    # Debugging measures; it must not change the file the stage gives.
    out = predict(artifact, zoo.x_test)
    assert top1_agreement(out, zoo.reference) >= 0.97


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"quantize": "dynamic", "debug": True}, "debug needs quantize: int8"),
        ({"quantize": "int16x8", "debug": True}, "debug needs quantize: int8"),
        ({"quantize": "none", "fallback": "auto"}, "fallback needs quantize: int8"),
        ({"quantize": "int8", "fallback": "auto", "max_float_layers": 0}, "greater than or equal to 1"),
    ],
)
def test_debug_and_fallback_need_int8(options: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TfliteOptions(**options)
