"""litert_quantize stage: real float .tflite files quantized by litert_quantizer, run in LiteRT, compared with the
source model. Calibration always on x_train, evaluation on x_test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.artifact import Artifact
from pipeline.errors import RecipeError, StageError
from pipeline.recipe import load_recipe
from pipeline.runtimes import runtime_for
from pipeline.sources import load_source

from ..cli import run_report
from ..helpers import predict, run_stage, top1_agreement
from ..recipes import digits_data, recipe_file


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


@pytest.fixture(scope="module")
def digits(zoo, tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """The digits CNN as a float .tflite (two Conv2D, two Dense: 21k weights, 88 KiB)."""
    return run_stage("tflite", load_source(zoo.keras3).artifact, tmp_path_factory.mktemp("fp32"))


@pytest.fixture(scope="module")
def mlp(zoo, tmp_path_factory: pytest.TempPathFactory) -> tuple[Artifact, np.ndarray]:
    """Dense 64→512→512→10 on the digits (1.2 MB float): big enough for int4 and blocks of 32 to matter."""
    import keras

    from pipeline.frameworks import captured_native_output

    root = tmp_path_factory.mktemp("mlp")
    data = np.load(zoo.digits_npz)
    with captured_native_output():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 1), name="pixels")
        h = keras.layers.Flatten()(inputs)
        h = keras.layers.Dense(512, activation="relu", name="hidden1")(h)
        h = keras.layers.Dense(512, activation="relu", name="hidden2")(h)
        model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(h))
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(data["x_train"], data["y_train"], epochs=3, batch_size=64, verbose=0)
        model.save(root / "mlp.keras")
        reference = model(zoo.x_test, training=False).numpy()
    return run_stage("tflite", load_source(root / "mlp.keras").artifact, root / "fp32"), reference


def quantize(upstream: Artifact, work: Path, zoo, **options: object) -> Artifact:
    return run_stage("litert_quantize", upstream, work, calibration=np.load(zoo.digits_npz)["x_train"][:200], **options)


def test_weight_only_int8_is_a_third_of_the_size_and_exact_to_1e3(zoo, digits, tmp_path: Path) -> None:
    artifact = quantize(digits, tmp_path, zoo)
    out = predict(artifact, zoo.x_test)
    assert artifact.path.stat().st_size < 0.35 * digits.path.stat().st_size  # 27360 of 90152 bytes measured
    assert cosine(out, zoo.reference) >= 0.999  # 0.99999 measured
    details = artifact.details
    assert details["weights"] == {"int8": 4} and details["float_weights"] == []
    validation = details["validation"]
    assert validation["data"] == "random" and validation["samples"] == 8
    assert 1 <= len(validation["worst_tensors"]) <= 5 and len(json.dumps(details)) < 4000
    assert all(v["cosine"] >= 0.999 for v in validation["outputs"].values())
    assert json.loads((tmp_path / "quantizer_recipe.json").read_text())[0]["regex"] == ".*"
    assert artifact.warnings == []


def test_int4_channelwise_and_blockwise_on_dense_weights(zoo, mlp, tmp_path: Path) -> None:
    fp32, reference = mlp
    int8 = quantize(fp32, tmp_path / "wo8", zoo)
    int4 = quantize(fp32, tmp_path / "wo4", zoo, mode="weight_only_int4")
    blocks = quantize(fp32, tmp_path / "b32", zoo, mode="dynamic_int4", block_size=32)
    sizes = {a.details["mode"] + str(a.details["block_size"]): a.path.stat().st_size for a in (int8, int4, blocks)}
    # measured: fp32 1207276, int8 320048, int4 169944, int4 in blocks of 32 (fp16 scales) 176252 bytes
    assert sizes["weight_only_int8None"] < 0.27 * fp32.path.stat().st_size
    assert sizes["weight_only_int4None"] < 0.55 * sizes["weight_only_int8None"]
    assert sizes["dynamic_int432"] < 0.6 * sizes["weight_only_int8None"]
    for artifact, floor in ((int8, 0.9999), (int4, 0.998), (blocks, 0.998)):  # 0.999998, 0.99956, 0.99970
        out = predict(artifact, zoo.x_test)
        assert cosine(out, reference) >= floor, artifact.details["mode"]
        assert top1_agreement(out, reference) >= 0.98
    assert blocks.details["weights"] == {"int4/block32": 3}
    wide = quantize(fp32, tmp_path / "b128", zoo, mode="dynamic_int4", block_size=128)
    # hidden1's 64 inputs hold no block of 128: that weight stays channelwise, and the details say so
    assert wide.details["weights"] == {"int4/block128": 2, "int4": 1}
    assert [name.split("/")[-2] for name in wide.details["channelwise_instead_of_blockwise"]] == ["hidden1_1"]


@pytest.mark.parametrize("io", ["float32", "int8"])
def test_static_int8_calibrated_on_train_runs_on_test(zoo, digits, tmp_path: Path, io: str) -> None:
    artifact = quantize(digits, tmp_path, zoo, mode="static_int8", io=io)
    assert runtime_for(artifact).inputs[0].dtype == io
    out = predict(artifact, zoo.x_test)
    assert cosine(out, zoo.reference) >= 0.99  # 0.9958 measured (the quantizer's min/max are moving averages)
    assert top1_agreement(out, zoo.reference) >= 0.97
    assert artifact.details["validation"]["data"] == "calibration"


def test_scope_rule_keeps_a_layer_float_and_the_details_name_it(zoo, digits, tmp_path: Path) -> None:
    plain = quantize(digits, tmp_path / "plain", zoo, mode="static_int8")
    kept = quantize(digits, tmp_path / "kept", zoo, mode="static_int8", rules=[{"scope": "logits", "mode": "none"}])
    (name,) = kept.details["float_weights"]
    assert "logits" in name and kept.details["weights"] == {"int8": 3, "float32": 1}
    assert kept.details["rules"] == [{"scope": "logits", "mode": "none", "matched": [name]}]
    assert kept.path.stat().st_size > plain.path.stat().st_size  # 10×32 float weights instead of int8
    assert cosine(predict(kept, zoo.x_test), zoo.reference) >= cosine(predict(plain, zoo.x_test), zoo.reference)


def test_a_quantized_file_or_a_rule_matching_nothing_is_a_stage_error(zoo, digits, tmp_path: Path) -> None:
    once = quantize(digits, tmp_path / "once", zoo, mode="dynamic_int8")
    with pytest.raises(StageError, match=r"once/model\.tflite: already quantized"):
        quantize(once, tmp_path / "twice", zoo)
    with pytest.raises(StageError, match=r"rules\[0\]\.scope 'nothing_here' matches no op"):
        quantize(digits, tmp_path / "none", zoo, rules=[{"scope": "nothing_here", "mode": "none"}])


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({"litert_quantize": {"mode": "weight_only_int4", "block_size": 32}}, "block_size: blockwise weights need"),
        ({"litert_quantize": {"mode": "int3"}}, "mode"),
        ({"litert_quantize": {"blocksize": 32}}, "blocksize"),
        ({"litert_quantize": {"block_size": 48, "mode": "dynamic_int4"}}, "block_size"),
        ({"litert_quantize": {"io": "int8"}}, "io: int8 needs mode: static_int8"),
        ({"litert_quantize": {"rules": [{"scope": "(", "mode": "none"}]}}, "scope"),
    ],
)
def test_bad_options_name_the_field(zoo, tmp_path: Path, stage: dict, message: str) -> None:
    outputs = {"q": {"stages": ["tflite", stage]}}
    recipe = recipe_file(tmp_path, name="bad", source=zoo.keras3, data=digits_data(zoo, limit=50), outputs=outputs)
    with pytest.raises(RecipeError, match=message) as caught:
        load_recipe(recipe)
    assert "outputs.q.stages[1]" in str(caught.value)


@pytest.mark.parametrize(
    ("chain", "message"),
    [
        ([{"tflite": {"quantize": "int8"}}, "litert_quantize"], "tflite quantize: int8 gives a quantized one"),
        (["tflite", "litert_quantize", "litert_quantize"], "litert_quantize gives a quantized one"),
        (["onnx", "litert_quantize"], "litert_quantize takes tflite, but stages\\[0\\] \\(onnx\\) gives onnx"),
        (["tflite", {"litert_quantize": {"mode": "static_int8"}}], "needs data.calibration"),
    ],
)
def test_chains_that_cannot_work_are_refused_at_validation(zoo, tmp_path: Path, chain: list, message: str) -> None:
    data = digits_data(zoo, calibration="static_int8" not in json.dumps(chain))
    recipe = recipe_file(tmp_path, name="chain", source=zoo.keras3, data=data, outputs={"q": {"stages": chain}})
    with pytest.raises(RecipeError, match=message):
        load_recipe(recipe)


def test_recipe_run_default_gates_pass_and_a_strict_gate_fails(zoo, tmp_path: Path) -> None:
    outputs = {
        "int8-weights": {"stages": ["tflite", "litert_quantize"]},
        "int4-blocks": {
            "stages": ["tflite", {"litert_quantize": {"mode": "dynamic_int4", "block_size": 32}}],
            "gates": {"cosine": 0.99, "max_abs": 1.0e-6},
        },
    }
    recipe = recipe_file(tmp_path, name="lq", source=zoo.keras3, data=digits_data(zoo, limit=200), outputs=outputs)
    out = tmp_path / "out"
    report = run_report(recipe, out, 1)
    weights, blocks = report["outputs"]
    assert weights["status"] == "passed" and blocks["status"] == "failed"
    assert {g["metric"] for g in weights["parity"]["gates"]} == {"cosine", "min_cosine"}
    assert blocks["stages"][0]["reused"] is True and blocks["stages"][1]["details"]["weights"]["int4/block32"] == 2
    # The shipped file is the quantizer's plus its provenance (an `edgeport` metadata entry, a few hundred bytes).
    stamped = weights["size_bytes"] - weights["stages"][1]["details"]["size"]["quantized_bytes"]
    assert 0 < stamped < 4096 and weights["provenance"]["output"] == weights["name"]


def test_a_rule_the_quantizer_cannot_honour_is_a_warning_not_silence(zoo, tmp_path: Path) -> None:
    """int4 asked for a depthwise convolution: LiteRT has no such kernel and the quantizer keeps int8, unasked."""
    import keras

    from pipeline.frameworks import captured_native_output

    with captured_native_output():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 1), name="pixels")
        h = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
        h = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(h)
        h = keras.layers.GlobalAveragePooling2D()(h)
        keras.Model(inputs, keras.layers.Dense(10, name="logits")(h)).save(tmp_path / "dw.keras")
    fp32 = run_stage("tflite", load_source(tmp_path / "dw.keras").artifact, tmp_path / "fp32")
    rules = [{"scope": "depthwise", "mode": "weight_only_int4"}]
    artifact = quantize(fp32, tmp_path / "q", zoo, rules=rules)
    assert artifact.details["weights"] == {"int8": 3}  # the depthwise kernel stayed int8
    [warning] = artifact.warnings
    assert warning.startswith("rules[0] asked weight_only_int4 for ") and "DEPTHWISE_CONV_2D" in warning
    assert "left it int8" in warning
