"""Output tensors of two runs matched by name, normalised name, `:N` index, unique shape or an explicit map, never
silently by position: vendor ONNX files made by tf2onnx from a SavedModel, with their own names and order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.tensors import match_outputs
from pipeline.errors import DataError

from ..cli import edgeport
from ..recipes import write_recipe


def _tf2onnx(saved_model: Path, out: Path, *options: str) -> Path:
    """The tf2onnx command line a vendor runs on a SavedModel (no network)."""
    command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model), "--output", str(out)]
    done = subprocess.run([*command, *options], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`three`: outputs zeta [5], alpha [3], mid [1]; `same`: b_head [4], a_head [4]. Both `model.export`ed (signature
    keys output_0.., in model order) and converted by tf2onnx the way vendors do."""
    from pipeline.frameworks import captured_native_output, import_tensorflow

    import_tensorflow()
    import keras

    root = tmp_path_factory.mktemp("vendor")
    with captured_native_output():
        keras.utils.set_random_seed(0)
        x = keras.Input((6,), name="x")
        hidden = keras.layers.Dense(8, activation="relu")(x)
        heads = [
            keras.layers.Dense(units, name=name)(hidden) for name, units in (("zeta", 5), ("alpha", 3), ("mid", 1))
        ]
        keras.Model(x, heads).export(str(root / "three"), verbose=False)
        twins = [keras.layers.Dense(4, name=name)(hidden) for name in ("b_head", "a_head")]
        same = keras.Model(x, twins)
        same.export(str(root / "same"), verbose=False)
        same.save(root / "same.keras")
    np.savez(root / "data.npz", x=np.random.default_rng(0).random((40, 6), dtype=np.float32))
    files = {
        "three": root / "three",
        "same": root / "same",
        "same_keras": root / "same.keras",
        "data": root / "data.npz",
    }
    # The signature's outputs in the graph, listed in another order than the signature, named as a TF1-style
    # export names them (StatefulPartitionedCall:N, N = the position in the signature sorted by key).
    files["three_spc"] = _tf2onnx(
        root / "three",
        root / "three_spc.onnx",
        *("--outputs", "Identity_1:0,Identity:0,Identity_2:0"),
        *("--rename-outputs", "StatefulPartitionedCall:1,StatefulPartitionedCall:0,StatefulPartitionedCall:2"),
    )
    files["same_spc"] = _tf2onnx(
        root / "same",
        root / "same_spc.onnx",
        *("--outputs", "Identity_1:0,Identity:0"),
        *("--rename-outputs", "StatefulPartitionedCall:1,StatefulPartitionedCall:0"),
    )
    # Graph names, reordered: nothing in `Identity_1:0` says which signature output it is.
    files["three_graph"] = _tf2onnx(
        root / "three", root / "three_graph.onnx", "--outputs", "Identity_1:0,Identity:0,Identity_2:0"
    )
    files["same_graph"] = _tf2onnx(root / "same", root / "same_graph.onnx", "--outputs", "Identity_1:0,Identity:0")
    return files


def _matched(out: Path) -> dict[str, dict[str, str]]:
    return json.loads((out / "report.json").read_text())["outputs"][0]["parity"]["matched"]


def test_vendor_names_matched_by_signature_index(vendor: dict[str, Path], tmp_path: Path) -> None:
    for name in ("three_spc", "same_spc"):
        out = tmp_path / name
        model = "three" if name.startswith("three") else "same"
        result = edgeport("compare", vendor[model], vendor[name], "--gate", "max_abs=1e-4", "--out", out)
        # Before: three_spc ended in "shape [64, 3] does not match the reference [64, 5]" (exit 3); same_spc was
        # silently swapped (max_abs 3.0, cosine -0.38: exit 1 blaming a file that is fine).
        assert result.returncode == 0, result.stderr + result.stdout
        matched = _matched(out)
        assert matched["output_0"] == {"candidate": "StatefulPartitionedCall:0", "rule": "index"}
        assert {entry["rule"] for entry in matched.values()} == {"index"}
        assert "`output_0` → `StatefulPartitionedCall:0` (index)" in (out / "report.md").read_text()


