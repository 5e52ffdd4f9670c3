"""Network-level proof of a port: the PyTorch model and the ported MindSpore network, side by side.

`run_compare` converts the weights with the MindSpore network's own parameter names and shapes as
the reference, loads both networks strictly, runs both on the same inputs, compares every output,
and pairs every layer's outputs by name to name the first layer where the two part.

Modules: `frameworks` (lazy torch / MindSpore, the user's factories), `inputs` (--input shapes,
.npz), `loading` (strict loads naming everything left out), `recording` (forward hooks on both
sides), `differences` (errors and tolerance), `results` (values), `run` (the whole).
Importing this package imports neither framework. `convmigrate.compare(...)` is the API
function (api.compare); importing this package puts the package in its place, so it calls it.
"""

import inspect
import sys
import types
from typing import Any

from convmigrate import api
from convmigrate.compare.differences import DEFAULT_ATOL, DEFAULT_RTOL
from convmigrate.compare.results import (
    CompareResult,
    LayerComparison,
    LayerStatus,
    LoadResult,
    OutputComparison,
)
from convmigrate.compare.run import CompareRequest, run_compare

__all__ = [
    "DEFAULT_ATOL", "DEFAULT_RTOL", "CompareRequest", "CompareResult", "LayerComparison", "LayerStatus", "LoadResult",
    "OutputComparison", "run_compare",
]


class _CallablePackage(types.ModuleType):
    """Shares its name with `convmigrate.compare(weights, ...)`, as convmigrate.verify does."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return api.compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
__signature__ = inspect.signature(api.compare)
