"""Hyperparameter and shape checks shared by the four public convolutions.

Each failure is a ValueError whose message says what the framework would have said.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np


def as_int(value: object, name: str, minimum: int, allow_tuple: bool) -> int:
    """`value` as an int >= minimum. PyTorch also takes a 1-tuple; MindSpore's Conv1d only ints."""
    if allow_tuple and isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{name} must be an int or a 1-tuple for a 1-D convolution, got {value!r}")
        (value,) = value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        # ValueError, not TypeError: every bad hyperparameter is one kind of error to callers.
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        qualifier = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be {qualifier}, got {value}")
    return int(value)


def check_input(x: np.ndarray, allow_unbatched: bool) -> None:
    """x is (N, C, L), or (C, L) where unbatched input is allowed (PyTorch, not MindSpore)."""
    shapes = "(N, C_in, L) or (C_in, L)" if allow_unbatched else "(N, C_in, L)"
    if x.ndim != 3 and not (allow_unbatched and x.ndim == 2):
        raise ValueError(f"x must have shape {shapes}, got shape {x.shape}")


def check_groups(in_channels: int, out_channels: int, groups: int, name: str) -> None:
    """Both channel counts must be multiples of the group count."""
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"in_channels ({in_channels}) and out_channels ({out_channels}) must both be divisible "
            f"by {name} ({groups})"
        )


def check_bias(bias: np.ndarray | None, out_channels: int) -> None:
    if bias is not None and np.shape(bias) != (out_channels,):
        raise ValueError(f"bias must have shape ({out_channels},), got {np.shape(bias)}")


def check_fits(padded: int, span: int) -> None:
    """The dilated kernel must fit inside the padded input (both frameworks refuse otherwise)."""
    if span > padded:
        raise ValueError(
            f"the dilated kernel spans {span} samples but the padded input has only {padded}: "
            "kernel size can't be greater than the padded input size"
        )


MINDSPORE_PAD_MODES = ("same", "valid", "pad")


@dataclass(frozen=True)
class MindsporeArgs:
    """A MindSpore Conv1d/Conv1dTranspose call's arguments, checked as its constructor does."""

    x: np.ndarray  # (N, C_in, L)
    weight: np.ndarray  # the stored weight without its unit axis: (A, B, K)
    stride: int
    pad_mode: str
    padding: int
    dilation: int
    group: int


def mindspore_args(
    x: object, weight: object, stride: object, pad_mode: str, padding: object, dilation: object, group: object,
    layer: str, layout: str, torch_twin: str,
) -> MindsporeArgs:
    """Check what mindspore.nn.`layer` checks; `layout` names its (A, B, 1, K) weight axes."""
    x = np.asarray(x)
    check_input(x, allow_unbatched=False)
    weight = np.asarray(weight)
    if weight.ndim != 4 or weight.shape[2] != 1:
        raise ValueError(
            f"mindspore.nn.{layer}'s weight has shape ({layout}, 1, K), got shape {weight.shape}; "
            f"for a PyTorch-layout ({layout}, K) weight pass weight[:, :, None, :] (or call {torch_twin})"
        )
    padding = as_int(padding, "padding", 0, allow_tuple=False)
    if pad_mode not in MINDSPORE_PAD_MODES:
        raise ValueError(f"pad_mode must be one of {', '.join(MINDSPORE_PAD_MODES)}, got {pad_mode!r}")
    if padding and pad_mode != "pad":
        raise ValueError(f"padding must be 0 when pad_mode is not 'pad', got padding={padding} with {pad_mode!r}")
    return MindsporeArgs(
        x=x,
        weight=weight[:, :, 0, :],
        stride=as_int(stride, "stride", 1, allow_tuple=False),
        pad_mode=pad_mode,
        padding=padding,
        dilation=as_int(dilation, "dilation", 1, allow_tuple=False),
        group=as_int(group, "group", 1, allow_tuple=False),
    )
