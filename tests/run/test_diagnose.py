"""Same file, different CPU: quantized ONNX runs with and without onnxruntime's graph optimizations, the CPU is
in the report, and a gap larger than the quantization error is a finding with its fix.

The int8 kernels onnxruntime fuses differ by instruction set: x86 without VNNI adds u8×s8 product pairs in
int16 and saturates; VNNI and ARM's dot products do not. These tests read the CPU and assert what it should give.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from pipeline.core.cpu import _parse_cpuinfo, cpu_info, int8_kernels
from pipeline.errors import RecipeError
from pipeline.recipe import load_recipe
from pipeline.run import RunOptions, run_recipe
from pipeline.run.diagnose import GAP_RATIO
from pipeline.sources import load_source

from ..helpers import run_stage
from ..recipes import digits_data, recipe_file

EPYC = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse4_1 avx avx2 fma f16c\n\nprocessor\t: 1\n"
SAPPHIRE = "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t: avx2 fma avx512f avx512bw avx512_vnni amx_int8\n"
GRAVITON = "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes asimddp i8mm sve\nCPU part\t: 0xd40\n"


def test_cpuinfo_is_read_into_kernel_features() -> None:
    model, flags = _parse_cpuinfo(EPYC)
    assert (model, flags) == ("AMD EPYC", ["sse4_1", "avx", "avx2", "fma", "f16c"])
    assert int8_kernels("x86_64", flags)["int8_may_saturate"] is True
    model, flags = _parse_cpuinfo(SAPPHIRE)
    assert "avx512_vnni" in flags and "amx_int8" in flags
    assert int8_kernels("x86_64", flags)["int8_may_saturate"] is False
    model, flags = _parse_cpuinfo(GRAVITON)
    assert (model, flags) == ("0xd40", ["neon", "dotprod", "i8mm", "sve"])
    assert int8_kernels("aarch64", flags) == {"int8_kernels": "i8mm (into int32)", "int8_may_saturate": False}


def _recipe(zoo, directory: Path) -> Path:
    static = {"quantize": "static", "per_channel": True}
    uint8 = {"activation_type": "uint8", "weight_type": "uint8"}
    outputs = {
        "onnx": {"stages": ["onnx"]},
        "onnx-int8": {"stages": [{"onnx": static}], "gates": {"cosine": 0.9}},
        "onnx-int8-reduced": {
            "stages": [{"onnx": {**static, "reduce_range": True}}],
            "runtime": {"graph_optimization": "both"},
            "gates": {"cosine": 0.99},
        },
        "onnx-int8-u8u8": {
            "stages": [{"onnx": {**static, **uint8, "calibration_method": "entropy"}}],
            "gates": {"cosine": 0.99},
        },
    }
    return recipe_file(directory, name="kernels", source=zoo.keras3, data=digits_data(zoo, limit=200), outputs=outputs)


@pytest.fixture(scope="module")
def kernels_report(zoo, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("kernels")
    recipe = load_recipe(_recipe(zoo, tmp))
    out = tmp / "out"
    return run_recipe(recipe, RunOptions(out_dir=out), log=lambda message: None), out


def _outputs(report: dict) -> dict[str, dict]:
    return {output["name"]: output for output in report["outputs"]}


def test_report_names_the_cpu_in_every_format(kernels_report) -> None:
    report, out = kernels_report
    cpu = report["environment"]["cpu"]
    assert cpu == json.loads(json.dumps(cpu_info()))
    assert cpu["architecture"] and cpu["model"] and isinstance(cpu["features"], list)
    markdown = (out / "report.md").read_text()
    assert f"| cpu | {cpu['model']}" in markdown
    assert cpu["model"] in (out / "report.html").read_text()
    junit = (out / "junit.xml").read_text()
    assert f'name="cpu.features" value="{" ".join(cpu["features"])}"' in junit


def test_quantized_onnx_runs_both_ways_and_the_gap_is_judged_for_this_cpu(kernels_report) -> None:
    report, out = kernels_report
    outputs = _outputs(report)
    assert outputs["onnx"]["comparisons"] == [] and outputs["onnx"]["findings"] == []  # float: one run
    int8 = outputs["onnx-int8"]
    kinds = {comparison["kind"]: comparison for comparison in int8["comparisons"]}
    assert kinds["runtime_setting"]["roles"] == {"candidate": "unoptimized", "reference": "source"}
    assert kinds["runtime_setting"]["gates"] == []  # graph_optimization: all gates the optimized run only
    gap = kinds["setting_gap"]
    assert gap["roles"] == {"reference": "unoptimized", "candidate": "optimized"}
    gap_rmse, quantization_rmse = gap["metrics"]["rmse"], kinds["runtime_setting"]["metrics"]["rmse"]
    if cpu_info()["int8_may_saturate"]:
        # Measured on an AVX2 EPYC: gap rmse 0.83 against a quantization rmse of 0.12 (7×).
        assert gap_rmse > quantization_rmse  # 7× the threshold of a finding (half the quantization error)
        (finding,) = int8["findings"]
        assert finding["kind"] == "kernel_saturation" and finding["measured"]["ratio"] > 1
        assert "reduce_range: true" in finding["fix"] and "uint8" in finding["fix"]
        assert "kernel saturation" in (out / "report.md").read_text()
        assert "kernel saturation" in (out / "report.html").read_text()
    else:  # VNNI and ARM dot products accumulate in int32: the fused kernels follow the QDQ arithmetic
        assert gap_rmse <= GAP_RATIO * quantization_rmse and int8["findings"] == []


def test_reduce_range_and_uint8_keep_the_qdq_arithmetic_on_every_cpu(kernels_report) -> None:
    report, _ = kernels_report
    outputs = _outputs(report)
    reduced = outputs["onnx-int8-reduced"]
    assert reduced["status"] == "passed" and reduced["findings"] == []
    against = [gate for c in reduced["comparisons"] for gate in c["gates"]]
    assert against and all("graph optimizations disabled" in gate["against"] for gate in against)
    details = reduced["stages"][0]["details"]
    assert details["reduce_range"] is True and details["format"] == "QDQ"
    u8 = outputs["onnx-int8-u8u8"]
    assert u8["status"] == "passed" and u8["findings"] == []
    details = u8["stages"][0]["details"]
    assert (details["activation_type"], details["weight_type"], details["calibration_method"]) == (
        "uint8",
        "uint8",
        "entropy",
    )


def test_quantization_settings_are_in_the_cache_key(zoo, tmp_path: Path) -> None:
    from pipeline.run.plan import plan_recipe

    keys = {plan.name: plan.nodes[-1].key for plan in plan_recipe(load_recipe(_recipe(zoo, tmp_path)), "src")}
    assert len(set(keys.values())) == 4


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (
            {"stages": ["tflite"], "runtime": {"graph_optimization": "both"}},
            "graph_optimization: applies to onnx outputs",
        ),
        (
            {"stages": [{"onnx": {"quantize": "dynamic", "activation_type": "uint8"}}]},
            "activation_type apply to quantize: st",
        ),
        ({"stages": [{"onnx": {"reduce_range": True}}]}, "reduce_range apply to quantized exports"),
        ({"stages": [{"onnx": {"quantize": "static", "calibration_method": "mse"}}]}, "calibration_method"),
    ],
)
def test_settings_that_do_not_apply_are_refused(zoo, tmp_path: Path, output: dict, message: str) -> None:
    data = {"calibration": {"random": {"samples": 4}}}
    path = recipe_file(tmp_path, name="bad", source=zoo.keras3, data=data, outputs={"x": output})
    with pytest.raises(RecipeError, match=message):
        load_recipe(path)


def test_a_fixed_batch_calibrates_on_every_sample(zoo, tmp_path: Path) -> None:
    """With dynamic_batch: false the file takes one sample a run; every calibration sample must still count."""
    calibration = zoo.x_test[:64].copy()
    calibration[0] *= 0.05  # the first sample alone would give a range twenty times too small
    artifact = run_stage(
        "onnx",
        load_source(zoo.keras3).artifact,
        tmp_path,
        calibration,
        quantize="static",
        dynamic_batch=False,
    )
    model = onnx.load(str(artifact.path))
    initializers = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    first = next(node for node in model.graph.node if node.op_type == "QuantizeLinear")
    scale = float(initializers[first.input[1]])
    span = float(calibration.max() - min(calibration.min(), 0.0))
    assert scale == pytest.approx(span / 255, rel=0.05), (scale, span / 255)
    assert np.isfinite(scale)
