"""SavedModel runtime: one signature of a SavedModel, called eagerly."""

from __future__ import annotations

import numpy as np

from pipeline.core.artifact import Artifact
from pipeline.frameworks import import_tensorflow
from pipeline.runtimes.base import Runtime
from pipeline.sources import load_source, signature_tensor_specs


class SavedModelRuntime(Runtime):
    kind = "savedmodel"
    name = "savedmodel"  # a directory: no suffix

    def __init__(self, artifact: Artifact, threads: int | None = None, **settings: str) -> None:
        super().__init__(artifact, threads, **settings)
        self.tf = import_tensorflow()
        signature = artifact.signature or "serving_default"
        # Keep `loaded` referenced: the signature function's variables live on it. An artifact without a handle
        # carries no word of trust, so its graphs are checked as untrusted before it loads.
        self.loaded = artifact.handle or load_source(artifact.path, signature, trusted=False).artifact.handle
        self.function = self.loaded.signatures[signature]
        self.inputs, self.outputs = signature_tensor_specs(self.function)

    def predict_batch(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = {spec.name: self.tf.constant(feed[spec.name], dtype=spec.dtype) for spec in self.inputs}
        result = self.function(**tensors)
        return {spec.name: result[spec.name].numpy() for spec in self.outputs}
