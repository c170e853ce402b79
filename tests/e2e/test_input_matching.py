"""Inputs are paired like outputs: by name, normalised name or a shape only one of them fits, never by position.

Two same-shaped inputs that no rule tells apart stop the run (exit 2) naming both sides and the way to say which is
which (`--input-map`, `input_map`); the pairs and their rules are in report.json. Real Keras files, fed for real."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.core.tensors import match_inputs
from pipeline.errors import DataError

from ..recipes import write_recipe


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One model saved twice: inputs named `image`, `mask` and, with the same weights, `b`, `a` (same shapes), so
    pairing by position or by sorted name would feed each input to the other's place."""
    from pipeline.frameworks import captured_native_output, import_tensorflow

    import_tensorflow()
    import keras

    root = tmp_path_factory.mktemp("twins")

    def build(first: str, second: str) -> keras.Model:
        one, two = keras.Input((6,), name=first), keras.Input((6,), name=second)
        mixed = keras.layers.Concatenate()([one, keras.layers.Dense(6, name="scale")(two)])
        return keras.Model([one, two], keras.layers.Dense(3, name="head")(mixed))

    with captured_native_output():
        keras.utils.set_random_seed(0)
        named = build("image", "mask")
        renamed = build("b", "a")
        renamed.set_weights(named.get_weights())
        named.save(root / "named.keras")
        renamed.save(root / "renamed.keras")
    rng = np.random.default_rng(0)
    np.savez(root / "data.npz", image=rng.random((40, 6), dtype=np.float32), mask=rng.random((40, 6), dtype=np.float32))
    return {"named": root / "named.keras", "renamed": root / "renamed.keras", "data": root / "data.npz"}


def test_rules_name_normalised_and_a_shape_only_one_fits() -> None:
    fed = [("token_ids", (16,)), ("features", (80, 3)), ("mask", (16,))]
    accepted = [("serving_default_mask:0", (None,)), ("x", (None, 3)), ("token_ids", (16,))]
    matches = match_inputs(fed, accepted, "B inputs")
    assert {name: (m.candidate, m.rule) for name, m in matches.items()} == {
        "token_ids": ("token_ids", "name"),
        "mask": ("serving_default_mask:0", "normalised"),
        "features": ("x", "shape"),  # rank 2 with 3 channels: only x fits, its free length takes 80
    }
    with pytest.raises(DataError, match=r"cannot match reference inputs image \[6\], mask \[6\] to b \[6\], a \[6\]"):
        match_inputs([("image", (6,)), ("mask", (6,))], [("b", (6,)), ("a", (6,))], "B inputs")
    mapped = match_inputs([("image", (6,)), ("mask", (6,))], [("b", (6,)), ("a", (6,))], "B", {"image": "b"})
    assert {name: (m.candidate, m.rule) for name, m in mapped.items()} == {
        "image": ("b", "map"),
        "mask": ("a", "shape"),  # the map took b: a is the only one left that fits
    }
    with pytest.raises(DataError, match="input_map maps 'image' to 'c', which this file lacks"):
        match_inputs([("image", (6,)), ("mask", (6,))], [("b", (6,)), ("a", (6,))], "B", {"image": "c"})


def test_same_shaped_inputs_no_rule_pairs_are_refused_and_the_map_decides(
    twins: dict[str, Path], tmp_path: Path, capsys
) -> None:
    data = ["--data", str(twins["data"]), "--inputs", "image=image", "mask=mask"]
    code = main(["compare", str(twins["named"]), str(twins["renamed"]), *data])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "cannot match reference inputs image [6], mask [6] to b [6], a [6]" in err and "--input-map" in err

    right = ["--input-map", "image=b", "--input-map", "mask=a"]
    assert (
        main(["compare", str(twins["named"]), str(twins["renamed"]), *data, *right, "--out", str(tmp_path / "r")]) == 0
    )
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    parity = report["outputs"][0]["parity"]
    assert parity["metrics"]["max_abs"] == 0.0  # the same weights fed the same values: bit for bit
    assert parity["matched_inputs"] == {
        "image": {"candidate": "b", "rule": "map"},
        "mask": {"candidate": "a", "rule": "map"},
    }
    assert "inputs fed: `image` → `b` (map), `mask` → `a` (map)" in (tmp_path / "r" / "report.md").read_text()

    swapped = ["--input-map", "image=a", "--input-map", "mask=b", "--gate", "max_abs=1e-4"]
    assert main(["compare", str(twins["named"]), str(twins["renamed"]), *data, *swapped]) == 1
    capsys.readouterr()


def test_a_recipe_input_map_names_source_inputs(twins: dict[str, Path], tmp_path: Path, capsys) -> None:
    text = (
        f"name: twins\nsource: {twins['named']}\n"
        f"data: {{evaluation: {{npz: {twins['data']}, inputs: {{image: image, mask: mask}}}}}}\n"
        "outputs:\n  fp32:\n    stages: [tflite]\n    input_map: {picture: serving_default_image:0}\n"
    )
    code = main(["run", str(write_recipe(tmp_path, text)), "--out", str(tmp_path / "out"), "--no-isolation"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "outputs.fp32.input_map: the source model has no input 'picture' (its inputs: image, mask)" in err
