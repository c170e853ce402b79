"""Outputs of one recipe at once (`--jobs 2` on a single recipe): lanes by first stage, each with its own conversion
worker; the report is the one a run one output at a time writes."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.recipe import load_recipe
from pipeline.run.lanes import lanes_of, why_not_in_lanes
from pipeline.run.plan import plan_recipe

from ..cli import edgeport
from ..recipes import digits_data, recipe_file

OUTPUTS = {
    "fp32": {"stages": ["tflite"]},
    "onnx": {"stages": ["onnx"]},
    "fp32-again": {"stages": ["tflite"], "gates": {"max_abs": 1.0e-3}},  # shares fp32's first stage: its lane
}


def _recipe(zoo, directory: Path, outputs: dict) -> Path:
    return recipe_file(directory, name="lanes", source=zoo.keras3, data=digits_data(zoo, limit=64), outputs=outputs)


def test_outputs_that_share_a_first_stage_share_a_lane(zoo, tmp_path: Path) -> None:
    plans = plan_recipe(load_recipe(_recipe(zoo, tmp_path, OUTPUTS)), "source-key")
    assert [[plan.name for _, plan in lane] for lane in lanes_of(plans)] == [["fp32", "fp32-again"], ["onnx"]]
    assert why_not_in_lanes(plans) is None
    trained = {**OUTPUTS, "pruned": {"stages": [{"prune": {"epochs": 1}}, "tflite"]}}
    data = digits_data(zoo, limit=64, fine_tune=True)
    recipe = recipe_file(tmp_path, name="lanes", source=zoo.keras3, data=data, outputs=trained, file="t.yaml")
    assert "pruned has a prune" in str(why_not_in_lanes(plan_recipe(load_recipe(recipe), "source-key")))


def test_two_jobs_build_outputs_at_once_and_report_as_one_at_a_time(zoo, tmp_path: Path) -> None:
    recipe = _recipe(zoo, tmp_path, OUTPUTS)
    at_once = edgeport("run", recipe, "--out", tmp_path / "at-once", "--no-cache", "--jobs", "2")
    assert at_once.returncode == 0, at_once.stderr
    assert "2 lanes, each with its conversion worker" in at_once.stderr
    lines = at_once.stderr.splitlines()
    onnx_started = next(i for i, line in enumerate(lines) if "onnx: onnx opset=17 ..." in line)
    fp32_done = next(i for i, line in enumerate(lines) if "fp32: tflite done" in line)
    assert onnx_started < fp32_done, "the second lane started before the first finished its conversion"
    one_at_a_time = edgeport("run", recipe, "--out", tmp_path / "in-order", "--no-cache")
    assert one_at_a_time.returncode == 0, one_at_a_time.stderr
    both = [json.loads((tmp_path / out / "report.json").read_text())["outputs"] for out in ("at-once", "in-order")]
    for parallel, sequential in zip(*both, strict=True):
        assert parallel["name"] == sequential["name"] and parallel["status"] == sequential["status"] == "passed"
        assert parallel["sha256"] == sequential["sha256"]
        assert parallel["parity"]["metrics"] == sequential["parity"]["metrics"]
        assert [stage["reused"] for stage in parallel["stages"]] == [stage["reused"] for stage in sequential["stages"]]
    assert both[0][2]["stages"][0]["reused"] is True  # fp32-again, built once in fp32's lane
