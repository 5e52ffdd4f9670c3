"""The arithmetic behind the public convolutions: grouped, strided, dilated 1-D correlation and
its transpose, in NumPy. Inputs are already validated, padded and in the compute dtype
(float32 or float64); conv.py and transpose.py own the frameworks' rules.

- `correlate` picks a strategy per shape from the table in _plan.py (im2col in two memory
  orders, a plain matmul for K=1, banded matmuls or per-tap sums for depthwise convs).
- `col2im` is the transposed conv (_transposed.py).
"""

from convmigrate.numerics._plan import correlate
from convmigrate.numerics._transposed import col2im

__all__ = ["col2im", "correlate"]
