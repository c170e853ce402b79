"""Reproducible builds: seeded training, cache keys that follow the trained weights and the toolchain, a warm run
that ships what it reports, and `--verify-reproducible` / `gates: {reproducible: true}`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.core.artifact import Artifact
from pipeline.provenance import read_provenance
from pipeline.recipe import load_recipe
from pipeline.run import RunOptions, run_recipe
from pipeline.run.executor import ChainResult, with_upstream_weights
from pipeline.run.plan import PlanNode
from pipeline.run.reproduce import compare_builds, reproducible_gate
from pipeline.stages import STAGES

from ..helpers import checked_result
from ..recipes import digits_data, recipe_file


def _run(recipe: Path, out: Path, lines: list[str] | None = None, **options: object) -> dict:
    log = lines.append if lines is not None else (lambda line: None)
    return run_recipe(load_recipe(recipe), RunOptions(out_dir=out, **options), log=log)  # type: ignore[arg-type]


def _shipped(report: dict) -> dict[str, str]:
    return {output["name"]: output["sha256"] for output in report["outputs"]}


@pytest.fixture(scope="module")
def recipe(zoo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    outputs = {
        "pruned-onnx": {"stages": [{"prune": {"sparsity": 0.5, "epochs": 1}}, "onnx"]},
        "clustered-int8": {
            "stages": [{"cluster": {"number_of_clusters": 8, "epochs": 1}}, {"tflite": {"quantize": "int8"}}]
        },
    }
    data = digits_data(zoo, limit=100, fine_tune=True, fine_tune_limit=400)
    return recipe_file(tmp_path_factory.mktemp("repro"), name="repro", source=zoo.keras3, data=data, outputs=outputs)


def test_two_cold_runs_give_the_same_files(recipe: Path, tmp_path: Path) -> None:
    first = _run(recipe, tmp_path / "one", use_cache=False)
    second = _run(recipe, tmp_path / "two", use_cache=False)
    assert all(output["status"] == "passed" for output in first["outputs"]), first["outputs"]
    assert _shipped(first) == _shipped(second)
    for output in first["outputs"]:  # what is compared is the stamped file that ships
        provenance = read_provenance(tmp_path / "one" / output["artifact"])
        assert provenance is not None and provenance.output == output["name"]
        trained = output["stages"][0]["details"]
        assert trained["seed"] == 0 and len(trained["weights_sha256"]) == 64


def test_a_warm_run_retrains_nothing_and_ships_what_it_reports(recipe: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cold = _run(recipe, tmp_path / "cold", cache_dir=cache)
    warm = _run(recipe, tmp_path / "warm", cache_dir=cache)
    assert _shipped(cold) == _shipped(warm)
    for output in warm["outputs"]:
        assert [stage["cache"] for stage in output["stages"]] == ["hit", "hit"]
    onnx = {output["name"]: output for output in warm["outputs"]}["pruned-onnx"]
    (before,) = [c for c in onnx["comparisons"] if c["kind"] == "before_final_stage"]
    assert before["metrics"]["max_abs"] < 1e-4  # the shipped ONNX is the pruned model the report compares with


def test_keys_after_a_training_stage_follow_its_weights() -> None:
    node = PlanNode(key="k", kind="onnx", options=STAGES["onnx"].Options(), label="onnx")
    trained = Artifact(kind="keras", path=Path("m.keras"), key="p", details={"weights_sha256": "a" * 64})
    retrained = Artifact(kind="keras", path=Path("m.keras"), key="p", details={"weights_sha256": "b" * 64})
    source = Artifact(kind="keras", path=Path("s.keras"), key="s")
    assert with_upstream_weights(node, source).key == "k"
    assert with_upstream_weights(node, trained).key != with_upstream_weights(node, retrained).key != "k"


def test_the_cached_reference_follows_package_versions(
    zoo, recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = recipe_file(
        tmp_path, name="ref", source=zoo.keras3, outputs={"fp32": {"stages": ["tflite"]}}, file="ref.yaml"
    )
    cache, logs = tmp_path / "cache", [[], [], []]
    _run(small, tmp_path / "a", logs[0], cache_dir=cache)
    _run(small, tmp_path / "b", logs[1], cache_dir=cache)
    from pipeline.core.toolchain import package_versions

    newer = {**package_versions(), "tensorflow": "99.0.0"}
    monkeypatch.setattr("pipeline.run.checker.package_versions", lambda: newer)
    _run(small, tmp_path / "c", logs[2], cache_dir=cache)
    cached = [any("reference source (cached)" in line for line in lines) for lines in logs]
    assert cached == [False, True, False]


def test_verify_reproducible_records_both_builds_and_the_gate_fails_a_difference(zoo, tmp_path: Path) -> None:
    recipe = recipe_file(
        tmp_path,
        name="verify",
        source=zoo.keras3,
        outputs={
            "onnx": {"stages": ["onnx"], "gates": {"max_abs": 1.0e-4, "reproducible": True}},
            "fp32": {"stages": ["tflite"]},
        },
    )
    report = _run(recipe, tmp_path / "out", verify_reproducible=True, use_cache=False)
    outputs = {output["name"]: output for output in report["outputs"]}
    for output in outputs.values():
        found = output["reproducible"]
        assert found["reproducible"] is True and found["first"] == found["rebuilt"] == output["sha256"]
    gates = {gate["metric"]: gate for gate in outputs["onnx"]["parity"]["gates"]}
    assert gates["reproducible"]["passed"] is True and report["exit_code"] == 0
    assert 'name="reproducible &gt;= 1"' in (tmp_path / "out" / "junit.xml").read_text()
    # A rebuild that differs (here: the TFLite file in place of the ONNX one) fails the gate and the output.
    result = checked_result("onnx", max_abs=1e-6)
    result.published = {"sha256": outputs["onnx"]["sha256"]}
    assert result.status == "passed"
    other = tmp_path / "other.onnx"
    shutil.copy(tmp_path / "out" / "fp32" / "model.tflite", other)
    result.reproducible = compare_builds(result, ChainResult([Artifact(kind="onnx", path=other, key="x")], [], []))
    result.add_gate(reproducible_gate(result.reproducible))
    entry = result.to_dict()
    assert entry["reproducible"]["reproducible"] is False and entry["status"] == "failed"
    gate = entry["parity"]["gates"][-1]
    assert gate["metric"] == "reproducible" and gate["value"] == 0.0 and "rebuilt sha256" in gate["note"]
