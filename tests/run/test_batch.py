"""Many recipes in one run: a folder each, one summary and one junit.xml, the worst exit code; --jobs runs them
in worker processes over one shared cache."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pipeline.cli import main

from ..helpers import assert_batch_summary
from ..recipes import write_recipe


def _recipes(zoo, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    good = f"source: {zoo.keras3}\noutputs:\n  fp32: {{stages: [tflite]}}\n"
    strict = good.replace("[tflite]}", "[tflite], gates: {max_abs: 0.0}}")
    return [
        write_recipe(folder, f"name: first\n{good}", "a.yaml"),
        write_recipe(folder, f"name: second\n{good}  onnx: {{stages: [onnx]}}\n", "b.yaml"),
        write_recipe(folder, f"name: strict\n{strict}", "c.yaml"),
        write_recipe(folder, "name: broken\nsource: [unclosed\n", "d.yaml"),
    ]


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_batch_writes_one_summary_and_exits_with_the_worst_code(zoo, tmp_path: Path, jobs: int) -> None:
    _recipes(zoo, tmp_path / "recipes")
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "recipes"), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    code = main([*args, "--jobs", str(jobs)])
    summary = assert_batch_summary(out, code)
    assert "YAML syntax error" in summary["recipes"][3]["error"]
    suites = ET.parse(out / "junit.xml").getroot().findall("testsuite")
    assert [int(suite.get("failures")) + int(suite.get("errors")) > 0 for suite in suites] == [False, False, True, True]
    assert "FAILED (exit code 2)" in (out / "summary.md").read_text()


def test_two_recipes_of_one_name_are_refused_before_any_work(zoo, tmp_path: Path, capsys) -> None:
    good = f"name: same\nsource: {zoo.keras3}\noutputs:\n  fp32: {{stages: [tflite]}}\n"
    paths = [write_recipe(tmp_path, good, "x.yaml"), write_recipe(tmp_path, good, "y.yaml")]
    assert main(["run", *map(str, paths), "--out", str(tmp_path / "out")]) == 2
    assert "are both named 'same'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
