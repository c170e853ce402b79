"""`edgeport init`: the recipe it writes for a .keras, an .h5, a SavedModel and a TF1 frozen graph validates and
`edgeport run` takes it to a verdict as written; its data mapping, labels, refusals and errors."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.cli import main
from pipeline.recipe import load_recipe
from pipeline.stages import STAGES

from ..conftest import Zoo
from ..recipes import write_recipe


def _init(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["init", *map(str, args)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def _error(code: int, err: str) -> str:
    """The one error line of a refusal (exit 2)."""
    errors = [line for line in err.splitlines() if line.startswith("edgeport: error:")]
    assert code == 2 and len(errors) == 1, err
    return errors[0]


def _run(recipe: Path, out: Path, *only: str) -> dict:
    code = main(["run", str(recipe), "--out", str(out), *(["--only", *only] if only else [])])
    assert code in (0, 1), f"the written recipe must run to a verdict, got exit {code}"
    return json.loads((out / "report.json").read_text())


@pytest.mark.parametrize(
    ("model", "data", "only"),
    [
        ("keras3", True, ()),  # every output, as the "done when" asks
        ("keras3_h5", True, ("fp32", "int8")),
        ("exported_savedmodel", False, ("fp32", "onnx-int8")),
    ],
)
def test_the_written_recipe_runs_to_a_verdict(
    zoo: Zoo, tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str, data: bool, only: tuple[str, ...]
) -> None:
    recipe = tmp_path / "recipes" / "recipe.yaml"  # another folder than the model's: paths must be relative to it
    code, out, _ = _init(capsys, getattr(zoo, model), "--out", recipe, *(["--data", zoo.digits_npz] if data else []))
    assert code == 0
    assert f"wrote {recipe}" in out and f"next: edgeport run {recipe}" in out
    loaded = load_recipe(recipe)
    document = yaml.safe_load(recipe.read_text())
    assert document["source"] == os.path.relpath(getattr(zoo, model), recipe.parent)
    assert list(document["outputs"]) == ["fp32", "float16", "int8", "onnx", "onnx-int8"]
    for output in loaded.spec.outputs.values():  # each output's gates are its stage's own defaults, written out
        (entry,) = output.stages
        kind = next(kind for kind in STAGES if getattr(entry, kind) is not None)
        assert output.gates.thresholds() == STAGES[kind].default_gates(getattr(entry, kind))
    calibration, evaluation = document["data"]["calibration"], document["data"]["evaluation"]
    if data:
        npz = os.path.relpath(zoo.digits_npz, recipe.parent)
        assert calibration == {"npz": npz, "inputs": "x_train", "limit": 200}
        assert evaluation == {"npz": npz, "inputs": "x_test", "labels": "y_test"}
    else:
        assert calibration["random"]["seed"] != evaluation["random"]["seed"]
        assert "NOTE: the data is seeded random" in recipe.read_text()
    report = _run(recipe, tmp_path / "out", *only)
    assert {entry["name"] for entry in report["outputs"]} == set(only or document["outputs"])
    if data:
        assert all("accuracy" in entry["parity"]["metrics"] for entry in report["outputs"])


def test_refuses_to_overwrite_without_force(zoo: Zoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe(tmp_path, "mine\n")
    code, _, err = _init(capsys, zoo.keras3, "--out", recipe)
    assert "recipe.yaml exists; pass --force to overwrite it" in _error(code, err)
    assert recipe.read_text() == "mine\n"
    code, _, _ = _init(capsys, zoo.keras3, "--out", recipe, "--force")
    assert code == 0 and load_recipe(recipe).spec.name == "digits"
    code, _, err = _init(capsys, zoo.keras3, "--out", zoo.keras3, "--force")
    assert "is the model or data file itself" in _error(code, err)


def test_a_model_it_cannot_load_is_exit_2_naming_the_cause(
    zoo: Zoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip archive")
    recipe = tmp_path / "recipe.yaml"
    for model, cause in (
        (broken, r"broken\.keras: .*not a readable \.keras archive"),
        (tmp_path / "missing.keras", r"missing\.keras: model not found"),
        (zoo.lambda_keras, r"lambda\.keras: .*(Lambda|lambda).*--trust-model"),
    ):
        code, _, err = _init(capsys, model, "--out", recipe)
        assert re.search(cause, _error(code, err)), err
        assert not recipe.exists()
    assert not list(tmp_path.glob(".edgeport-init-*"))  # no scratch file left behind


def test_trust_is_written_only_when_given(zoo: Zoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "recipe.yaml"
    code, _, _ = _init(capsys, zoo.lambda_keras, "--out", recipe, "--trust-model")
    assert code == 0
    source = {"path": os.path.relpath(zoo.lambda_keras, tmp_path), "trusted": True}
    assert yaml.safe_load(recipe.read_text())["source"] == source
    code, _, _ = _init(capsys, zoo.keras3, "--out", recipe, "--force")
    assert code == 0 and "trusted" not in recipe.read_text()


def test_one_key_for_both_sections_and_labels_that_fit_no_output(
    zoo: Zoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An npz without splits: calibration takes the first samples of the same key, and the file says so; labels
    that are no classes of the model's output are left out, with the reason."""
    data = tmp_path / "data" / "samples.npz"
    data.parent.mkdir()
    np.savez(data, labels=zoo.y_test[:150], x=zoo.x_test[:150])
    recipe = tmp_path / "recipe.yaml"
    code, out, _ = _init(capsys, zoo.keras3, "--data", data, "--out", recipe)
    assert code == 0 and "is the evaluation data too" in out
    document = yaml.safe_load(recipe.read_text())["data"]
    assert document["calibration"] == {"npz": "data/samples.npz", "inputs": "x", "limit": 75}  # half: some unseen
    assert document["evaluation"] == {"npz": "data/samples.npz", "inputs": "x", "labels": "labels"}

    np.savez(data, labels=zoo.y_test[:150] + 10, x=zoo.x_test[:150])  # classes 10..19 of a 10-class output
    code, out, _ = _init(capsys, zoo.keras3, "--data", data, "--out", recipe, "--force")
    assert code == 0 and "key 'labels' looks like labels but is left out" in out
    assert "labels" not in yaml.safe_load(recipe.read_text())["data"]["evaluation"]


