"""Tensor computations a migration may need beyond reshaping: folding weight norm."""

from __future__ import annotations

import numpy as np

from convmigrate.vocab import DType


def fold_weight_norm(g: np.ndarray, v: np.ndarray, dim: int | None, dtype: DType) -> np.ndarray:
    """weight = g * v / ||v||, the norm taken over every axis but `dim` (all axes if None).

    Computed in float32 (float64 stays float64), as torch._weight_norm does for float32, and
    returned in `dtype`'s storage (bfloat16 as uint16 bits).

    Example:
        >>> from convmigrate.vocab import DTYPES
        >>> v = np.ones((2, 1, 3), np.float32); g = np.full((2, 1, 1), 3.0, np.float32)
        >>> fold_weight_norm(g, v, 0, DTYPES["float32"])[0, 0].round(5)   # 3 * v / sqrt(3)
        array([1.73205, 1.73205, 1.73205], dtype=float32)
    """
    g32 = dtype.to_float32(g)
    v32 = dtype.to_float32(v)
    if dim is None:
        norm = np.sqrt(np.sum(v32 * v32, dtype=v32.dtype))
    else:
        axes = tuple(a for a in range(v32.ndim) if a != dim)
        norm = np.sqrt(np.sum(v32 * v32, axis=axes, keepdims=True, dtype=v32.dtype))
    folded = v32 * (g32.reshape(g32.shape if dim is not None else ()) / norm)
    return dtype.from_float32(folded)
