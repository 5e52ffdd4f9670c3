"""Recognising Conv1d / ConvTranspose1d weights by name and shape, and their two layouts.

    PyTorch nn.Conv1d            weight (C_out, C_in/groups, K)
    PyTorch nn.ConvTranspose1d   weight (C_in, C_out/groups, K)
    MindSpore nn.Conv1d          weight (C_out, C_in/group, 1, K)     unit axis at position 2
    MindSpore nn.Conv1dTranspose weight (C_in, C_out/group, 1, K)
    MindSpore mint.nn.Conv1d     PyTorch's layout

The shape rules are guesses: a 3-D `*.weight` is a Conv1d weight in almost every PyTorch model,
but a MindSpore Conv2d with a (1, K) kernel also has a 4-D weight with a unit third axis. Callers
report a guess as a guess; a reference checkpoint or `--conv1d` patterns make it exact.
"""

from __future__ import annotations

from collections.abc import Sequence

from convmigrate.vocab import Framework

# The axis MindSpore's nn.Conv1d inserts: (C_out, C_in/group, K) -> (C_out, C_in/group, 1, K).
UNIT_AXIS = 2
WEIGHT_SUFFIX = "weight"


def is_weight_name(name: str) -> bool:
    return name == WEIGHT_SUFFIX or name.endswith("." + WEIGHT_SUFFIX)


def looks_like_conv1d(name: str, shape: Sequence[int], framework: Framework) -> bool:
    """True when `name`/`shape` look like a Conv1d (or ConvTranspose1d) weight in `framework`'s layout."""
    if not is_weight_name(name):
        return False
    if framework is Framework.TORCH:
        return len(shape) == 3
    return len(shape) == 4 and shape[UNIT_AXIS] == 1


def bias_marks_transposed(weight_shape: Sequence[int], bias_shape: Sequence[int] | None) -> bool:
    """A bias sized like the weight's second axis, not its first, marks a transposed conv
    ((C_in, C_out/groups, K): its bias has C_out entries). The plan names the layer by it and
    verification runs it with the transposed semantics.

    Example:
        >>> bias_marks_transposed((8, 4, 4), (4,)), bias_marks_transposed((8, 4, 4), (8,))
        (True, False)
    """
    return (bias_shape is not None and len(bias_shape) == 1 and len(weight_shape) >= 2
            and bias_shape[0] != weight_shape[0] and bias_shape[0] == weight_shape[1])


def torch_to_mindspore_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """(C_out, C_in/groups, K) -> (C_out, C_in/groups, 1, K)."""
    out, inp, kernel = shape
    return (out, inp, 1, kernel)


def mindspore_to_torch_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """(C_out, C_in/group, 1, K) -> (C_out, C_in/group, K)."""
    out, inp, unit, kernel = shape
    if unit != 1:
        raise ValueError(f"not a MindSpore Conv1d weight shape: {tuple(shape)} has no unit third axis")
    return (out, inp, kernel)
