"""prune stage: real tfmot (tf_keras) and Keras 3 magnitude masks on the digits CNN, measured on the weights."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.data import Dataset
from pipeline.errors import StageError
from pipeline.sources import load_source
from pipeline.stages.masks import magnitude_mask
from pipeline.stages.prune import PruneOptions, PruneStage

from ..helpers import predict, run_stage, top1_agreement

KERNELS = ("conv2d", "conv2d_1", "dense", "logits")


def _accuracy(model, zoo) -> float:
    return float((np.asarray(model(zoo.x_test, training=False)).argmax(axis=1) == zoo.y_test).mean())


def _kernels(model) -> dict[str, np.ndarray]:
    return {layer.name: np.asarray(layer.kernel) for layer in model.layers if layer.name in KERNELS}


@pytest.fixture(scope="module", params=["keras3", "tf_keras"])
def pruned(request, zoo, tf_keras_digits, fine_tune, tmp_path_factory):
    upstream = load_source(zoo.keras3).artifact if request.param == "keras3" else tf_keras_digits
    before = {name: kernel.copy() for name, kernel in _kernels(upstream.handle).items()}
    work = tmp_path_factory.mktemp(f"prune-{request.param}")
    artifact = run_stage("prune", upstream, work, fine_tune=fine_tune, sparsity=0.5, epochs=1)
    return upstream, before, artifact


def test_kernels_reach_the_target_sparsity_measured_on_the_weights(pruned) -> None:
    upstream, _, artifact = pruned
    kernels = _kernels(artifact.handle)
    assert set(kernels) == set(KERNELS)
    for name, kernel in kernels.items():
        assert abs(np.mean(kernel == 0) - 0.5) <= 0.02, name
    overall = sum(np.count_nonzero(k == 0) for k in kernels.values()) / sum(k.size for k in kernels.values())
    assert abs(overall - 0.5) <= 0.02
    assert artifact.details["overall_sparsity"] == pytest.approx(overall, abs=1e-4)
    assert artifact.details["sparsity"]["dense"] == pytest.approx(np.mean(kernels["dense"] == 0), abs=1e-4)
    biases = [layer.bias for layer in artifact.handle.layers if getattr(layer, "bias", None) is not None]
    assert all(np.count_nonzero(np.asarray(bias)) == np.size(bias) for bias in biases if np.size(bias) > 8)
    assert artifact.flavour == upstream.flavour
    assert artifact.details["fine_tune_after"]["accuracy"] > 0.9


def test_upstream_is_untouched_and_accuracy_holds(pruned, zoo) -> None:
    upstream, before, artifact = pruned
    for name, kernel in _kernels(upstream.handle).items():
        np.testing.assert_array_equal(kernel, before[name])
    assert _accuracy(artifact.handle, zoo) >= _accuracy(upstream.handle, zoo) - 0.03


def test_saved_file_loads_back_to_the_same_model(pruned, zoo) -> None:
    _, _, artifact = pruned
    assert artifact.path.suffix == (".h5" if artifact.flavour == "tf_keras" else ".keras")
    loaded = load_source(artifact.path).artifact
    np.testing.assert_allclose(predict(loaded, zoo.x_test), predict(artifact, zoo.x_test), atol=1e-5)


def test_pruned_model_converts_to_int8_tflite_and_onnx(pruned, zoo, tmp_path: Path) -> None:
    _, _, artifact = pruned
    reference = predict(artifact, zoo.x_test)
    int8 = run_stage("tflite", artifact, tmp_path / "int8", calibration=zoo.x_test[:100], quantize="int8", io="int8")
    assert top1_agreement(predict(int8, zoo.x_test), reference) >= 0.95
    onnx = run_stage("onnx", artifact, tmp_path / "onnx")
    assert np.abs(predict(onnx, zoo.x_test) - reference).max() < 1e-4


def test_pruning_shows_in_gzip_size_not_raw_size(pruned, tmp_path: Path) -> None:
    upstream, _, artifact = pruned
    dense = run_stage("tflite", upstream, tmp_path / "dense").path.read_bytes()
    sparse = run_stage("tflite", artifact, tmp_path / "sparse").path.read_bytes()
    assert abs(len(sparse) - len(dense)) < 0.02 * len(dense)
    assert len(gzip.compress(sparse)) < 0.8 * len(gzip.compress(dense))


def test_keras3_masks_follow_tfmot_schedule_exactly(zoo, tf_keras_digits, fine_tune, tmp_path: Path) -> None:
    """Same weights, data and polynomial schedule: the Keras 3 path zeroes as many weights per layer as tfmot."""
    small = Dataset("fine_tune", "test", {"pixels": fine_tune.inputs["pixels"][:256]}, fine_tune.labels[:256])
    options = dict(
        sparsity=0.8, schedule="polynomial", initial_sparsity=0.2, epochs=1, layers={"exclude": ["^logits$"]}
    )
    keras3 = run_stage("prune", load_source(zoo.keras3).artifact, tmp_path / "k3", fine_tune=small, **options)
    tfmot = run_stage("prune", tf_keras_digits, tmp_path / "tfk", fine_tune=small, **options)
    assert keras3.details["method"] != tfmot.details["method"]
    assert keras3.details["sparsity"] == tfmot.details["sparsity"]
    assert set(keras3.details["sparsity"]) == {"conv2d", "conv2d_1", "dense"}  # logits excluded
    assert np.count_nonzero(_kernels(keras3.handle)["logits"] == 0) == 0


def test_two_four_mask_matches_tfmot() -> None:
    from pipeline.stages.finetune import import_tfmot

    import_tfmot()
    import tensorflow as tf
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_utils as utils

    rng = np.random.default_rng(0)
    for shape in [(3, 3, 6, 8), (32, 10), (3, 3, 1, 16)]:
        kernel = rng.normal(size=shape).astype(np.float32)
        ours = magnitude_mask(kernel, 0.5, "2:4")
        rearranged = utils.weights_rearrange(tf.constant(kernel))
        theirs = utils.m_by_n_sparsity_mask_prepare(
            utils.generate_m_by_n_mask(rearranged, (2, 4)), tf.TensorShape(shape)
        )
        np.testing.assert_array_equal(ours, theirs.numpy())


def test_unstructured_mask_zeroes_the_smallest_magnitudes() -> None:
    kernel = np.array([[0.1, -5.0], [-0.2, 3.0], [0.05, -0.3]], dtype=np.float32)
    np.testing.assert_array_equal(magnitude_mask(kernel, 0.5), [[0, 1], [0, 1], [0, 1]])


def test_options_are_validated() -> None:
    for bad in [{"sparsity": 1.0}, {"sparsity": -0.1}, {"epochs": 0}, {"frequency": 0}, {"sparsity_target": 0.5}]:
        with pytest.raises(ValidationError):
            PruneOptions(**bad)
    with pytest.raises(ValidationError, match="2:4"):
        PruneOptions(structure="2:4", sparsity=0.7)
    with pytest.raises(ValidationError, match="initial_sparsity"):
        PruneOptions(schedule="polynomial", initial_sparsity=0.6, sparsity=0.5)
    assert PruneStage.required_data(PruneOptions()) == ["fine_tune", "fine_tune.labels"]
    assert PruneOptions().frequency == 1


def test_missing_fine_tune_data_and_no_matching_layer_are_stage_errors(zoo, fine_tune, tmp_path: Path) -> None:
    source = load_source(zoo.keras3).artifact
    with pytest.raises(StageError, match=r"data\.fine_tune"):
        run_stage("prune", source, tmp_path / "a")
    with pytest.raises(StageError, match="no Dense/Conv layer"):
        run_stage("prune", source, tmp_path / "b", fine_tune=fine_tune, layers={"include": ["^nothing$"]})
