"""`cluster` stage: Keras model → Keras model whose kernels take at most N distinct values, fine-tuned.

tf_keras models go through tfmot (cluster_weights, fit, strip_clustering). tfmot refuses Keras 3
models, so for them each kernel is clustered here (tfmot's centroid initialisations, then k-means) and
fine-tuned with its assignments fixed: after every training step each weight snaps back to the mean of
its cluster, so the centroids move with the gradients as tfmot's trainable centroids do. Only kernels
are clustered (Dense, Conv, DepthwiseConv2D), never biases. Knows nothing of recipes, runtimes or
reports; `details` counts distinct values measured on the weights.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from pipeline.core.artifact import Artifact
from pipeline.errors import StageError, first_line
from pipeline.stages import finetune
from pipeline.stages.base import StageContext

CLUSTERED_LAYERS = (*finetune.KERNEL_LAYERS, "DepthwiseConv2D")
_KMEANS_ITERATIONS = 20


class ClusterOptions(finetune.FineTuneOptions):
    number_of_clusters: int = Field(16, ge=2, le=65536, description="Distinct values per kernel.")
    centroid_initialization: Literal["linear", "kmeans_plus_plus", "density_based", "random"] = Field(
        "kmeans_plus_plus", description="How the cluster centres start before k-means."
    )


class ClusterStage(finetune.FineTuningStage):
    kind = "cluster"
    Options = ClusterOptions

    @classmethod
    def describe(cls, options: ClusterOptions) -> str:
        return f"cluster {options.number_of_clusters} {options.centroid_initialization} epochs={options.epochs}"

    def run(self, upstream: Artifact, options: ClusterOptions, ctx: StageContext) -> Artifact:
        return finetune.tune_by_flavour(
            upstream,
            options,
            ctx,
            keras3=lambda model: _cluster_keras3(model, options, ctx),
            tf_keras=lambda model, from_logits: _cluster_tf_keras(model, options, ctx, from_logits),
            methods=("keras3 k-means, fixed assignments", "tfmot cluster_weights"),
            settings={
                "number_of_clusters": options.number_of_clusters,
                "centroid_initialization": options.centroid_initialization,
            },
            measure=measure_unique_values,
        )


def _cluster_tf_keras(model: Any, options: ClusterOptions, ctx: StageContext, from_logits: bool) -> Any:
    import tf_keras

    clustering = finetune.import_tfmot().clustering.keras
    init = getattr(clustering.CentroidInitialization, options.centroid_initialization.upper())
    try:
        wrapped = clustering.cluster_weights(
            model, number_of_clusters=options.number_of_clusters, cluster_centroids_init=init
        )
    except ValueError as error:  # layers tfmot cannot cluster
        raise StageError(f"tfmot cannot cluster this model: {first_line(error, 400)}") from error
    finetune.compile_for(wrapped, tf_keras, options, from_logits)
    finetune.fit(wrapped, ctx, options, [])
    return clustering.strip_clustering(wrapped)


def _cluster_keras3(model: Any, options: ClusterOptions, ctx: StageContext) -> Any:
    import keras

    kernels = [layer.kernel for layer in model.layers if type(layer).__name__ in CLUSTERED_LAYERS]
    rng = np.random.default_rng(options.seed)
    assignments = []
    for kernel in kernels:
        values = np.asarray(kernel)
        centroids, assignment = kmeans(values.ravel(), options.number_of_clusters, options.centroid_initialization, rng)
        kernel.assign(centroids[assignment].reshape(values.shape).astype(values.dtype))
        assignments.append(assignment)

    class SnapToCentroids(keras.callbacks.Callback):
        """After each step, every weight takes its cluster's mean: the centroid moved by the mean gradient step."""

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            for kernel, assignment in zip(kernels, assignments, strict=True):
                values = np.asarray(kernel)
                kernel.assign(snap(values.ravel(), assignment).reshape(values.shape))

    finetune.fit(model, ctx, options, [SnapToCentroids()])
    return finetune.clone(model, keras)  # drops the optimizer state from what is saved


def kmeans(values: np.ndarray, clusters: int, initialization: str, rng: np.random.Generator) -> tuple:
    """1-D k-means from one of tfmot's initialisations; returns (centroids, index of each value's centroid)."""
    centroids = _initial_centroids(values, clusters, initialization, rng)
    for _ in range(_KMEANS_ITERATIONS):
        assignment = _nearest(values, centroids)
        updated = snap_centroids(values, assignment, centroids)
        if np.allclose(updated, centroids):
            break
        centroids = updated
    return centroids, _nearest(values, centroids)


def _initial_centroids(values: np.ndarray, clusters: int, initialization: str, rng: np.random.Generator) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if initialization == "linear":
        return np.linspace(low, high, clusters)
    if initialization == "random":
        return np.sort(rng.uniform(low, high, clusters))
    if initialization == "density_based":
        return np.quantile(values, np.linspace(0, 1, clusters))
    centroids = [values[rng.integers(len(values))]]  # k-means++: far values are likelier next centroids
    for _ in range(clusters - 1):
        distance = np.min(np.abs(values[:, None] - np.asarray(centroids)[None, :]), axis=1) ** 2
        total = distance.sum()
        centroids.append(values[rng.choice(len(values), p=distance / total)] if total > 0 else values[0])
    return np.sort(np.asarray(centroids, dtype=np.float64))


def _nearest(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return np.argmin(np.abs(values[:, None] - centroids[None, :]), axis=1)


def snap_centroids(values: np.ndarray, assignment: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Mean of each cluster's values; an empty cluster keeps its previous centroid."""
    counts = np.bincount(assignment, minlength=len(previous))
    sums = np.bincount(assignment, weights=values, minlength=len(previous))
    return np.where(counts > 0, sums / np.maximum(counts, 1), previous)


def snap(values: np.ndarray, assignment: np.ndarray) -> np.ndarray:
    centroids = snap_centroids(values, assignment, np.zeros(assignment.max() + 1))
    return centroids[assignment].astype(values.dtype)


def measure_unique_values(model: Any) -> dict[str, Any]:
    """Distinct values of each clustered kernel (tf_keras calls DepthwiseConv2D's `depthwise_kernel`)."""
    kernels = {}
    for layer in model.layers:
        if type(layer).__name__ in CLUSTERED_LAYERS:
            kernel = layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") else layer.kernel
            kernels[layer.name] = np.asarray(kernel)
    every = np.concatenate([kernel.ravel() for kernel in kernels.values()]) if kernels else np.zeros(0)
    return {
        "unique_values": {name: len(np.unique(kernel)) for name, kernel in kernels.items()},
        "overall_unique_values": len(np.unique(every)),
        "clustered_parameters": int(every.size),
    }
