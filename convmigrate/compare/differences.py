"""How far a MindSpore tensor is from the PyTorch one, and whether that is within tolerance.

Errors are measured against the size of the PyTorch tensor, as `verify` measures a conv: a
tensor passes when max |ms - torch| <= atol + rtol * max |torch|. Float32 rounding in two
frameworks' kernels grows with the values' magnitude, not element by element, so an elementwise
relative error would fail every correct port on the elements that happen to be near zero.
Integer and boolean tensors must be equal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# (rtol, atol) for float tensors of a whole network on CPU, relative to the largest magnitude.
# Measured (bench/compare_tolerance.py, README "Proving a port"): faithful float32 ports of
# transformers' Wav2Vec2 (base size, 1-4 s of audio) and HiFi-GAN differ by at most 4.4e-6 of a
# tensor's scale at any layer; 1e-4 leaves a 20x margin and still catches MindSpore's default
# tanh-approximated GELU (2.5e-4) as well as a wrong padding, bias or epsilon (1e-3 to 1).
# No absolute floor: an untrained vocoder's waveform is ~1e-6 in size, and any atol near the
# usual 1e-5 would pass whatever the port computed for it. Pass --atol for tensors that are
# exactly zero on one side.
DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 0.0


@dataclass(frozen=True)
class Difference:
    """One tensor pair: its shapes, errors and verdict. `detail` says why it failed."""

    torch_shape: tuple[int, ...] | None
    ms_shape: tuple[int, ...] | None
    max_abs: float
    max_rel: float
    passed: bool
    detail: str = ""
    comparable: bool = True  # False: the shapes (or the number of tensors) differ

    def to_json(self) -> dict:
        return {
            "torch_shape": _list(self.torch_shape), "mindspore_shape": _list(self.ms_shape),
            "max_abs": _finite(self.max_abs), "max_rel": _finite(self.max_rel), "passed": self.passed,
            "detail": self.detail,
        }


def _list(shape: tuple[int, ...] | None) -> list[int] | None:
    return list(shape) if shape is not None else None


def _finite(value: float) -> float | str:
    """JSON has no infinity: say it in words."""
    return value if math.isfinite(value) else ("inf" if value > 0 else "nan")


def compare_arrays(expected: np.ndarray, got: np.ndarray, rtol: float, atol: float) -> Difference:
    """`got` (MindSpore) against `expected` (PyTorch)."""
    shapes = tuple(expected.shape), tuple(got.shape)
    if expected.shape != got.shape:
        # A port may keep a unit axis the original drops (a Conv2d standing in for a Conv1d):
        # the values still compare; the shapes are named all the same.
        if expected.size != got.size or _squeezed(expected.shape) != _squeezed(got.shape):
            return Difference(*shapes, math.inf, math.inf, False,
                              f"torch {_text(expected.shape)}, MindSpore {_text(got.shape)}", False)
        got = got.reshape(expected.shape)
    exact = not (np.issubdtype(expected.dtype, np.inexact) or np.issubdtype(got.dtype, np.inexact))
    a, b = expected.astype(np.float64), got.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    same_inf = np.isinf(a) & (a == b)
    error = np.where(both_nan | same_inf, 0.0, np.abs(a - b))
    error = np.where(np.isnan(error), math.inf, error)
    max_abs = float(error.max(initial=0.0))
    finite = np.isfinite(a)
    scale = float(np.abs(a[finite]).max(initial=0.0))
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    allowed = 0.0 if exact else atol + rtol * scale
    passed = max_abs <= allowed
    detail = ""
    if not passed:
        where = np.unravel_index(int(np.argmax(error)), error.shape) if error.size else ()
        detail = (f"off by {max_abs:.3g} at {list(map(int, where))} (torch {a[where]:.6g}, MindSpore {b[where]:.6g}; "
                  f"allowed {allowed:.3g})")
    if shapes[0] != shapes[1]:
        detail = f"compared as {_text(expected.shape)} (MindSpore {_text(shapes[1])}); " + detail
    return Difference(*shapes, max_abs, max_rel, passed, detail.rstrip("; "))


def compare_many(expected: list[np.ndarray], got: list[np.ndarray], rtol: float, atol: float) -> Difference:
    """A layer whose output is several tensors (an LSTM's output and state): the worst of them."""
    if len(expected) != len(got):
        return Difference(None, None, math.inf, math.inf, False,
                          f"torch gives {len(expected)} tensor(s), MindSpore {len(got)}", False)
    if not expected:
        return Difference(None, None, 0.0, 0.0, True, "no tensor output")
    parts = [compare_arrays(e, g, rtol, atol) for e, g in zip(expected, got)]
    # Shapes shown: the first failing tensor's, else the first tensor's (a layer's main output).
    shown = next((p for p in parts if not p.passed), parts[0])
    index = parts.index(shown)
    detail = shown.detail if len(parts) == 1 or shown.passed else f"tensor {index}: {shown.detail}"
    return Difference(shown.torch_shape, shown.ms_shape, max(p.max_abs for p in parts), max(p.max_rel for p in parts),
                      all(p.passed for p in parts), detail, all(p.comparable for p in parts))


def _squeezed(shape: Iterable[int]) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)


def _text(shape: Iterable[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"
