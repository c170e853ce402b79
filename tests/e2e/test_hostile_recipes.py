"""Hostile and careless recipes: bounded work and a short message naming the culprit, exit 2, nothing written.

An alias bomb, a huge file, a FIFO or a device where a recipe or a model should be, and names that would put an
output where a report goes. Each is driven through the real CLI in-process and must end fast."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.recipe import MAX_RECIPE_BYTES, RESERVED_NAMES
from pipeline.report import REPORT_FILES

from ..recipes import write_recipe

BOMB = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefg", "bcdefgh", strict=True)),
        f"name: &i [{', '.join(['*h'] * 9)}]",
        "source: model.keras",
        "outputs: {fp32: {stages: [tflite]}}",
    ]
)


def _refused(capsys, *args: str | Path) -> str:
    """Run the CLI; it must exit 2 within seconds with one short line; that line."""
    started = time.monotonic()
    code = main([str(arg) for arg in args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert time.monotonic() - started < 30
    assert len(err) < 600 and len(err.strip().splitlines()) <= 3, err[:2000]
    return err


def test_an_alias_bomb_is_refused_with_a_short_message(tmp_path: Path, capsys) -> None:
    assert len(BOMB) < 700
    err = _refused(capsys, "validate", write_recipe(tmp_path, BOMB))
    assert "expands to over 100,000 values" in err


def test_an_alias_that_contains_itself_is_refused(tmp_path: Path, capsys) -> None:
    err = _refused(capsys, "validate", write_recipe(tmp_path, "name: &a [*a]\nsource: m.keras\noutputs: {}\n"))
    assert "contains it" in err


def test_a_huge_value_is_echoed_as_an_excerpt(tmp_path: Path, capsys) -> None:
    text = f"name: {'x' * 200_000}\nsource: model.keras\noutputs: {{fp32: {{stages: [tflite]}}}}\n"
    err = _refused(capsys, "validate", write_recipe(tmp_path, text))
    assert "name (line 1)" in err and "..." in err


def test_a_recipe_over_the_size_limit_is_refused_unread(tmp_path: Path, capsys) -> None:
    path = write_recipe(tmp_path, "name: x\n" + "#" * MAX_RECIPE_BYTES, "big.yaml")
    assert "a recipe is at most 1,048,576" in _refused(capsys, "validate", path)


def test_a_fifo_as_recipe_or_model_is_refused_without_blocking(zoo, tmp_path: Path, capsys) -> None:
    fifo = tmp_path / "recipe.yaml"
    os.mkfifo(fifo)
    assert "recipe.yaml is a FIFO; a recipe is a YAML file" in _refused(capsys, "validate", fifo)
    os.mkfifo(tmp_path / "model.keras")
    recipe = write_recipe(tmp_path, "name: x\nsource: model.keras\noutputs: {fp32: {stages: [tflite]}}\n", "r.yaml")
    for command in (
        ("validate", recipe),
        ("run", recipe, "--out", tmp_path / "out"),
        ("inspect", tmp_path / "model.keras"),
    ):
        assert "model.keras is a FIFO; expected a .keras or .h5 file or a SavedModel directory" in _refused(
            capsys, *command
        )
    assert not (tmp_path / "out" / "report.json").exists()


def test_a_device_as_model_is_refused(tmp_path: Path, capsys) -> None:
    recipe = write_recipe(tmp_path, "name: x\nsource: /dev/zero\noutputs: {fp32: {stages: [tflite]}}\n")
    assert "source.path: /dev/zero is a character device" in _refused(capsys, "validate", recipe)
    assert "/dev/zero is a character device" in _refused(capsys, "compare", "/dev/zero", "/dev/zero")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("report.json", "'report.json' is the name of a report file"),
        ("JUnit.xml", "'JUnit.xml' is the name of a report file"),
        ("summary.md", "'summary.md' is the name of a report file"),
        ("fp32\\n", "output name 'fp32\\n' must match"),
        ("fp32 ", "output name 'fp32 ' must match"),
        ("..", "must match"),
    ],
)
def test_output_names_that_are_report_files_or_end_in_whitespace_are_bad_input(
    zoo, tmp_path: Path, capsys, name: str, message: str
) -> None:
    text = f'name: names\nsource: {zoo.keras3}\noutputs:\n  "{name}": {{stages: [tflite]}}\n'
    assert message in _refused(capsys, "validate", write_recipe(tmp_path, text))


def test_a_recipe_named_like_a_batch_file_is_bad_input(zoo, tmp_path: Path, capsys) -> None:
    text = f"name: summary.json\nsource: {zoo.keras3}\noutputs: {{fp32: {{stages: [tflite]}}}}\n"
    assert "recipe name 'summary.json'" in _refused(capsys, "validate", write_recipe(tmp_path, text))


def test_the_reserved_names_hold_every_report_file() -> None:
    assert set(REPORT_FILES) <= RESERVED_NAMES
