"""Fourier transforms as real matrix products, for tracing a Keras 3 model whose FFTs no converter takes.

TFLite's builtins have no `Complex` or `FFT2D` (they need Flex, which ai-edge-litert lacks), and ONNX has no complex
tensors (tf2onnx leaves `Complex`, which onnx.checker rejects). keras-hub's FNet mixes tokens with the real part of
a 2-D FFT (`keras.ops.fft2`). Over sizes known when the model is traced, a DFT is a product with the constant
matrices C[j, k] = cos(2πjk/n) and S[j, k] = sin(2πjk/n), which both converters take as plain matrix products.
Knows Keras's TensorFlow backend; nothing of recipes or reports.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

# What the converters say about an FFT: TFLite names the ops it lacks, onnx.checker the op it does not know.
_FFT_SIGNS = re.compile(r"\b(FFT2D|FFT3D|FFT|RFFT|Complex)\b")


def fails_on_fft(error: str) -> bool:
    """Whether a conversion error is about complex tensors or FFT ops."""
    return _FFT_SIGNS.search(error) is not None


@contextlib.contextmanager
def fft_as_matmul() -> Iterator[None]:
    """While open, Keras's `ops.fft2` on the TensorFlow backend computes over sizes known at trace time as DFT
    matrix products (over unknown sizes it stays an FFT); trace the model inside it."""
    from keras.src import backend

    original = backend.math.fft2

    def fft2(x: Any) -> Any:
        real, imaginary = x
        rows, columns = real.shape[-2], real.shape[-1]
        if rows is None or columns is None:
            return original(x)
        return _dft2(real, imaginary, int(rows), int(columns))

    backend.math.fft2 = fft2
    try:
        yield
    finally:
        backend.math.fft2 = original


def _dft2(real: Any, imaginary: Any, rows: int, columns: int) -> tuple[Any, Any]:
    """F_rows · X · F_columns for X = real + i·imaginary over the last two axes, with F = C - iS."""
    import tensorflow as tf

    cos_c, sin_c = _dft_matrices(columns, real.dtype)
    cos_r, sin_r = _dft_matrices(rows, real.dtype)
    # X · F_columns = (Xr·C + Xi·S) + i(Xi·C - Xr·S)
    left_real = tf.matmul(real, cos_c) + tf.matmul(imaginary, sin_c)
    left_imaginary = tf.matmul(imaginary, cos_c) - tf.matmul(real, sin_c)
    # F_rows · (A + iB) = (C·A + S·B) + i(C·B - S·A), C and S acting on the rows axis
    out_real = tf.einsum("jm,...mn->...jn", cos_r, left_real) + tf.einsum("jm,...mn->...jn", sin_r, left_imaginary)
    out_imaginary = tf.einsum("jm,...mn->...jn", cos_r, left_imaginary) - tf.einsum("jm,...mn->...jn", sin_r, left_real)
    return out_real, out_imaginary


def _dft_matrices(size: int, dtype: Any) -> tuple[Any, Any]:
    """cos and sin of 2πjk/size, from jk mod size so large products keep their precision."""
    import tensorflow as tf

    steps = np.outer(np.arange(size), np.arange(size)) % size
    angle = 2.0 * np.pi * steps / size
    return tf.constant(np.cos(angle), dtype=dtype), tf.constant(np.sin(angle), dtype=dtype)
