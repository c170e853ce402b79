"""tflite `fallback: auto`: an int8 file that fails a realistic gate gets its worst layer kept in float.

The model is the digits CNN with one extra Dense layer ("mix") that passes the hidden features through
unchanged, plus weights of 1000 from a dead ReLU unit. In float those weights multiply zero; in int8 they
set every output channel's weight scale, so the useful weights of 1.0 round to zero and the logits collapse.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.core.artifact import Artifact
from pipeline.data import Dataset
from pipeline.evaluate import compare, predict_dataset
from pipeline.parity import gate_result
from pipeline.sources import load_source
from pipeline.stages import STAGES, StageContext
from pipeline.stages.tflite_fallback import float_layer_steps

GATES = {"cosine": 0.99, "accuracy_drop": 0.02}


def _with_dead_unit_outliers(zoo, path: Path) -> None:
    import keras

    trained = keras.models.load_model(zoo.keras3)
    hidden, logits = trained.get_layer(index=-2), trained.get_layer("logits")
    kernel, bias = hidden.get_weights()
    rng = np.random.default_rng(0)
    dead_column = rng.normal(0, 1e-3, (kernel.shape[0], 1)).astype(np.float32)  # bias -10: never fires
    inputs = keras.Input((8, 8, 1), name="pixels")
    h = inputs
    for layer in trained.layers[1:-2]:
        h = layer(h)
    h = keras.layers.Dense(33, activation="relu", name="hidden")(h)
    h = keras.layers.Dense(32, name="mix")(h)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(h))
    model.get_layer("hidden").set_weights([np.hstack([kernel, dead_column]), np.append(bias, -10.0)])
    mix = np.vstack([np.eye(32, dtype=np.float32), np.full((1, 32), 1000.0, np.float32)])
    model.get_layer("mix").set_weights([mix, np.zeros(32, np.float32)])
    model.get_layer("logits").set_weights(logits.get_weights())
    model.save(path)


@pytest.fixture(scope="module")
def outlier_source(zoo, tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("outlier") / "outlier.keras"
    _with_dead_unit_outliers(zoo, path)
    return load_source(path)


def _judge(zoo, source) -> tuple:
    """What the runner would give the stage: parity of a candidate file against the source, gated."""
    evaluation = Dataset(section="evaluation", origin="test", inputs={"pixels": zoo.x_test}, labels=zoo.y_test)
    reference = predict_dataset(source.artifact, "source", evaluation, 64)
    verdicts: dict[str, dict] = {}

    def accept(candidate: Path) -> bool:
        artifact = Artifact(kind="tflite", path=candidate, key=candidate.stem)
        parity = compare(reference, predict_dataset(artifact, candidate.stem, evaluation, 64), evaluation)
        parity.gates = gate_result(parity, GATES, {})
        verdicts[candidate.name] = {gate.metric: gate.value for gate in parity.gates} | {"passed": parity.passed}
        return parity.passed

    return accept, verdicts


def _run(source, tmp_path: Path, calibration: np.ndarray, accept, **options) -> Artifact:
    stage = STAGES["tflite"]
    context = StageContext(
        work_dir=tmp_path, key="fallback", calibration=lambda: iter([{"pixels": calibration}]), accept=accept
    )
    return stage().run(source.artifact, stage.Options(quantize="int8", **options), context)


def test_float_layer_steps() -> None:
    assert float_layer_steps(8) == [1, 2, 4, 8]
    assert float_layer_steps(5) == [1, 2, 4, 5]
    assert float_layer_steps(1) == [1]


def test_fallback_keeps_the_outlier_layer_in_float_until_the_gates_pass(zoo, outlier_source, tmp_path: Path) -> None:
    accept, verdicts = _judge(zoo, outlier_source)
    artifact = _run(outlier_source, tmp_path, zoo.x_test[:100], accept, fallback="auto", max_float_layers=8)
    details = artifact.details
    print("\nfallback details:", {k: v for k, v in details.items() if k != "layer_errors"})
    print("verdicts:", verdicts)
    plain, chosen = verdicts["model.tflite"], verdicts["fallback-1.tflite"]
    assert plain["passed"] is False and plain["cosine"] < 0.9  # plain int8 fails the gates by far
    assert chosen["passed"] is True and chosen["cosine"] > 0.99
    assert details["layer_errors"][0]["tensor_name"].startswith(details["float_layers"][0])
    assert "mix" in details["float_layers"][0] and len(details["float_layers"]) == 1
    steps = details["fallback_steps"]
    assert [step["float_layers"] for step in steps] == [0, 1] and [s["passed"] for s in steps] == [False, True]
    assert steps[1]["size_bytes"] > steps[0]["size_bytes"] == details["size_bytes_int8"]  # float weights cost bytes
    assert artifact.path.stat().st_size == steps[1]["size_bytes"]
    assert accept(artifact.path)  # the file the stage gives is the accepted one
    latency = details["latency_ms_batch1"]
    assert latency["int8"] > 0 and latency["fallback"] > 0


def test_fallback_without_a_judge_keeps_plain_int8_and_says_so(zoo, outlier_source, tmp_path: Path) -> None:
    artifact = _run(outlier_source, tmp_path, zoo.x_test[:100], None, fallback="auto")
    assert artifact.details["float_layers"] == [] and "not judged" in artifact.details["fallback_note"]
    assert "mix" in artifact.details["layer_errors"][0]["tensor_name"]


def test_a_passing_int8_file_is_kept_without_debugging(zoo, tmp_path: Path) -> None:
    artifact = _run(load_source(zoo.keras3), tmp_path, zoo.x_test[:100], lambda path: True, fallback="auto")
    assert artifact.details["fallback_steps"] == [
        {"float_layers": 0, "passed": True, "size_bytes": artifact.path.stat().st_size}
    ]
    assert "layer_errors" not in artifact.details and not (tmp_path / "layer_errors.csv").exists()


def test_run_wires_the_gates_into_fallback_auto(zoo, outlier_source, tmp_path: Path) -> None:
    """End to end: the runner judges candidates with the output's own gates; plain int8 fails them."""
    from pipeline.recipe import load_recipe
    from pipeline.run import RunOptions, run_recipe

    from ..recipes import digits_data, recipe_file

    outputs = {
        "int8": {"stages": [{"tflite": {"quantize": "int8"}}], "gates": GATES},
        "int8-auto": {
            "stages": [{"tflite": {"quantize": "int8", "fallback": "auto", "max_float_layers": 4}}],
            "gates": GATES,
        },
    }
    recipe = recipe_file(
        tmp_path, name="fallback", source=outlier_source.path, data=digits_data(zoo, limit=100), outputs=outputs
    )
    report = run_recipe(load_recipe(recipe), RunOptions(out_dir=tmp_path / "out", use_cache=False), log=print)
    plain, auto = report["outputs"]
    assert plain["status"] == "failed" and auto["status"] == "passed"
    details = auto["stages"][0]["details"]
    assert details["float_layers"] and len(details["float_layers"]) <= 4
    assert details["selected_on"] == "calibration"  # chosen on other samples than the final gates measure
    assert auto["size_bytes"] > plain["size_bytes"]
