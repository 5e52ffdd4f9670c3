"""Which precision a convolution is computed in, and how its result is stored.

The policy mirrors what PyTorch's CPU kernels do, measured against torch 2.13:

| element type of x, weight, bias | computed in | returned as                          |
| ------------------------------- | ----------- | ------------------------------------ |
| float64                         | float64     | float64                              |
| float32                         | float32     | float32                              |
| float16                         | float32     | float16 (rounded once, at the end)   |
| bfloat16 (uint16 bit patterns)  | float32     | bfloat16 bits as uint16 (RNE, once)  |

NumPy has no bfloat16, so a bfloat16 tensor travels as the uint16 array of its bits (the same
convention as `convmigrate.vocab.DType`) and the caller says so with `dtype="bfloat16"`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convmigrate.vocab import DTYPES, DType

# The element types a convolution accepts, by PyTorch's name.
SUPPORTED = ("float16", "bfloat16", "float32", "float64")


@dataclass(frozen=True)
class Precision:
    """The storage dtype of a call's tensors and the dtype its arithmetic runs in."""

    storage: DType
    compute: np.dtype

    def load(self, array: np.ndarray | None, what: str) -> np.ndarray | None:
        """`array` (stored as `storage`) as a C-contiguous array of the compute dtype."""
        if array is None:
            return None
        array = np.asarray(array)
        if array.dtype != self.storage.numpy:
            raise ValueError(
                f"{what} has dtype {array.dtype} but the input is {self.storage.name} "
                f"(stored as {self.storage.numpy}): x, weight and bias must share one dtype"
            )
        if array.dtype == self.compute:  # float32/float64: no conversion, no copy if contiguous
            return np.ascontiguousarray(array)
        return np.ascontiguousarray(self.storage.to_float32(array), dtype=self.compute)

    def store(self, result: np.ndarray) -> np.ndarray:
        """Round a compute-dtype result to the storage dtype (once), as a new C-contiguous array."""
        if result.dtype == self.storage.numpy:
            return np.ascontiguousarray(result)
        return np.ascontiguousarray(self.storage.from_float32(result))


def resolve_precision(x: np.ndarray, dtype: str | None) -> Precision:
    """The Precision of a call whose input is `x`; `dtype` names it when x's dtype cannot.

    `dtype=None` infers float16/float32/float64 from `x.dtype`. A uint16 `x` is ambiguous, so it
    needs `dtype="bfloat16"`. Any other dtype is refused: convolutions are floating point.
    """
    if dtype is None:
        kind = np.asarray(x).dtype
        names = {DTYPES[n].numpy: n for n in ("float16", "float32", "float64")}
        if kind not in names:
            hint = ' (bfloat16 bits? pass dtype="bfloat16")' if kind == np.uint16 else ""
            raise ValueError(f"x has dtype {kind}; expected float16, float32 or float64{hint}")
        dtype = names[kind]
    name = dtype.removeprefix("torch.")
    if name not in SUPPORTED:
        raise ValueError(f"dtype={dtype!r} is not supported; expected one of {', '.join(SUPPORTED)}")
    compute = np.dtype(np.float64) if name == "float64" else np.dtype(np.float32)
    return Precision(DTYPES[name], compute)
