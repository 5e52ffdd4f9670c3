"""One conv checked under both frameworks' semantics with the bundled NumPy convolution.

The original weight runs under its own framework's rules, the converted weight under the
other's, on the same deterministic random inputs; the outputs must agree to rounding. A
`ConvSetup` holds the hyperparameters both sides run with: plain stride-1 unpadded convs
without a layers JSON, the real ones (and the target's pre-pad and crop) with it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from convmigrate import numerics
from convmigrate.entries import TensorEntry
from convmigrate.limits import VERIFY_ELEMENTS_FLOOR, VERIFY_ELEMENTS_PER_WEIGHT
from convmigrate.plan import Direction
from convmigrate.vocab import Framework, LayerKind, ProblemCode

# (rtol, atol) by weight dtype, relative to the largest output magnitude. Both sides compute
# in float32 from the same values, so a correct conversion is off by rounding only; a wrong one
# (reversed kernel, misplaced axis) is off by the outputs' own size.
DEFAULT_TOLERANCE: dict[str, tuple[float, float]] = {
    "float64": (1e-9, 1e-12),
    "float32": (1e-5, 1e-6),
    "float16": (2e-3, 1e-4),  # a folded weight norm is rounded to float16
    "bfloat16": (1.6e-2, 1e-3),  # ... or to bfloat16
}
BATCH = 1  # one random input row per length: a misplaced weight changes every output row alike


@dataclass(frozen=True)
class ConvSetup:
    """One conv's hyperparameters in both frameworks (what `convmigrate layers` writes).

    `pre_pad` / `post_crop` apply on the target side, around the target framework's layer.
    """

    kind: LayerKind = LayerKind.CONV1D  # or LayerKind.CONV_TRANSPOSE1D
    torch: Mapping[str, Any] = field(default_factory=dict)
    mindspore: Mapping[str, Any] = field(default_factory=lambda: {"pad_mode": "valid"})
    pre_pad: Any = None  # layers.spec.PrePad
    post_crop: Any = None  # layers.spec.PostCrop
    length_multiple: int | None = None
    described: bool = False  # True when the hyperparameters came from a layers JSON


PLAIN = ConvSetup()
PLAIN_TRANSPOSED = ConvSetup(kind=LayerKind.CONV_TRANSPOSE1D)


def plain_setup(weight_shape: tuple[int, ...], bias_shape: tuple[int, ...] | None) -> ConvSetup:
    """Without a layers JSON: a bias sized like axis 1, not axis 0, marks a transposed conv
    ((C_in, C_out/groups, K)); otherwise a plain conv reads the same weights equally well."""
    if bias_shape is not None and bias_shape[0] != weight_shape[0] and bias_shape[0] == weight_shape[1]:
        return PLAIN_TRANSPOSED
    return PLAIN


_FUNCTIONS: dict[tuple[Framework, LayerKind], Callable[..., np.ndarray]] = {
    (Framework.TORCH, LayerKind.CONV1D): numerics.torch_conv1d,
    (Framework.TORCH, LayerKind.CONV_TRANSPOSE1D): numerics.torch_conv_transpose1d,
    (Framework.MINDSPORE, LayerKind.CONV1D): numerics.ms_conv1d,
    (Framework.MINDSPORE, LayerKind.CONV_TRANSPOSE1D): numerics.ms_conv1d_transpose,
}


def _semantics(framework: Framework, weight: np.ndarray) -> Framework:
    """Whose rules read `weight`: a 3-D weight is PyTorch's layout (mindspore.mint too)."""
    return Framework.TORCH if framework is Framework.TORCH or weight.ndim == 3 else Framework.MINDSPORE


@functools.cache
def _parameters(function: Callable[..., np.ndarray]) -> frozenset[str]:
    """The keyword names `function` takes (inspect.signature costs ~75 us: once per function)."""
    return frozenset(inspect.signature(function).parameters)


