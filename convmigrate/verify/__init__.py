"""Proof that a converted checkpoint computes what the original did.

Every Conv1d / ConvTranspose1d weight of the original is paired with its converted counterpart
by the migration plan. Deterministic random inputs run through the original under its own
framework's semantics and through the converted weight under the other framework's semantics,
both with the bundled NumPy convolution (never torch's or MindSpore's kernels), and their bytes
compared bit for bit (a reshape moves them unchanged). A weight moved bit for bit is run through
its configuration's numerics, once per configuration and on random weights (runner); a computed
or differing one, on its own weights. Every other tensor must be bit-identical
(a created one zero, a folded weight norm equal to g * v / ||v||). Every tensor of both files is
accounted for: one the converted file lacks, one it has that nothing produces, one under another
name, of another dtype or shape fails, named with its layer; one the conversion drops on purpose
(training state) is listed with its reason.

Without layer hyperparameters the convs run as plain stride-1, unpadded convs (PyTorch
`padding=0` is MindSpore `pad_mode="valid"`): that checks every weight value lands where the
other framework reads it. With a layers JSON each conv runs with its real stride, padding,
dilation and groups, and the target side with the translated constructor, pre-pad and crop.

Modules: `conv` (one conv under both semantics), `tensors` (bit-identical tensors), `results`,
`runner` (a whole plan: threads, each configuration's numerics once, the background half of a migration).
"""

import inspect
import sys
import types
from typing import Any

from convmigrate import api
from convmigrate.verify.conv import (
    DEFAULT_TOLERANCE,
    ConvSetup,
    check_conv,
    original_side,
    setup_from_spec,
    setups_from_layers,
)
from convmigrate.verify.results import Dropped, LayerCheck, TensorCheck, Verification
from convmigrate.verify.runner import BackgroundVerification, direction_between, verify_migration

__all__ = [
    "DEFAULT_TOLERANCE", "BackgroundVerification", "ConvSetup", "Dropped", "LayerCheck", "TensorCheck", "Verification",
    "check_conv", "direction_between", "original_side", "setup_from_spec", "setups_from_layers", "verify_migration",
]


class _CallablePackage(types.ModuleType):
    """This package shares its name with the API's `convmigrate.verify(original, converted, ...)`,
    and importing it puts the package where the function was: so the package calls the function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return api.verify(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
__signature__ = inspect.signature(api.verify)
