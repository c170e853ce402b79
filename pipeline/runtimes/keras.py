"""Keras runtime: a Keras 3 or tf_keras model called in inference mode."""

from __future__ import annotations

import warnings

import numpy as np

from pipeline.core.artifact import Artifact
from pipeline.runtimes.base import Runtime
from pipeline.sources import keras_call_inputs, keras_tensor_specs, load_source


class KerasRuntime(Runtime):
    kind = "keras"
    name = "keras"
    suffixes = (".keras", ".h5", ".hdf5")

    def __init__(self, artifact: Artifact, threads: int | None = None, **settings: str) -> None:
        super().__init__(artifact, threads, **settings)
        if artifact.handle is None:
            artifact = load_source(artifact.path).artifact
        self.model = artifact.handle
        self.inputs, self.outputs = keras_tensor_specs(self.model, artifact.path)

    def predict_batch(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arguments = keras_call_inputs(self.model, feed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras 3 warns when a single array stands for a one-input list
            # predict_on_batch runs a compiled function: ~15x faster than an eager call on small models.
            result = self.model.predict_on_batch(arguments)
        if isinstance(result, dict):
            values = [result[spec.name] for spec in self.outputs]
        elif isinstance(result, list | tuple):
            values = list(result)
        else:
            values = [result]
        return {spec.name: np.asarray(value) for spec, value in zip(self.outputs, values, strict=True)}