def test_several_inputs_map_to_keys_named_after_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two inputs of one shape: each goes to the key named after it, per split; labels of the test split."""
    import keras

    image, mask = keras.Input((6,), name="image"), keras.Input((6,), name="mask")
    scores = keras.layers.Dense(3)(keras.layers.Concatenate()([image, mask]))
    keras.Model([image, mask], scores).save(tmp_path / "two.keras")
    rng = np.random.default_rng(0)
    arrays = {f"{name}_{split}": rng.random((n, 6), np.float32) for name in ("mask", "image") for split, n in
              (("train", 40), ("test", 30))}  # fmt: skip
    np.savez(tmp_path / "two.npz", **arrays, y_train=rng.integers(0, 3, 40), y_test=rng.integers(0, 3, 30))
    recipe = tmp_path / "recipe.yaml"
    code, _, _ = _init(capsys, tmp_path / "two.keras", "--data", tmp_path / "two.npz", "--out", recipe)
    assert code == 0
    data = yaml.safe_load(recipe.read_text())["data"]
    assert data["calibration"] == {"npz": "two.npz", "inputs": {"image": "image_train", "mask": "mask_train"}}
    assert data["evaluation"] == {
        "npz": "two.npz",
        "inputs": {"image": "image_test", "mask": "mask_test"},
        "labels": "y_test",
    }


def test_data_that_fits_no_input_is_exit_2_naming_input_and_keys(
    zoo: Zoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "flat.npz"
    np.savez(data, x=zoo.x_test.reshape(len(zoo.x_test), -1))
    code, _, err = _init(capsys, zoo.keras3, "--data", data, "--out", tmp_path / "recipe.yaml")
    assert re.search(r"no array fits input pixels \[\?, 8, 8, 1\].*x \[360, 64\] float32", _error(code, err))
    (tmp_path / "text.npz").write_text("not an npz")
    code, _, err = _init(capsys, zoo.keras3, "--data", tmp_path / "text.npz", "--out", tmp_path / "recipe.yaml")
    assert "text.npz: not a readable .npz" in _error(code, err)


def test_integer_inputs_get_valid_ids_and_a_note(zoo: Zoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "recipe.yaml"
    code, out, _ = _init(capsys, zoo.bincount_keras, "--out", recipe)
    assert code == 0 and "input tokens is int32: random values are 0 and 1" in out
    assert yaml.safe_load(recipe.read_text())["data"]["evaluation"]["random"]["high"] == 1.0


def _frozen_graph(path: Path, second_output: bool = False) -> None:
    """A TF1 frozen graph as shipped: a data placeholder and an `is_training` switch without a default."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        is_training = v1.placeholder(tf.bool, [], name="is_training")
        weights = tf.constant(np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32))
        logits = tf.matmul(x, weights)
        tf.nn.softmax(tf.where(is_training, logits * 0.5, logits), name="probs")
        if second_output:
            tf.identity(logits, name="logits")
    path.write_bytes(graph.as_graph_def().SerializeToString())


def test_a_tf1_frozen_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One likely output and a switch named for training: written with its feed (flagged as a guess) and run.
    Several likely outputs: exit 2 naming them and --graph-outputs, which then decides."""
    graph, recipe = tmp_path / "frozen.pb", tmp_path / "recipe.yaml"
    _frozen_graph(graph)
    code, out, _ = _init(capsys, graph, "--out", recipe)
    assert code == 0 and "feeds is_training: false is guessed from its name" in out
    source = yaml.safe_load(recipe.read_text())["source"]
    assert source == {"graph": "frozen.pb", "inputs": ["x"], "outputs": ["probs"], "feeds": {"is_training": False}}
    assert _run(recipe, tmp_path / "out", "fp32", "onnx")["exit_code"] in (0, 1)

    _frozen_graph(graph, second_output=True)
    code, _, err = _init(capsys, graph, "--out", recipe, "--force")
    assert re.search(r"cannot tell the graph's output \(likely outputs: probs, logits\).*--graph-outputs", err), err
    code, _, _ = _init(capsys, graph, "--out", recipe, "--force", "--graph-outputs", "logits")
    assert code == 0 and yaml.safe_load(recipe.read_text())["source"]["outputs"] == ["logits"]
