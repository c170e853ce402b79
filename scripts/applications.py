"""Keras Applications with random weights, made to behave like trained ones at the scale of their activations.

Shared by `tests/e2e/test_architectures.py` and `scripts/cpu_table.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build_application(name: str, path: Path, size: int = 32, pixels: float = 1.0, **options: object) -> None:
    """A Keras Application (size×size inputs, `options` for its constructor) with random weights whose batch-norm
    statistics come from one batch of pixels in [0, pixels), so activations keep a unit scale (freshly initialised
    moving statistics shrink them to ~1e-12). A model that rescales its own inputs from [0, 255] (EfficientNet,
    MobileNetV3, ConvNeXt) needs pixels=255: fed [0, 1) it sees nearly constant images, and its statistics then
    amplify float32 rounding by 1e3-1e4."""
    from pipeline.frameworks import captured_native_output, import_tensorflow

    import_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    extra = {"include_preprocessing": False} if name == "MobileNetV3Small" else {}
    extra |= options  # the constructor's own (MobileNetV2's alpha)
    with captured_native_output():
        model = getattr(keras.applications, name)(
            input_shape=(size, size, 3), weights=None, classes=10, classifier_activation=None, **extra
        )
        norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
        for layer in norms:
            layer.momentum = 0.0
        model(pixels * np.random.default_rng(0).random((64, size, size, 3), dtype=np.float32), training=True)
        for layer in norms:
            layer.momentum = 0.99
        model.save(path)
