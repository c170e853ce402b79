"""The stage cache: warm re-runs reuse verified artifacts, corrupt entries are rebuilt, keys follow content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.recipe import load_recipe
from pipeline.run import RunOptions, run_recipe
from pipeline.run.cache import CACHE_LAYOUT

from ..cli import edgeport_env, edgeport_watching, imported
from ..recipes import digits_data, recipe_file


def _recipe(zoo, tmp_path: Path, opset: int = 17, limit: int = 64) -> Path:
    outputs = {
        "fp32": {"stages": ["tflite"]},
        "int8": {"stages": [{"tflite": {"quantize": "int8"}}]},
        "onnx": {"stages": [{"onnx": {"opset": opset}}]},
    }
    data, file = digits_data(zoo, limit=limit), f"recipe-{opset}-{limit}.yaml"
    return recipe_file(tmp_path, name="cached", source=zoo.keras3, data=data, outputs=outputs, file=file)


def _run(recipe: Path, out: Path, cache: Path, use_cache: bool = True) -> dict:
    options = RunOptions(out_dir=out, cache_dir=cache, use_cache=use_cache)
    return run_recipe(load_recipe(recipe), options, log=lambda message: None)


def _caches(report: dict) -> dict[str, str]:
    return {output["name"]: output["stages"][0]["cache"] for output in report["outputs"]}


def test_warm_run_reuses_every_stage_without_tensorflow(zoo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _run(_recipe(zoo, tmp_path), tmp_path / "a", cache)
    assert _caches(first) == {"fp32": "stored", "int8": "stored", "onnx": "stored"}
    env = edgeport_env(EDGEPORT_CACHE_DIR=cache)
    result = edgeport_watching("run", _recipe(zoo, tmp_path), "--out", tmp_path / "b", env=env)
    assert result.returncode == 0, result.stderr
    assert not imported(result, "tensorflow") and "cached (built in" in result.stderr
    second = json.loads((tmp_path / "b" / "report.json").read_text())
    assert _caches(second) == {"fp32": "hit", "int8": "hit", "onnx": "hit"}
    assert second["cache"]["source_loaded"] is False
    for one, two in zip(first["outputs"], second["outputs"], strict=True):
        assert one["sha256"] == two["sha256"]
        assert one["parity"]["metrics"] == two["parity"]["metrics"]


def test_corrupt_entry_is_rebuilt_not_used(zoo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _run(_recipe(zoo, tmp_path), tmp_path / "a", cache)
    key = first["outputs"][0]["stages"][0]["key"]
    cached_file = cache / f"v{CACHE_LAYOUT}" / "stages" / key / "model.tflite"
    cached_file.write_bytes(cached_file.read_bytes()[:100])  # truncated, as a killed copy would leave it
    second = _run(_recipe(zoo, tmp_path), tmp_path / "b", cache)
    assert _caches(second)["fp32"] == "stored" and second["outputs"][0]["status"] == "passed"
    assert any("did not match its hash" in note for note in second["cache"]["notes"])
    assert second["outputs"][0]["sha256"] == first["outputs"][0]["sha256"]


def test_keys_follow_options_and_data(zoo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _run(_recipe(zoo, tmp_path), tmp_path / "a", cache)
    other_opset = _run(_recipe(zoo, tmp_path, opset=15), tmp_path / "b", cache)
    assert _caches(other_opset) == {"fp32": "hit", "int8": "hit", "onnx": "stored"}
    other_calibration = _run(_recipe(zoo, tmp_path, limit=32), tmp_path / "c", cache)
    assert _caches(other_calibration) == {"fp32": "hit", "int8": "stored", "onnx": "hit"}


def test_no_cache_reads_and_writes_nothing(zoo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    report = _run(_recipe(zoo, tmp_path), tmp_path / "a", cache, use_cache=False)
    assert set(_caches(report).values()) == {"off"} and not cache.exists()
    assert report["cache"]["enabled"] is False


@pytest.mark.parametrize("damage", ["entry", "partial"])
def test_unreadable_or_unfinished_entries_are_ignored(zoo, tmp_path: Path, damage: str) -> None:
    cache = tmp_path / "cache"
    first = _run(_recipe(zoo, tmp_path), tmp_path / "a", cache)
    entry = cache / f"v{CACHE_LAYOUT}" / "stages" / first["outputs"][2]["stages"][0]["key"]
    if damage == "entry":
        (entry / "entry.json").write_text("{not json")
    else:  # what a run killed while copying leaves: a staging directory, never renamed into place
        entry.rename(entry.with_name(f".{entry.name[:12]}-x.partial"))
    second = _run(_recipe(zoo, tmp_path), tmp_path / "b", cache)
    assert _caches(second)["onnx"] == "stored" and second["outputs"][2]["status"] == "passed"
