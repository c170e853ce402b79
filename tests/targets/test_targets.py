"""Deployment targets on real files: a model the GPU delegate cannot take (TOPK_V2), one TensorFlow Lite Micro
cannot run (ATAN2), and an int8 CNN that runs everywhere, with its TFLM arena and parity; plus the recipe rules."""

from __future__ import annotations

import json
import typing
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.errors import RecipeError
from pipeline.recipe import TargetName, load_recipe

from ..recipes import recipe_file

RANDOM = {"random": {"samples": 48, "seed": 1}}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small seeded Keras models: top-k in the middle, atan2 in the middle, and a CNN without Flatten."""
    from pipeline.frameworks import captured_native_output, import_tensorflow

    import_tensorflow()
    import keras

    root = tmp_path_factory.mktemp("targets")
    with captured_native_output():
        for name, layer in (
            # the lambdas import keras themselves: a saved Lambda is loaded without this module's names
            ("topk", lambda t: __import__("keras").ops.top_k(t, 3)[0]),
            ("atan2", lambda t: __import__("keras").ops.arctan2(t, t + 1.0)),
        ):
            keras.utils.set_random_seed(0)
            values = keras.Input((16,), name="values")
            hidden = keras.layers.Lambda(layer)(keras.layers.Dense(8)(values))
            keras.Model(values, keras.layers.Dense(3)(hidden)).save(root / f"{name}.keras")
        keras.utils.set_random_seed(0)
        pixels = keras.Input((8, 8, 1), name="pixels")
        features = keras.layers.Conv2D(8, 3, activation="relu")(pixels)
        pooled = keras.layers.GlobalAveragePooling2D()(features)
        keras.Model(pixels, keras.layers.Dense(10)(pooled)).save(root / "cnn.keras")
    return root


def _run(root: Path, name: str, outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from pipeline.run import RunOptions, run_recipe

    data = {"calibration": RANDOM, "evaluation": {"random": {"samples": 64, "seed": 2}}}
    source = {"path": f"{name}.keras", "trusted": True}
    path = recipe_file(root, name=name, source=source, outputs=outputs, data=data, file=f"{name}.yaml")
    return run_recipe(load_recipe(path), RunOptions(out_dir=root / f"out-{name}", isolate=False), lambda line: None)


def _gate(output: dict[str, Any], metric: str) -> dict[str, Any]:
    return next(gate for gate in output["parity"]["gates"] if gate["metric"] == metric)


def test_the_gpu_delegate_cannot_take_top_k(models: Path) -> None:
    report = _run(models, "topk", {"fp32": {"stages": ["tflite"], "targets": ["gpu", "xnnpack"]}})
    fp32 = report["outputs"][0]
    gpu = fp32["targets"]["gpu"]
    assert gpu["compatible"] is False
    assert gpu["unsupported"] == [{"op": "TOPK_V2", "index": 1, "reason": "Not supported op TOPK_V2"}]
    assert gpu["ops"] == 3 and gpu["method"].startswith("gpu_compatibility rules")
    # measured in LiteRT: XNNPACK takes both FULLY_CONNECTED layers, TOPK_V2 stays on the reference kernels
    xnnpack = fp32["targets"]["xnnpack"]
    assert [op["op"] for op in xnnpack["unsupported"]] == ["TOPK_V2"]
    assert (xnnpack["nodes"], xnnpack["delegated_nodes"], xnnpack["partitions"]) == (3, 2, 2)
    # the failing target fails the output (exit 1) and is a gate row in every format
    assert fp32["status"] == "failed" and report["exit_code"] == 1
    assert _gate(fp32, "target gpu")["passed"] is False and _gate(fp32, "target gpu")["value"] == 0.0
    assert fp32["parity"]["metrics"]["max_abs"] < 1e-4  # the file itself is right: only the target fails
    out = models / "out-topk"
    failures = {
        case.get("name"): case.find("failure")
        for case in ET.parse(out / "junit.xml").getroot().iter("testcase")
        if case.get("name", "").startswith("target ")
    }
    assert set(failures) == {"target gpu >= 1", "target xnnpack >= 1"}
    assert "TOPK_V2 #1: Not supported op TOPK_V2" in failures["target gpu >= 1"].get("message", "") + (
        failures["target gpu >= 1"].text or ""
    )
    assert "target gpu" in (out / "report.md").read_text()
    assert "target gpu" in (out / "report.html").read_text()
    assert json.loads((out / "report.json").read_text())["outputs"][0]["targets"]["gpu"] == gpu


def test_tflite_micro_has_no_atan2(models: Path) -> None:
    outputs = {"fp32": {"stages": ["tflite"], "targets": ["micro", "gpu"], "gates": {"micro_arena_kib": 64}}}
    fp32 = _run(models, "atan2", outputs)["outputs"][0]
    micro = fp32["targets"]["micro"]
    assert micro["compatible"] is False and micro["arena_bytes"] is None
    assert micro["unsupported"] == [{"op": "ATAN2", "index": 2, "reason": "TFLite Micro has no kernel for it"}]
    assert "ATAN2" in micro["error"] and "parity" not in micro
    assert micro["integer_only"] is False  # a float model
    assert fp32["targets"]["gpu"]["compatible"] is True  # the GPU delegate takes ATAN2
    arena = _gate(fp32, "micro_arena_kib")
    assert arena["passed"] is False and arena["value"] is None and "could not run" in arena["note"]
    assert fp32["status"] == "failed"


def test_an_int8_cnn_runs_on_every_target(models: Path) -> None:
    int8 = {"stages": [{"tflite": {"quantize": "int8", "io": "int8"}}], "targets": ["micro", "xnnpack", "gpu"]}
    outputs = {"int8": {**int8, "gates": {"micro_arena_kib": 16}}, "tight": {**int8, "gates": {"micro_arena_kib": 1}}}
    report = _run(models, "cnn", outputs)
    passed, tight = report["outputs"]
    micro = passed["targets"]["micro"]
    assert micro["compatible"] is True and micro["unsupported"] == []
    assert micro["integer_only"] is True and micro["float_ops"] == []
    assert micro["arena_method"] == "recorded (RecordingMicroAllocator)"
    assert 1024 < micro["arena_bytes"] < 16 * 1024
    assert passed["targets"]["xnnpack"]["compatible"] and passed["targets"]["gpu"]["compatible"]
    assert passed["status"] == "passed", passed["parity"]["gates"]
    # TFLM's int8 kernels and LiteRT's give the same answers to within one output quantization step
    litert, on_micro = passed["parity"]["metrics"], micro["parity"]["metrics"]
    assert micro["parity"]["samples"] == 64 and litert["cosine"] > 0.99
    assert abs(on_micro["cosine"] - litert["cosine"]) < 1e-3
    assert abs(on_micro["max_abs"] - litert["max_abs"]) < 0.05 * max(litert["max_abs"], 1e-6) + 0.02
    assert on_micro["top1_agreement"] >= litert["top1_agreement"] - 2 / 64
    # the same file under a 1 KiB bound: the arena gate fails it, with the arena measured
    arena = _gate(tight, "micro_arena_kib")
    assert arena["passed"] is False and arena["value"] == pytest.approx(micro["arena_bytes"] / 1024)
    assert tight["status"] == "failed" and report["exit_code"] == 1


def test_recipe_names_known_targets_only() -> None:
    from pipeline.targets import TARGETS

    assert set(typing.get_args(TargetName)) == set(TARGETS)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            {"stages": ["onnx"], "targets": ["gpu"]},
            r"outputs\.o\.targets: targets apply to tflite outputs; this output gives onnx",
        ),
        (
            {"stages": ["tflite"], "gates": {"micro_arena_kib": 32}},
            r"outputs\.o\.gates\.micro_arena_kib: .*add micro to outputs\.o\.targets",
        ),
        ({"stages": ["tflite"], "targets": ["tpu"]}, r"outputs\.o\.targets\[0\].*'gpu', 'xnnpack' or 'micro'"),
        ({"stages": ["tflite"], "targets": ["gpu", "gpu"]}, r"outputs\.o\.targets.*each target once \(repeated: gpu\)"),
        (
            {"stages": ["tflite"], "targets": ["micro"], "gates": {"micro_arena_kib": 0}},
            r"micro_arena_kib.*greater than 0",
        ),
    ],
)
def test_bad_targets_are_bad_input(tmp_path: Path, output: dict[str, Any], expected: str) -> None:
    (tmp_path / "model.keras").write_bytes(b"validate does not load models")
    np.savez(tmp_path / "data.npz", x=np.zeros((4, 8, 8, 1), np.float32))
    path = recipe_file(tmp_path, name="t", source="model.keras", outputs={"o": output})
    with pytest.raises(RecipeError, match=expected) as error:
        load_recipe(path)
    assert error.value.exit_code == 2


def test_analyzer_warnings_are_parsed_where_the_analyzer_checks() -> None:
    """TensorFlow before 2.19 prints a warning under each operator the GPU delegate cannot take."""
    from pipeline.targets.gpu import parse_analysis

    text = (
        "Subgraph#0 main(T#0) -> [T#3]\n  Op#0 FULLY_CONNECTED(T#0, T#1, T#-1) -> [T#2]\n"
        "  Op#1 TOPK_V2(T#2, T#4[3]) -> [T#3, T#5]\nGPU COMPATIBILITY WARNING: Not supported op TOPK_V2\n\n"
        "GPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues at nodes 1 with TFLite runtime\n"
        "Tensors of Subgraph#0\n  T#0(values) shape_signature:[-1, 16], type:FLOAT32\n"
        "  T#1(dense/MatMul) shape:[8, 16], type:FLOAT32 RO 512 bytes, buffer: 2, data:[0.1, ...]\n"
    )
    analysis = parse_analysis(text)
    assert [(op.index, op.name, op.warnings) for op in analysis.ops] == [
        (0, "FULLY_CONNECTED", []),
        (1, "TOPK_V2", ["Not supported op TOPK_V2"]),
    ]
    assert analysis.ops[1].inputs == [2, 4] and analysis.tensors[(0, 1)].const
    assert not analysis.tensors[(0, 0)].const and analysis.tensors[(0, 0)].dims == (-1, 16)
