"""The bad-input matrix: every case exits 2 with one message naming the culprit, and leaves no report.

Driven through `pipeline.cli.main` in-process (the subprocess path is covered in test_cli.py).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main

from ..recipes import write_recipe

GOOD = """\
name: matrix
source: {model}
data:
  calibration: {{npz: {data}, inputs: x_train, limit: 32}}
  evaluation: {{npz: {data}, inputs: x_test, labels: y_test}}
  fine_tune: {{npz: {data}, inputs: x_train, labels: y_train}}
outputs:
  fp32: {{stages: [tflite]}}
  int8: {{stages: [{{tflite: {{quantize: int8}}}}], gates: {{cosine: 0.99}}}}
"""

# (case, edit of the good recipe text or None, expected message as a regex)
RECIPE_CASES = [
    (
        "yaml syntax",
        lambda t: t.replace("fp32: {stages: [tflite]}", "fp32: {stages: [tflite}"),
        r"YAML syntax error at line 8",
    ),
    (
        "unknown key",
        lambda t: t.replace("quantize: int8", "quantise: int8"),
        r"outputs\.int8\.stages\[0\]\.tflite\.quantise \(line 9\): unknown key 'quantise'; did you mean 'quantize'",
    ),
    ("wrong type", lambda t: t.replace("limit: 32", "limit: many"), r"data\.calibration\.limit \(line 4\): .*integer"),
    (
        "sparsity out of range",
        lambda t: t.replace("[tflite]}", "[{prune: {sparsity: 1.5}}, tflite]}"),
        r"outputs\.fp32\.stages\[0\]\.prune\.sparsity .*less than 1",
    ),
    (
        "negative gate",
        lambda t: t.replace("cosine: 0.99", "max_abs: -1"),
        r"outputs\.int8\.gates\.max_abs \(line 9\): .*greater than or equal to 0",
    ),
    ("duplicate output", lambda t: t + "  fp32: {stages: [onnx]}\n", r"duplicate key 'fp32' \(first at line 8\)"),
    ("dot-dot output name", lambda t: t.replace("fp32:", "../x:"), r"output name '\.\./x' must match"),
    ("absolute output name", lambda t: t.replace("fp32:", "/tmp/x:"), r"output name '/tmp/x' must match"),
    ("separator in output name", lambda t: t.replace("fp32:", "a/b:"), r"output name 'a/b' must match"),
    ("unknown stage", lambda t: t.replace("[tflite]", "[tflitee]"), r"unknown stage 'tflitee'"),
    (
        "chain mismatch",
        lambda t: t.replace("[tflite]", "[tflite, onnx]"),
        r"stages\[1\]\.onnx: onnx takes keras or savedmodel, but stages\[0\] \(tflite\) gives tflite",
    ),
    (
        "empty outputs",
        lambda t: t[: t.index("outputs:")] + "outputs: {}\n",
        r"outputs \(line 7\): Dictionary should have at least 1 item",
    ),
]


def _model_cases(zoo, tmp: Path) -> list[tuple[str, Path, str]]:
    (tmp / "empty.keras").write_bytes(b"")
    data = zoo.keras3.read_bytes()
    (tmp / "truncated.keras").write_bytes(data[: len(data) // 3])
    (tmp / "random.h5").write_bytes(os.urandom(2048))
    (tmp / "not_a_savedmodel").mkdir()
    (tmp / "not_a_savedmodel" / "readme.txt").write_text("hello")
    return [
        ("missing model", tmp / "absent.keras", r"absent\.keras does not exist"),
        ("empty model", tmp / "empty.keras", r"empty\.keras: the file is empty"),
        ("truncated model", tmp / "truncated.keras", r"truncated\.keras: cannot load the model"),
        ("random bytes", tmp / "random.h5", r"random\.h5: not a readable HDF5 model"),
        ("directory not a SavedModel", tmp / "not_a_savedmodel", r"not_a_savedmodel: directory is not a SavedModel"),
    ]


def _data_cases(tmp: Path) -> list[tuple[str, str, str]]:
    rng = np.random.default_rng(0)
    x = rng.random((20, 8, 8, 1), dtype=np.float32)
    nan = x.copy()
    nan[3, 0, 0, 0] = np.nan
    np.savez(
        tmp / "bad.npz",
        rank=x[..., 0],
        shape=rng.random((20, 8, 7, 1)),
        text=np.full((20, 8, 8, 1), "a"),
        nan=nan,
        x=x,
        short=np.arange(19),
        floats=np.linspace(0, 1, 20),
    )
    bad = tmp / "bad.npz"
    return [
        ("missing data file", "{npz: absent.npz, inputs: x}", r"data\.evaluation\.npz: .*absent\.npz does not exist"),
        ("missing key", f"{{npz: {bad}, inputs: nope}}", r"data\.evaluation: key 'nope' is not in bad\.npz"),
        (
            "wrong rank",
            f"{{npz: {bad}, inputs: rank}}",
            r"input 'pixels' has shape \[20, 8, 8\], expected shape \[N, 8, 8, 1\]",
        ),
        ("wrong shape", f"{{npz: {bad}, inputs: shape}}", r"axis 2 is 7, the model wants 8"),
        ("wrong dtype", f"{{npz: {bad}, inputs: text}}", r"input 'pixels' has dtype <U1; expected numbers"),
        ("NaN inputs", f"{{npz: {bad}, inputs: nan}}", r"input 'pixels' holds 1 NaN/Inf values"),
        ("labels of the wrong length", f"{{npz: {bad}, inputs: x, labels: short}}", r"19 labels for 20 input samples"),
        (
            "labels not integers",
            f"{{npz: {bad}, inputs: x, labels: floats}}",
            r"labels: expected a 1-D array of integer",
        ),
    ]


def _expect_exit_2(recipe: Path, pattern: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = recipe.parent / "out"
    code = main(["run", str(recipe), "--out", str(out), "--no-cache"])
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("edgeport: error:")]
    assert code == 2, stderr
    assert len(errors) == 1 and "Traceback" not in stderr
    assert re.search(pattern, stderr), stderr
    assert not (out / "report.json").exists()


@pytest.mark.parametrize(("case", "edit", "pattern"), RECIPE_CASES, ids=[c[0] for c in RECIPE_CASES])
def test_bad_recipe(zoo, tmp_path: Path, capsys, case: str, edit, pattern: str) -> None:
    text = GOOD.format(model=zoo.keras3, data=zoo.digits_npz)
    _expect_exit_2(write_recipe(tmp_path, edit(text)), pattern, capsys)


def test_bad_models(zoo, tmp_path: Path, capsys) -> None:
    for case, model, pattern in _model_cases(zoo, tmp_path):
        _expect_exit_2(
            write_recipe(tmp_path, GOOD.format(model=model, data=zoo.digits_npz), f"{case}.yaml"), pattern, capsys
        )


def test_savedmodel_without_the_named_signature(zoo, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "sm"
    shutil.copytree(zoo.exported_savedmodel, copy)
    text = GOOD.format(model=f"{{path: {copy}, signature: predict}}", data=zoo.digits_npz)
    _expect_exit_2(write_recipe(tmp_path, text), r"no signature 'predict' \(it has serve, serving_default\)", capsys)


def test_bad_data(zoo, tmp_path: Path, capsys) -> None:
    for case, evaluation, pattern in _data_cases(tmp_path):
        text = GOOD.format(model=zoo.keras3, data=zoo.digits_npz)
        text = re.sub(r"evaluation: \{[^\n]*\}", f"evaluation: {evaluation}", text)
        _expect_exit_2(write_recipe(tmp_path, text, f"{case}.yaml"), pattern, capsys)
