"""One conv checked under both frameworks' semantics with the bundled NumPy convolution.

The original weight runs under its own framework's rules, the converted weight under the
other's, on the same deterministic random inputs; the outputs must agree to rounding. A
`ConvSetup` holds the hyperparameters both sides run with: plain stride-1 unpadded convs
without a layers JSON, the real ones (and the target's pre-pad and crop) with it.

A layer is checked a block of its weight at a time (`plan_units`): whole groups, a range of
rows within a group, or, when one row alone is too big, a range of one row's columns. Each
block's outputs are computed on both sides and added into the output channels they feed; a
unit's outputs are compared as soon as all its blocks are in, then dropped. So the check holds
a few BLOCK_BYTES of weight and one unit's outputs, whatever the layer's size; a moved weight's
bytes are compared block by block from the same reads.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from convmigrate import numerics
from convmigrate.entries import TensorEntry
from convmigrate.limits import VERIFY_ELEMENTS_FLOOR, VERIFY_ELEMENTS_PER_WEIGHT
from convmigrate.plan import Direction
from convmigrate.rules.conv import bias_marks_transposed
from convmigrate.verify import blocks as _blocks
from convmigrate.verify.blocks import ArrayWeight, Block
from convmigrate.verify.tensors import same_array_bytes
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

class Weight(Protocol):
    """A conv weight read a block at a time (verify.blocks)."""

    shape: tuple[int, ...]
    itemsize: int  # bytes of one stored value
    moved: bool  # stored as the original's values (compared bit for bit), not computed

    def values(self, block: Block) -> np.ndarray:
        """float32 values of the block, shaped (rows, columns, *rest)."""
        ...

    def raw(self, block: Block) -> np.ndarray | None:
        """Stored values of the block (None: a computed weight, compared by value only)."""
        ...


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
    if bias_marks_transposed(weight_shape, bias_shape):
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


def _check_size(setup: ConvSetup, shape: tuple[int, ...], length: int) -> None:
    largest = largest_array(setup, shape, length)
    size = math.prod(shape)
    bound = max(VERIFY_ELEMENTS_FLOOR, VERIFY_ELEMENTS_PER_WEIGHT * size)
    if largest > bound:
        raise SizeClaimError(
            f"its check would build arrays of {largest:,} values for {size:,} weights "
            f"(more than {bound:,}: limits.VERIFY_ELEMENTS_PER_WEIGHT); its hyperparameters claim too much"
        )



class Unit(NamedTuple):
    """Output channels [out0, out1) of a layer and the weight blocks whose outputs add up to them."""

    out0: int
    out1: int
    blocks: tuple[Block, ...]


def plan_units(kind: LayerKind, shape: tuple[int, ...], groups: int, itemsize: int, budget: int | None = None) -> list[Unit]:
    """The blocks of a weight of `shape`, each under `budget` bytes (default blocks.BLOCK_BYTES),
    grouped by the outputs they feed.

    Conv1d (C_out, C_in/g, ...): rows are output channels. Whole groups per block when a group
    fits (one conv with fewer groups), else row ranges within a group, else one row's columns
    (input channels; their partial outputs add up). ConvTranspose1d (C_in, C_out/g, ...): rows
    are input channels, whose outputs add up over the group; whole groups per block when they
    fit, else a group's rows in ranges, else each row's columns (output channels) in ranges.
    """
    budget = budget or _blocks.BLOCK_BYTES
    rows, cols = shape[0], shape[1]
    cell = math.prod(shape[2:]) * itemsize  # bytes of one (row, column)
    row_bytes = max(1, cols * cell)
    per_group = rows // groups  # rows of one group
    transposed = kind is LayerKind.CONV_TRANSPOSE1D
    out_per_group = cols if transposed else per_group
    fit = max(1, budget // row_bytes)  # whole rows per block
    units: list[Unit] = []
    if row_bytes <= budget and per_group <= fit:
        step = per_group * max(1, fit // per_group)  # whole groups
        for row0 in range(0, rows, step):
            row1 = min(rows, row0 + step)
            out0, out1 = (row0 // per_group * cols, row1 // per_group * cols) if transposed else (row0, row1)
            units.append(Unit(out0, out1, (Block(row0, row1),)))
        return units
    if row_bytes <= budget:  # a group's rows in ranges
        for group in range(groups):
            first, last = group * per_group, (group + 1) * per_group
            blocks = tuple(Block(r, min(last, r + fit)) for r in range(first, last, fit))
            if transposed:  # every block feeds the whole group's outputs
                units.append(Unit(group * out_per_group, (group + 1) * out_per_group, blocks))
            else:
                units.extend(Unit(b.row0, b.row1, (b,)) for b in blocks)
        return units
    width = max(1, budget // max(1, cell))  # columns per block, within one row
    for group in range(groups):
        first, last = group * per_group, (group + 1) * per_group
        if transposed:  # output channels c0:c1 of the group, from each of its rows
            for col0 in range(0, cols, width):
                col1 = min(cols, col0 + width)
                units.append(Unit(group * cols + col0, group * cols + col1,
                                  tuple(Block(r, r + 1, col0, col1) for r in range(first, last))))
        else:  # one output channel from its input channels, a range at a time
            units.extend(Unit(r, r + 1, tuple(Block(r, r + 1, c, min(cols, c + width)) for c in range(0, cols, width)))
                         for r in range(first, last))
    return units


def _sub_problem(setup: ConvSetup, shape: tuple[int, ...], block: Block, x: np.ndarray) -> tuple[ConvSetup, np.ndarray, int]:
    """The conv one block computes: its setup (fewer groups), its input channels, and the first
    output channel its outputs land on."""
    groups = _groups(setup)
    rows, cols = shape[0], shape[1]
    per_group = rows // groups
    group = block.row0 // per_group
    transposed = setup.kind is LayerKind.CONV_TRANSPOSE1D
    in_per_group = per_group if transposed else cols
    if not block.whole_rows:  # one row's columns
        if transposed:
            return _with_groups(setup, 1), x[:, block.row0 : block.row0 + 1], group * cols + block.col0
        first = group * in_per_group + block.col0
        return _with_groups(setup, 1), x[:, first : first + block.col1 - block.col0], block.row0
    whole = block.row0 % per_group == 0 and block.row1 % per_group == 0
    count = (block.row1 - block.row0) // per_group if whole else 1
    if transposed:
        return _with_groups(setup, count), x[:, block.row0 : block.row1], group * cols
    first = group * in_per_group
    return _with_groups(setup, count), x[:, first : first + count * in_per_group], block.row0


def _with_groups(setup: ConvSetup, groups: int) -> ConvSetup:
    if groups == _groups(setup):
        return setup
    return dataclasses.replace(setup, torch={**setup.torch, "groups": groups},
                               mindspore={**setup.mindspore, "group": groups})


def _add_block(totals: list[np.ndarray | None], setup: ConvSetup, framework: Framework, weight: Weight, block: Block,
               unit: Unit, inputs: list[np.ndarray], target: bool) -> None:
    """Add one block's outputs (float64, no bias) into one side's unit outputs, one per input."""
    values = weight.values(block)
    semantics = _semantics(framework, values)
    for i, x in enumerate(inputs):
        sub, x_sub, first = _sub_problem(setup, weight.shape, block, x)
        y = _target_output(sub, semantics, x_sub, values, None) if target else _run(semantics, sub, x_sub, values, None)
        y = np.asarray(y, dtype=np.float64)
        if totals[i] is None:
            totals[i] = np.zeros((y.shape[0], unit.out1 - unit.out0, y.shape[2]))
        totals[i][:, first - unit.out0 : first - unit.out0 + y.shape[1]] += y  # type: ignore[index]


def _with_bias(totals: list[np.ndarray | None], bias: np.ndarray | None, unit: Unit) -> list[np.ndarray]:
    if bias is not None:
        for total in totals:
            total += bias[unit.out0 : unit.out1, None]  # type: ignore[operator]
    return totals  # type: ignore[return-value]


def _as_weight(weight: Weight | np.ndarray) -> Weight:
    return ArrayWeight(weight) if isinstance(weight, np.ndarray) else weight


def _draw_inputs(setup: ConvSetup, weight: Weight, rng: np.random.Generator) -> list[np.ndarray]:
    """The random inputs, one per length (checked against the weight's real size first)."""
    groups = _groups(setup)
    in_channels = weight.shape[0] if setup.kind is LayerKind.CONV_TRANSPOSE1D else weight.shape[1] * groups
    lengths = _input_lengths(setup, weight.shape[-1])
    _check_size(setup, weight.shape, max(lengths))  # before anything is allocated
    return [rng.standard_normal((BATCH, in_channels, length)).astype(np.float32) for length in lengths]


def original_side(
    setup: ConvSetup,
    source_framework: Framework,
    original_weight: Weight | np.ndarray,
    original_bias: np.ndarray | None,
    rng: np.random.Generator,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The random inputs and the original layer's outputs for them (float64), a block at a time.

    Raises ValueError when the layer cannot run (SizeClaimError: its arrays would exceed the
    bound its weight's real size sets).
    """
    weight = _as_weight(original_weight)
    inputs = _draw_inputs(setup, weight, rng)
    outputs: list[list[np.ndarray]] = [[] for _ in inputs]
    for unit in plan_units(setup.kind, weight.shape, _groups(setup), weight.itemsize):
        totals: list[np.ndarray | None] = [None] * len(inputs)
        for block in unit.blocks:
            _add_block(totals, setup, source_framework, weight, block, unit, inputs, target=False)
        for i, y in enumerate(_with_bias(totals, original_bias, unit)):
            outputs[i].append(y)
    return [(x, np.concatenate(parts, axis=1)) for x, parts in zip(inputs, outputs)]


class ConvResult(NamedTuple):
    """One Outcome per stacked layer, and whether the moved weight's bytes are the original's
    (None: a computed weight, or not compared because the numerics could not run)."""

    outcomes: list[Outcome]
    bit_exact: bool | None


def check_conv(
    setup: ConvSetup,
    source_framework: Framework,
    original_weight: Weight | np.ndarray,
    converted_weight: Weight | np.ndarray,
    original_bias: np.ndarray | None,
    converted_bias: np.ndarray | None,
    tolerance: tuple[float, float],
    rng: np.random.Generator,
    blocks: int = 1,
    prepared: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> ConvResult:
    """Run both sides a block of the weights at a time; one outcome per stacked layer.

    `blocks` > 1 checks that many independent layers at once: their weights stacked along
    the output axis and run as one conv with `groups=blocks` (see `runner._Verifier.small_convs`).
    `prepared` holds (input, original output) pairs from `original_side` (then the original
    weight is read for its bytes only). Weights are `Weight` readers (verify.blocks) or arrays.
    """
    original, converted = _as_weight(original_weight), _as_weight(converted_weight)
    target_framework = Framework.MINDSPORE if source_framework is Framework.TORCH else Framework.TORCH
    if prepared is None:
        try:
            inputs = _draw_inputs(setup, original, rng)
        except SizeClaimError as exc:
            return ConvResult(_failed(f"not checked: {exc}", ProblemCode.UNCHECKABLE, blocks), None)
    else:
        inputs = [x for x, _ in prepared]
    groups = _groups(setup)
    out_channels = original.shape[1] * groups if setup.kind is LayerKind.CONV_TRANSPOSE1D else original.shape[0]
    # Biases are added per unit, outside the numerics: checked here as the numerics would.
    for bias, failure in ((original_bias, ("the original layer cannot run", ProblemCode.UNCHECKABLE)),
                          (converted_bias, ("the converted layer cannot run", ProblemCode.NUMERICS))):
        if bias is not None and np.shape(bias) != (out_channels,):
            detail = f"{failure[0]}: bias must have shape ({out_channels},), got {np.shape(bias)}"
            return ConvResult(_failed(detail, failure[1], blocks), None)
    slot = np.arange(out_channels) // max(1, out_channels // blocks)  # the stacked layer of each output channel
    worst_error = np.zeros((len(inputs), blocks))
    worst_scale = np.zeros((len(inputs), blocks))
    bit_exact: bool | None = True if original.moved and converted.moved else None
    itemsize = max(original.itemsize, converted.itemsize)
    for unit in plan_units(setup.kind, original.shape, groups, itemsize):
        expected: list[np.ndarray | None] = [None] * len(inputs)
        got: list[np.ndarray | None] = [None] * len(inputs)
        for block in unit.blocks:
            if prepared is None:
                try:
                    _add_block(expected, setup, source_framework, original, block, unit, inputs, target=False)
                except ValueError as exc:
                    return ConvResult(_failed(f"the original layer cannot run: {exc}", ProblemCode.UNCHECKABLE, blocks), None)
            try:
                _add_block(got, setup, target_framework, converted, block, unit, inputs, target=True)
            except ValueError as exc:
                return ConvResult(_failed(f"the converted layer cannot run: {exc}", ProblemCode.NUMERICS, blocks), None)
            if bit_exact:  # the block's bytes, from the reads the numerics just made
                bit_exact = same_array_bytes(original.raw(block), converted.raw(block))  # type: ignore[arg-type]
        wanted = [y[:, unit.out0 : unit.out1] for _, y in prepared] if prepared is not None else \
            _with_bias(expected, original_bias, unit)
        for i, (x, want, have) in enumerate(zip(inputs, wanted, _with_bias(got, converted_bias, unit))):
            if have.shape != want.shape:
                shapes = f"output shape {_full_shape(have, out_channels)} != original {_full_shape(want, out_channels)}"
                return ConvResult(_failed(f"{shapes} (length {x.shape[-1]})", ProblemCode.NUMERICS, blocks), bit_exact)
            channels = slot[unit.out0 : unit.out1]
            np.maximum.at(worst_error[i], channels, np.abs(have - want).max(axis=(0, 2), initial=0.0))
            np.maximum.at(worst_scale[i], channels, np.abs(want).max(axis=(0, 2), initial=0.0))
    return ConvResult(_outcomes(worst_error, worst_scale, [x.shape[-1] for x in inputs], tolerance), bit_exact)


def _full_shape(unit_output: np.ndarray, out_channels: int) -> tuple[int, ...]:
    return (unit_output.shape[0], out_channels, unit_output.shape[2])


def _outcomes(errors: np.ndarray, scales: np.ndarray, lengths: list[int], tolerance: tuple[float, float]) -> list[Outcome]:
    """Per stacked layer: the worst error and relative error over the lengths, failing at the
    first length whose worst error exceeds atol + rtol * its largest output."""
    rtol, atol = tolerance
    outcomes = []
    for layer in range(errors.shape[1]):
        worst_abs, worst_rel, detail = 0.0, 0.0, ""
        for i, length in enumerate(lengths):
            error, scale = errors[i, layer], scales[i, layer]
            worst_abs = max(worst_abs, error) if np.isfinite(error) and np.isfinite(worst_abs) else float("inf")
            with np.errstate(divide="ignore", invalid="ignore"):
                relative = error / scale if scale > 0 else (0.0 if error == 0 else float("inf"))
            worst_rel = max(worst_rel, relative) if np.isfinite(relative) and np.isfinite(worst_rel) else float("inf")
            if not detail and (not np.isfinite(error) or error > atol + rtol * scale):
                detail = f"outputs differ by {error:.3g} (scale {scale:.3g}) at length {length}"
        outcomes.append(Outcome(float(worst_abs), float(worst_rel), not detail, detail,
                                ProblemCode.NUMERICS if detail else None))
    return outcomes


def setups_from_layers(path: Any, direction: Direction) -> dict[str, ConvSetup]:
    """Each conv of a layers JSON, translated for `direction`, keyed by its layer name."""
    from convmigrate.layers import translate_source

    target = Framework.MINDSPORE if direction is Direction.TORCH_TO_MS else Framework.TORCH
    return {spec.name: setup_from_spec(spec) for spec in translate_source(str(path), to=target) if spec.kind.is_conv}


def setup_from_spec(spec: Any) -> ConvSetup:
    """A translated conv (layers.LayerSpec) as verification runs it."""
    return ConvSetup(spec.kind, spec.torch, spec.mindspore, spec.pre_pad, spec.post_crop,
                     spec.length_multiple, described=True)
