"""Chunk-sized arrays lent again and again. A fresh 640 KB array costs more than the arithmetic that fills it:
glibc hands such blocks back to the kernel when they are freed, and the kernel zeroes every page again on the
next first touch (0.17 ms an array on a 2-core VM, where the numpy calls on it take 0.03 ms)."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import DTypeLike


class Scratch:
    """Named buffers, grown as needed; an array lent from a slot is valid until that slot is asked for again."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def array(self, slot: str, shape: tuple[int, ...], dtype: DTypeLike = np.float64) -> np.ndarray:
        """An uninitialised array of `shape` and `dtype` in `slot`'s memory."""
        dtype = np.dtype(dtype)
        size = math.prod(shape) * dtype.itemsize
        buffer = self._buffers.get(slot)
        if buffer is None or buffer.size < size:
            buffer = self._buffers[slot] = np.empty(size, np.uint8)
        return buffer[:size].view(dtype).reshape(shape)

    def copy(self, slot: str, values: np.ndarray, dtype: DTypeLike = np.float64) -> np.ndarray:
        """`values.astype(dtype)`, in `slot`'s memory."""
        array = self.array(slot, values.shape, dtype)
        np.copyto(array, values, casting="unsafe")
        return array
