"""Which kernel computes a correlation: a table of strategies and a cost model, not an if-chain.

Every strategy states where it applies and what it costs on one core, in seconds, from the
work it does: multiply-adds at the speed BLAS reaches for the product's narrowest side, the
elements it copies or passes over, and the NumPy calls it makes. `choose` takes the cheapest
applicable one; `describe` names it (bench/bench_numerics.py prints it next to each shape).

The constants were measured on the benchmark machine (AMD EPYC, AVX-512, OpenBLAS 0.3.23,
one thread); only their ratios matter for the choice, and a wrong constant costs speed, never
correctness: every strategy computes every shape it applies to (tests/test_numerics.py runs
each of them against PyTorch).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from convmigrate.numerics import _dense, _depthwise, _winograd
from convmigrate.numerics._shape import ConvShape

# float32 multiply-adds per second of a large matmul on one core (2*MAC/s ~ 90 GFLOP/s).
GEMM_MACS = 45e9
# Fraction of that speed by the product's narrowest side (output channels per group, or the
# banded matrix's B), per orientation: OpenBLAS writes (steps, few outputs) faster than
# (few outputs, steps). Interpolated in log2 between the measured points.
CHANNEL_MAJOR_EFFICIENCY = ((1, 0.05), (8, 0.25), (16, 0.35), (32, 0.45), (64, 0.58), (128, 0.75), (256, 0.88), (512, 0.97))
TIME_MAJOR_EFFICIENCY = ((1, 0.05), (8, 0.4), (16, 0.6), (32, 0.75), (64, 0.85), (128, 0.9), (256, 0.95), (512, 1.0))
# Seconds per element: a contiguous or gathering copy within cache, a transposing copy (rows
# of one array become columns of the other), one elementwise multiply or add.
COPY = 0.15e-9
TRANSPOSE = 0.6e-9
STRIDED = 0.6e-9  # a copy reading or writing every third element (out of cache)
ELEMENTWISE = 0.12e-9
WEIGHT_COPY = 4e-9  # the weight into another axis order: a transpose whose reads miss the cache
RUN = 1.5e-9  # each inner loop of a copy, on top of its elements (a gather in short runs is slow)
CALL = 2e-6  # one NumPy call (a copy, a ufunc, a matmul over a batch) before any work

# Block sizes the banded depthwise strategy may use.
TOEPLITZ_BLOCKS = (8, 16, 32, 64)


def _interpolate(points: tuple[tuple[int, float], ...], x: float) -> float:
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x <= x1:
            f = (math.log2(x) - math.log2(x0)) / (math.log2(x1) - math.log2(x0))
            return y0 + f * (y1 - y0)
    return points[-1][1]


def _gemm_seconds(shape: ConvShape, macs: float, efficiency: tuple[tuple[int, float], ...], narrow: int) -> float:
    rate = GEMM_MACS * _interpolate(efficiency, narrow) * (4 / shape.itemsize)  # float64 at half speed
    return macs / rate


def _outputs(shape: ConvShape) -> int:
    return shape.batch * shape.c_out * shape.length


def _inputs(shape: ConvShape) -> int:
    return shape.batch * shape.c_in * shape.padded


def _windows(shape: ConvShape, steps: int) -> int:
    return len(_dense.windows(shape.batch, shape.length, steps))


def pointwise_cost(shape: ConvShape) -> float:
    return _gemm_seconds(shape, shape.macs, CHANNEL_MAJOR_EFFICIENCY, shape.cg_out) + CALL * shape.batch * shape.groups


def channel_major_cost(shape: ConvShape) -> float:
    inner = shape.cg_in * shape.taps
    gathered = shape.batch * shape.length * shape.c_in * shape.taps
    calls = _windows(shape, _dense.rows_per_product(inner)) * shape.groups * 2
    return (_gemm_seconds(shape, shape.macs, CHANNEL_MAJOR_EFFICIENCY, shape.cg_out)
            + COPY * gathered * (1 if shape.stride == 1 else 2) + CALL * calls)


def time_major_cost(shape: ConvShape) -> float:
    inner = shape.cg_in * shape.taps
    classes = shape.classes
    in_place = classes.step >= shape.taps
    gathered = 0 if in_place else shape.batch * shape.length * shape.c_in * shape.taps
    calls = _windows(shape, _dense.rows_per_product(inner) * classes.count) * (1 + classes.count * shape.groups * 3)
    weight = shape.c_out * shape.cg_in * shape.taps  # copied into (K, Cg_in) order
    return (_gemm_seconds(shape, shape.macs, TIME_MAJOR_EFFICIENCY, shape.cg_out)
            + TRANSPOSE * (_inputs(shape) + _outputs(shape)) + COPY * gathered + WEIGHT_COPY * weight
            + CALL * calls)


def time_major_taps_cost(shape: ConvShape) -> float:
    inner = shape.cg_in * shape.taps
    gathered = shape.batch * shape.length * inner * shape.groups
    run = shape.taps if shape.dilation == 1 else 1  # samples copied per inner loop of the gather
    calls = _windows(shape, _dense.rows_per_product(inner)) * shape.groups * 3
    return (_gemm_seconds(shape, shape.macs, TIME_MAJOR_EFFICIENCY, shape.cg_out)
            + (COPY + RUN / run) * gathered + TRANSPOSE * _outputs(shape) + CALL * calls)


def winograd_cost(shape: ConvShape) -> float:
    pieces = _winograd.pieces(shape.taps)
    inner = pieces * shape.cg_in
    outputs, inputs = _outputs(shape), _inputs(shape)
    alpha, tile = _winograd.ALPHA, _winograd.TILE
    macs = outputs * inner * alpha / tile
    # A matmul whose reduction is short (few input channels) runs well below BLAS's peak.
    gemm = _gemm_seconds(shape, macs, CHANNEL_MAJOR_EFFICIENCY, shape.cg_out) * max(1.0, (256 / inner) ** 0.6)
    gathered = alpha / tile * inputs  # five strided copies of the input phase
    transforms = 2 * alpha * alpha / tile * inputs + 2 * alpha * tile / tile * outputs  # (5x5) and (3x5) products
    columns = 0 if pieces == 1 else alpha / tile * pieces * inputs
    windows = _windows(shape, _winograd.window_tiles(shape) * tile * shape.classes.count) * shape.classes.count
    calls = windows * (2 * alpha + 2 + shape.groups * (pieces + 2 + tile))
    weight = shape.c_out * shape.cg_in * pieces * (_winograd.TILE + _winograd.ALPHA)
    return (gemm + STRIDED * (gathered + outputs) + ELEMENTWISE * transforms + COPY * (columns + weight)
            + CALL * calls)


def toeplitz_cost(shape: ConvShape, block: int) -> float:
    classes = shape.classes
    width = (block - 1) * classes.step + shape.taps
    outputs = _outputs(shape)
    # Each output costs W multiply-adds (of which K are needed); each input window of W samples
    # serves B outputs; the banded matrices hold C_out*W*B elements.
    per_window = max(block, _depthwise.TOEPLITZ_WINDOW // shape.c_out) * classes.count
    calls = _windows(shape, per_window) * classes.count * 4
    band = shape.c_out * width * block
    return (_gemm_seconds(shape, outputs * width, TIME_MAJOR_EFFICIENCY, block)
            + COPY * (outputs * width / block + outputs + band) + CALL * calls)


def taps_cost(shape: ConvShape) -> float:
    outputs = _outputs(shape)
    calls = _windows(shape, max(1, _depthwise.TAPS_WINDOW // shape.c_out)) * 2 * shape.taps
    return ELEMENTWISE * 2 * shape.taps * outputs + CALL * calls


Kernel = Callable[[np.ndarray, np.ndarray, ConvShape], np.ndarray]


@dataclass(frozen=True)
class Strategy:
    """One way to compute a correlation: where it applies, what it costs, the kernel."""

    name: str
    applies: Callable[[ConvShape], bool]
    cost: Callable[[ConvShape], float]
    kernel: Kernel


def _banded(block: int) -> Strategy:
    return Strategy(
        f"depthwise banded matmul, B={block}",
        lambda s: s.depthwise,
        lambda s: toeplitz_cost(s, block),
        lambda x, w, s: _depthwise.toeplitz(x, w, s, block),
    )


FORWARD: tuple[Strategy, ...] = (
    Strategy("pointwise matmul", lambda s: s.taps == 1 and s.stride == 1, pointwise_cost, _dense.pointwise),
    Strategy("channel-major im2col", lambda s: True, channel_major_cost, _dense.channel_major),
    Strategy("time-major im2col", lambda s: True, time_major_cost, _dense.time_major),
    Strategy("time-major im2col, taps inner", lambda s: True, time_major_taps_cost, _dense.time_major_taps),
    Strategy("Winograd F(3,3)", _winograd.applies, winograd_cost, _winograd.winograd),
    *(_banded(block) for block in TOEPLITZ_BLOCKS),
    Strategy("depthwise per tap", lambda s: s.depthwise, taps_cost, _depthwise.taps),
)


def choose(shape: ConvShape) -> Strategy:
    """The cheapest strategy that applies to `shape`."""
    return min((s for s in FORWARD if s.applies(shape)), key=lambda s: s.cost(shape))


def correlate(xp: np.ndarray, w: np.ndarray, stride: int, dilation: int, groups: int) -> np.ndarray:
    """Grouped cross-correlation of an already padded, C-contiguous input, with no padding of its own.

    xp: (N, C_in, Lp); w: (C_out, C_in/groups, K), same float dtype.
    Returns (N, C_out, L_out), L_out = (Lp - (K-1)*dilation - 1)//stride + 1 >= 1, C-contiguous.
    """
    shape = ConvShape.of(xp, w, stride, dilation, groups)
    return choose(shape).kernel(np.ascontiguousarray(xp), np.ascontiguousarray(w), shape)
