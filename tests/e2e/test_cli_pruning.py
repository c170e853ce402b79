"""A pruning recipe run as a user runs it: one prune shared by an int8 TFLite and an ONNX output."""

from __future__ import annotations

from pathlib import Path

from ..cli import run_report
from ..recipes import digits_data, recipe_file


def test_prune_once_then_int8_tflite_and_onnx(zoo, tmp_path: Path) -> None:
    outputs = {
        "pruned-int8": {
            "stages": [{"prune": {"sparsity": 0.5, "epochs": 1}}, {"tflite": {"quantize": "int8", "io": "int8"}}],
            "gates": {"top1_agreement": 0.93, "accuracy_drop": 0.03},
        },
        "pruned-onnx": {
            "stages": [{"prune": {"sparsity": 0.5, "epochs": 1}}, {"onnx": {"opset": 17}}],
            "gates": {"top1_agreement": 0.93},
        },
    }
    recipe = recipe_file(
        tmp_path, name="pruning", source=zoo.keras3, data=digits_data(zoo, limit=100, fine_tune=True), outputs=outputs
    )
    out = tmp_path / "out"
    report = run_report(recipe, out, 0)
    int8, onnx = report["outputs"]
    assert [s["kind"] for s in int8["stages"]] == ["prune", "tflite"]
    assert int8["stages"][0]["reused"] is False and onnx["stages"][0]["reused"] is True
    assert onnx["stages"][0]["key"] == int8["stages"][0]["key"]
    assert report["passed"] is True and {o["status"] for o in report["outputs"]} == {"passed"}
    prune = int8["stages"][0]["details"]
    assert abs(prune["overall_sparsity"] - 0.5) <= 0.02
    assert set(prune["sparsity"]) == {"conv2d", "conv2d_1", "dense", "logits"}
    for output in (int8, onnx):
        (comparison,) = output["comparisons"]  # against the pruned Keras model, before the conversion
        assert comparison["reference"].startswith("stages[0] prune")
    assert int8["comparisons"][0]["metrics"]["top1_agreement"] >= 0.95
    assert onnx["comparisons"][0]["metrics"]["max_abs"] < 1e-4  # ONNX is exact to the pruned model
    assert int8["gzip_bytes"] < int8["size_bytes"]
