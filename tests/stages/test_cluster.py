"""cluster stage: tfmot weight clustering (tf_keras) and per-kernel k-means (Keras 3), counted on the weights."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from pipeline.sources import load_source
from pipeline.stages.cluster import kmeans, snap

from ..helpers import predict, run_stage

KERNELS = ("conv2d", "conv2d_1", "dense", "logits")


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_kernels_take_at_most_n_values_and_accuracy_holds(
    flavour: str, zoo, tf_keras_digits, fine_tune, tmp_path: Path
) -> None:
    upstream = load_source(zoo.keras3).artifact if flavour == "keras3" else tf_keras_digits
    before = [w.copy() for w in upstream.handle.get_weights()]
    artifact = run_stage("cluster", upstream, tmp_path, fine_tune=fine_tune, number_of_clusters=8, epochs=1)
    for layer in artifact.handle.layers:
        if layer.name in KERNELS:
            assert len(np.unique(np.asarray(layer.kernel))) <= 8, layer.name
            assert artifact.details["unique_values"][layer.name] == len(np.unique(np.asarray(layer.kernel)))
    assert artifact.details["overall_unique_values"] <= 8 * len(KERNELS)
    for old, new in zip(before, upstream.handle.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    accuracy = lambda a: float((predict(a, zoo.x_test).argmax(axis=1) == zoo.y_test).mean())  # noqa: E731
    assert accuracy(artifact) >= accuracy(upstream) - 0.04
    tflite = run_stage("tflite", artifact, tmp_path / "tflite").path.read_bytes()
    dense = run_stage("tflite", upstream, tmp_path / "dense").path.read_bytes()
    assert len(gzip.compress(tflite)) < 0.5 * len(gzip.compress(dense))


@pytest.mark.parametrize("initialization", ["linear", "kmeans_plus_plus", "density_based", "random"])
def test_kmeans_initialisations_give_at_most_k_centroids(initialization: str) -> None:
    values = np.random.default_rng(1).normal(size=2000)
    centroids, assignment = kmeans(values, 8, initialization, np.random.default_rng(0))
    assert len(centroids) == 8 and assignment.max() < 8
    snapped = snap(values, assignment)
    assert len(np.unique(snapped)) <= 8
    assert np.abs(snapped - values).mean() < 0.25  # 8 clusters over ~6 σ: well under a cluster's width