def test_distinct_shapes_matched_by_shape(vendor: dict[str, Path], tmp_path: Path) -> None:
    result = edgeport("compare", vendor["three"], vendor["three_graph"], "--gate", "max_abs=1e-4", "--out", tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    matched = _matched(tmp_path)
    assert matched["output_0"] == {"candidate": "Identity:0", "rule": "shape"}
    assert matched["output_1"] == {"candidate": "Identity_1:0", "rule": "shape"}


def test_ambiguous_outputs_exit_2_until_mapped(vendor: dict[str, Path], tmp_path: Path) -> None:
    refused = edgeport("compare", vendor["same"], vendor["same_graph"], "--gate", "max_abs=1e-4")
    assert refused.returncode == 2, refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert "Identity_1:0" in refused.stderr and "--map" in refused.stderr
    maps = ["--map", "output_0=Identity:0", "--map", "output_1=Identity_1:0"]
    mapped = edgeport(
        "compare", vendor["same"], vendor["same_graph"], *maps, "--gate", "max_abs=1e-4", "--out", tmp_path
    )
    assert mapped.returncode == 0, mapped.stderr + mapped.stdout
    assert {entry["rule"] for entry in _matched(tmp_path).values()} == {"map"}
    wrong = edgeport("compare", vendor["same"], vendor["same_graph"], "--map", "output_9=Identity:0")
    assert wrong.returncode == 2 and "output_9" in wrong.stderr and "Traceback" not in wrong.stderr


def test_keras_order_is_not_the_signature_order(vendor: dict[str, Path]) -> None:
    """A Keras model lists outputs in model order; the `:N` of a tf2onnx file counts the SavedModel signature's
    sorted keys, which need not be that order (output_10 sorts before output_2): refused, not guessed."""
    result = edgeport("compare", vendor["same_keras"], vendor["same_spc"])
    assert result.returncode == 2 and "--map" in result.stderr, result.stderr + result.stdout


def test_match_rules_in_order() -> None:
    shapes = {"logits": (10,), "boxes": (4,), "score": (1,)}
    reference = list(shapes.items())
    exact = match_outputs(reference, [("score", (1,)), ("logits", (10,)), ("boxes", (4,))], "B")
    assert {name: m.rule for name, m in exact.items()} == dict.fromkeys(shapes, "name")
    normalised = match_outputs(reference, [("serving_default_logits:0", (10,)), ("boxes", (4,)), ("s", (1,))], "B")
    assert [normalised[n].rule for n in shapes] == ["normalised", "name", "shape"]
    with pytest.raises(DataError, match="cannot match"):
        match_outputs([("a", (4,)), ("b", (4,))], [("p", (4,)), ("q", (4,))], "B")
    one = match_outputs([("a", (4, 1))], [("p", (4,))], "B")
    assert one["a"].rule == "position"
    with pytest.raises(DataError, match="3 outputs"):
        match_outputs(reference, [("p", (4,))], "B")


RECIPE = """\
name: mapped
source: same
data:
  evaluation: {npz: data.npz, inputs: x}
outputs:
  onnx:
    stages: [onnx]
    gates: {max_abs: 1.0e-4}
    tensor_map: {output_0: output_0, output_1: output_1}
"""


def test_recipe_tensor_map(vendor: dict[str, Path]) -> None:
    root = vendor["same"].parent
    out = root / "mapped"
    result = edgeport("run", write_recipe(root, RECIPE, "mapped.yaml"), "--out", out)
    assert result.returncode == 0, result.stderr + result.stdout
    assert {entry["rule"] for entry in _matched(out).values()} == {"map"}
    bad = edgeport("run", write_recipe(root, RECIPE.replace("output_1: output_1", "nope: output_1"), "bad.yaml"))
    assert bad.returncode == 2 and "tensor_map" in bad.stderr and "nope" in bad.stderr, bad.stderr
