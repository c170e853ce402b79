"""Sparsity masks and what pruning left in the weights: numpy only, no framework.

The masks are tfmot's (magnitude, per kernel; m-by-n on input channels) so that the Keras 3 path of
the prune stage zeroes the same weights tfmot would; the prune stage is their one user.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def magnitude_mask(kernel: np.ndarray, sparsity: float, structure: str | None = None) -> np.ndarray:
    """1 where a weight stays. Unstructured: zero the round(sparsity × size) smallest magnitudes of the kernel.
    2:4: in every 4 consecutive input-channel weights (tfmot's layout), zero the 2 smallest."""
    magnitude = np.abs(kernel)
    if structure == "2:4":
        return _m_by_n_mask(magnitude, zeros=2, block=4)
    mask = np.ones(kernel.size, dtype=kernel.dtype)
    mask[np.argsort(magnitude, axis=None, kind="stable")[: round(sparsity * kernel.size)]] = 0
    return mask.reshape(kernel.shape)


def _m_by_n_mask(magnitude: np.ndarray, zeros: int, block: int) -> np.ndarray:
    rows = np.moveaxis(magnitude, -2, -1)  # input channels last, as tfmot lays them out for TFLite
    flat = rows.reshape(-1, rows.shape[-1])
    pad = (-flat.shape[1]) % block
    # Padding counts as smallest, as in tfmot: a layer with fewer than 4 input channels keeps its weights.
    blocks = np.pad(flat, ((0, 0), (0, pad)), constant_values=-1).reshape(flat.shape[0], -1, block)
    mask = np.ones_like(blocks)
    np.put_along_axis(mask, np.argsort(blocks, axis=-1)[..., :zeros], 0, axis=-1)
    mask = mask.reshape(flat.shape[0], -1)[:, : flat.shape[1]].reshape(rows.shape)
    return np.moveaxis(mask, -1, -2).astype(magnitude.dtype)


def measure_sparsity(model: Any, targets: list[str]) -> dict[str, Any]:
    """Fractions of exact zeros, counted on the kernels of the pruned layers."""
    kernels = {layer.name: np.asarray(layer.kernel) for layer in model.layers if layer.name in targets}
    zeros = {name: int(np.count_nonzero(kernel == 0)) for name, kernel in kernels.items()}
    prunable = sum(kernel.size for kernel in kernels.values())
    return {
        "sparsity": {name: round(zeros[name] / kernels[name].size, 4) for name in kernels},
        "overall_sparsity": round(sum(zeros.values()) / prunable, 4),
        "prunable_parameters": prunable,
        "zero_parameters": sum(zeros.values()),
    }