def _run(semantics: Framework, setup: ConvSetup, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    function = _FUNCTIONS[(semantics, setup.kind)]
    kwargs = setup.torch if semantics is Framework.TORCH else setup.mindspore
    accepted = _parameters(function)
    return function(x, weight, bias, **{k: v for k, v in kwargs.items() if k in accepted and k not in ("weight", "bias")})


def _groups(setup: ConvSetup) -> int:
    return int(setup.torch.get("groups", setup.mindspore.get("group", 1)))


def _input_lengths(setup: ConvSetup, kernel: int) -> list[int]:
    """Lengths long enough for the kernel and any padding: two (odd and even) for a described
    layer, whose padding may depend on the length; one for a plain stride-1 unpadded conv, where
    every output reads every weight the same way at any length."""
    dilation = int(setup.torch.get("dilation", 1))
    stride = int(setup.torch.get("stride", 1))
    span = (kernel - 1) * dilation + 1
    pad = setup.pre_pad.left + setup.pre_pad.right if setup.pre_pad is not None else 0
    first = max(span + 3, pad + 2, 8)
    lengths = [first, first + stride + 2] if setup.described else [first]
    if setup.length_multiple:
        m = setup.length_multiple
        lengths = [m * -(-n // m) for n in lengths]
    return lengths


def _target_output(setup: ConvSetup, semantics: Framework, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    if not setup.described:
        return _run(semantics, setup, x, weight, bias)
    from convmigrate.layers.verify import apply_post_crop, apply_pre_pad

    return apply_post_crop(_run(semantics, setup, apply_pre_pad(x, setup.pre_pad), weight, bias), setup.post_crop, bias)


def as_float32(entry: TensorEntry) -> np.ndarray:
    array = entry.array()
    if array.dtype == np.float32:
        return array  # already float32: a read-only view of the file, no copy
    return np.asarray(entry.dtype.to_float32(array), dtype=np.float32)


class Outcome(NamedTuple):
    """One block's result: the worst errors, and why it failed (`code` None when it passed)."""

    max_abs: float
    max_rel: float
    passed: bool
    detail: str = ""
    code: ProblemCode | None = None


def _failed(detail: str, code: ProblemCode, blocks: int) -> list[Outcome]:
    return [Outcome(float("inf"), float("inf"), False, detail, code)] * blocks


def _count(value: Any) -> int:
    """A hyperparameter as a count: PyTorch's 1-tuples unwrapped, "same"/"valid" as 0."""
    if isinstance(value, (tuple, list)):
        value = value[0] if value else 0
    return 0 if isinstance(value, str) else int(value)


def largest_array(setup: ConvSetup, weight_shape: tuple[int, ...], length: int) -> int:
    """Elements of the largest array one run of this conv builds (input, padded input, output),
    from the weight's shape and the hyperparameters alone: what to check before allocating."""
    kernel = weight_shape[-1]
    groups = _groups(setup)
    dilation, stride = _count(setup.torch.get("dilation", 1)), _count(setup.torch.get("stride", 1))
    span = (kernel - 1) * dilation + 1
    transposed = setup.kind is LayerKind.CONV_TRANSPOSE1D
    in_channels = weight_shape[0] if transposed else weight_shape[1] * groups
    out_channels = weight_shape[1] * groups if transposed else weight_shape[0]
    pads = (setup.pre_pad.left + setup.pre_pad.right if setup.pre_pad is not None else 0) + span \
        + 2 * max(_count(setup.torch.get("padding", 0)), _count(setup.mindspore.get("padding", 0)))
    padded = length + pads
    out_length = padded
    if transposed:  # the input spread out by the stride, and the output it gives
        out_length = (length - 1) * stride + 2 * span + _count(setup.torch.get("output_padding", 0)) + pads
    return max(in_channels * padded, in_channels * out_length if transposed else 0, out_channels * out_length)


class SizeClaimError(ValueError):
    """A conv whose check would allocate far more than its weight holds: refused, not run."""


def _check_size(setup: ConvSetup, weight: np.ndarray, length: int) -> None:
    largest = largest_array(setup, weight.shape, length)
    bound = max(VERIFY_ELEMENTS_FLOOR, VERIFY_ELEMENTS_PER_WEIGHT * weight.size)
    if largest > bound:
        raise SizeClaimError(
            f"its check would build arrays of {largest:,} values for {weight.size:,} weights "
            f"(more than {bound:,}: limits.VERIFY_ELEMENTS_PER_WEIGHT); its hyperparameters claim too much"
        )



def original_side(
    setup: ConvSetup,
    source_framework: Framework,
    original_weight: np.ndarray,
    original_bias: np.ndarray | None,
    rng: np.random.Generator,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The random inputs and the original layer's outputs for them (float64).

    Raises ValueError when the layer cannot run (SizeClaimError: its arrays would exceed the
    bound its weight's real size sets).
    """
    source_sem = _semantics(source_framework, original_weight)
    groups = _groups(setup)
    in_channels = original_weight.shape[0] if setup.kind is LayerKind.CONV_TRANSPOSE1D else original_weight.shape[1] * groups
    lengths = _input_lengths(setup, original_weight.shape[-1])
    _check_size(setup, original_weight, max(lengths))  # before anything is allocated
    pairs = []
    for length in lengths:
        x = rng.standard_normal((BATCH, in_channels, length)).astype(np.float32)
        pairs.append((x, np.asarray(_run(source_sem, setup, x, original_weight, original_bias), dtype=np.float64)))
    return pairs


def check_conv(
    setup: ConvSetup,
    source_framework: Framework,
    original_weight: np.ndarray,
    converted_weight: np.ndarray,
    original_bias: np.ndarray | None,
    converted_bias: np.ndarray | None,
    tolerance: tuple[float, float],
    rng: np.random.Generator,
    blocks: int = 1,
    prepared: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[Outcome]:
    """Run both sides; one outcome per block of output channels.

    `blocks` > 1 checks that many independent layers at once: their weights stacked along
    the output axis and run as one conv with `groups=blocks` (see `runner._Verifier.small_convs`).
    `prepared` holds (input, original output) pairs from `original_side` (then
    `original_weight` and `original_bias` are not read again).
    """
    target_framework = Framework.MINDSPORE if source_framework is Framework.TORCH else Framework.TORCH
    target_sem = _semantics(target_framework, converted_weight)
    if prepared is None:
        try:
            prepared = original_side(setup, source_framework, original_weight, original_bias, rng)
        except SizeClaimError as exc:
            return _failed(f"not checked: {exc}", ProblemCode.UNCHECKABLE, blocks)
        except ValueError as exc:
            return _failed(f"the original layer cannot run: {exc}", ProblemCode.UNCHECKABLE, blocks)
    worst_abs, worst_rel = np.zeros(blocks), np.zeros(blocks)
    details = [""] * blocks
    rtol, atol = tolerance
    for x, expected in prepared:
        length = x.shape[-1]
        try:
            got = np.asarray(_target_output(setup, target_sem, x, converted_weight, converted_bias), dtype=np.float64)
        except ValueError as exc:
            return _failed(f"the converted layer cannot run: {exc}", ProblemCode.NUMERICS, blocks)
        if got.shape != expected.shape:
            return _failed(f"output shape {got.shape} != original {expected.shape} (length {length})", ProblemCode.NUMERICS, blocks)
        by_block = (blocks, -1)  # (N, blocks*C_out, L) -> each block's outputs in one row
        error = np.abs(got - expected).transpose(1, 0, 2).reshape(by_block).max(axis=1, initial=0.0)
        scale = np.abs(expected).transpose(1, 0, 2).reshape(by_block).max(axis=1, initial=0.0)
        worst_abs = np.maximum(worst_abs, error)
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(scale > 0, error / np.where(scale > 0, scale, 1), np.where(error == 0, 0.0, np.inf))
        worst_rel = np.maximum(worst_rel, relative)
        for block in np.flatnonzero(~np.isfinite(error) | (error > atol + rtol * scale)):
            if not details[block]:
                details[block] = f"outputs differ by {error[block]:.3g} (scale {scale[block]:.3g}) at length {length}"
    return [Outcome(float(worst_abs[i]), float(worst_rel[i]), not details[i], details[i],
                    ProblemCode.NUMERICS if details[i] else None) for i in range(blocks)]


def setups_from_layers(path: Any, direction: Direction) -> dict[str, ConvSetup]:
    """Each conv of a layers JSON, translated for `direction`, keyed by its layer name."""
    from convmigrate.layers import translate_source

    target = Framework.MINDSPORE if direction is Direction.TORCH_TO_MS else Framework.TORCH
    return {spec.name: setup_from_spec(spec) for spec in translate_source(str(path), to=target) if spec.kind.is_conv}


def setup_from_spec(spec: Any) -> ConvSetup:
    """A translated conv (layers.LayerSpec) as verification runs it."""
    return ConvSetup(spec.kind, spec.torch, spec.mindspore, spec.pre_pad, spec.post_crop,
                     spec.length_multiple, described=True)
