"""Keras Applications (weights=None, 32×32) through TFLite fp32/int8 and ONNX fp32/static-int8.

Random weights are the hard case for int8: nothing in training has tamed the activation ranges, so
the int8 gates here are looser than a trained model needs. The batch-norm statistics are set from one
batch so activations keep a unit scale (the freshly initialised moving statistics shrink them to ~1e-12).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.cpu import cpu_info
from pipeline.recipe import load_recipe
from pipeline.run import RunOptions, run_recipe
from scripts.applications import build_application

from ..recipes import recipe_file

pytestmark = pytest.mark.slow


def _recipe(directory: Path, name: str, int8_cosine: float) -> Path:
    exact = {"cosine": 0.99999, "max_abs": 1.0e-2}
    int8 = {"cosine": int8_cosine}
    static = {"quantize": "static", "per_channel": True}
    outputs = {
        "fp32": {"stages": ["tflite"], "gates": exact},
        "int8": {"stages": [{"tflite": {"quantize": "int8"}}], "gates": int8},
        "onnx": {"stages": ["onnx"], "gates": exact},
        "onnx-int8": {
            "stages": [{"onnx": {**static, "activation_type": "uint8", "weight_type": "uint8"}}],
            "runtime": {"graph_optimization": "both"},
            "gates": int8,
        },
        "onnx-int8-s8s8": {"stages": [{"onnx": static}], "gates": int8},
    }
    data = {"calibration": {"random": {"samples": 32, "seed": 1}}, "evaluation": {"random": {"samples": 32, "seed": 2}}}
    return recipe_file(directory, name=name, source=f"{name}.keras", data=data, outputs=outputs)


# int8 cosine measured on these random networks (32 samples): MobileNetV2 ~0.78, MobileNetV3Small ~0.96,
# EfficientNetB0 ~0.72 (swish and squeeze-excite blocks spread activations the most); gates sit below.
@pytest.mark.parametrize(
    ("name", "int8_cosine"), [("MobileNetV2", 0.7), ("MobileNetV3Small", 0.9), ("EfficientNetB0", 0.65)]
)
def test_application_passes_sensible_gates(tmp_path: Path, name: str, int8_cosine: float) -> None:
    build_application(name, tmp_path / f"{name}.keras")
    recipe = load_recipe(_recipe(tmp_path, name, int8_cosine))
    report = run_recipe(recipe, RunOptions(out_dir=tmp_path / "out"), log=lambda message: None)
    outputs = {output["name"]: output for output in report["outputs"]}
    s8s8 = outputs.pop("onnx-int8-s8s8")
    failing = {name: output["parity"]["gates"] for name, output in outputs.items() if output["status"] != "passed"}
    assert not failing, {n: [(g["metric"], g["value"]) for g in gates] for n, gates in failing.items()}
    assert outputs["int8"]["size_bytes"] < 0.35 * outputs["fp32"]["size_bytes"]
    assert outputs["onnx-int8"]["stages"][0]["details"]["ops"]["QuantizeLinear"] > 10
    _assert_s8s8_as_this_cpu_computes_it(name, s8s8)
    if name == "MobileNetV3Small":  # tf2onnx's transpose optimizer fails here and says so only in its log
        assert any("optimize_transpose" in warning for warning in outputs["onnx"]["warnings"])


def _assert_s8s8_as_this_cpu_computes_it(name: str, output: dict) -> None:
    """onnxruntime's default S8S8 file: its fused int8 kernels saturate on x86 without VNNI.

    Measured on an AVX2 EPYC, optimized / unoptimized cosine: MobileNetV2 0.18 / 0.76, MobileNetV3Small
    0.91 / 0.97. EfficientNetB0 sits at the finding's threshold there (gap 0.52 of its quantization error, optimized
    cosine 0.78 / 0.73), so it is not asserted on such CPUs. On VNNI or ARM CPUs both runs compute the QDQ
    arithmetic: no finding, and the gate passes.
    """
    (gap,) = [c for c in output["comparisons"] if c["kind"] == "setting_gap"]
    (unoptimized,) = [c for c in output["comparisons"] if c["kind"] == "runtime_setting"]
    if not cpu_info()["int8_may_saturate"]:
        assert output["findings"] == [] and output["status"] == "passed", output["parity"]["metrics"]
    elif name != "EfficientNetB0":  # at the threshold there: only the comparison pair above is asserted
        assert [finding["kind"] for finding in output["findings"]] == ["kernel_saturation"]
        assert gap["metrics"]["rmse"] > unoptimized["metrics"]["rmse"]
        if name == "MobileNetV2":  # the verdict itself flips: the same file passes on a VNNI machine
            assert output["status"] == "failed" and output["parity"]["metrics"]["cosine"] < 0.5
