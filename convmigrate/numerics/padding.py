"""How much each framework pads a sequence, and padding it the way PyTorch's modes do.

Measured on torch 2.13 and mindspore 2.10 (tests/test_numerics*.py re-check every rule):

- PyTorch `padding="same"` pads `dilation*(K-1)` in total, `total//2` on the left and the odd
  one out on the right; it refuses stride > 1.
- MindSpore `pad_mode="same"` is TensorFlow's rule and allows stride > 1: the output has
  `ceil(L/stride)` steps, the total pad is `max((ceil(L/s)-1)*s + (K-1)*d + 1 - L, 0)`, again
  `total//2` on the left and the odd one out on the right.
"""

from __future__ import annotations

import numpy as np

# PyTorch's padding_mode -> numpy.pad's mode. Same values, different spellings.
_NUMPY_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
PADDING_MODES = tuple(_NUMPY_MODE)


def effective_kernel(kernel_size: int, dilation: int) -> int:
    """The span a dilated kernel covers: K taps `dilation` apart."""
    return (kernel_size - 1) * dilation + 1


def torch_same_padding(kernel_size: int, dilation: int) -> tuple[int, int]:
    """(left, right) zeros PyTorch adds for `padding="same"` (stride 1 only)."""
    total = dilation * (kernel_size - 1)
    return total // 2, total - total // 2


def mindspore_same_padding(length: int, kernel_size: int, stride: int, dilation: int) -> tuple[int, int]:
    """(left, right) zeros MindSpore adds for `pad_mode="same"`, which yields ceil(L/stride) outputs."""
    steps = -(-length // stride)
    total = max((steps - 1) * stride + effective_kernel(kernel_size, dilation) - length, 0)
    return total // 2, total - total // 2


def pad_signal(x: np.ndarray, left: int, right: int, mode: str = "zeros") -> np.ndarray:
    """Pad the last axis of `x` by (left, right) with one of PyTorch's padding modes.

    x: (..., L) -> (..., left + L + right). `mode` is "zeros", "reflect" (mirror without
    repeating the edge), "replicate" (repeat the edge) or "circular" (wrap around). PyTorch's
    limits apply: reflect needs each pad < L, circular needs each pad <= L.
    """
    if mode not in _NUMPY_MODE:
        raise ValueError(f"padding_mode must be one of {', '.join(PADDING_MODES)}, got {mode!r}")
    if left == 0 and right == 0:
        return x
    length = x.shape[-1]
    if mode == "reflect" and max(left, right) >= length:
        raise ValueError(
            f"reflect padding ({left}, {right}) must be less than the input length {length}"
        )
    if mode == "circular" and max(left, right) > length:
        raise ValueError(
            f"circular padding ({left}, {right}) wraps around more than once (input length {length})"
        )
    if mode == "replicate" and length == 0:
        raise ValueError("replicate padding needs a non-empty input")
    widths = [(0, 0)] * (x.ndim - 1) + [(left, right)]
    return np.pad(x, widths, mode=_NUMPY_MODE[mode])
