"""Which kernel computes a correlation: a table of strategies and a cost model, not an if-chain.

Every strategy states where it applies and the work it does on a shape, as amounts of a few
resources (multiply-adds of each kind of matmul, elements copied, transposed or passed over
elementwise, NumPy calls). A shape's cost for a strategy is the sum of those amounts at
PRICES, seconds per unit on one core; `choose` takes the cheapest applicable strategy
(bench/bench_numerics.py prints it next to each shape).

The prices are fitted to measurements: `python bench/bench_numerics.py --calibrate [--threads 2]`
times every applicable strategy on every benchmark shape and prints the prices whose picks come
closest to the fastest strategies. There is a table per thread count (one: verification's
checks, each on its own core; two: a single call on the benchmark machine), because two
threads speed up BLAS's big matmuls and the kernels that run windows side by side, not the
copies of the others. A wrong price costs speed, never correctness: every strategy computes every shape it
applies to (tests/test_numerics.py runs each of them against PyTorch).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from convmigrate.numerics import _dense, _depthwise, _fft, _threads, _winograd
from convmigrate.numerics._shape import ConvShape

# Nominal float32 multiply-adds per second of a large matmul on one core (~90 GFLOP/s), and the
# fraction of it reached by the product's narrowest side (output channels per group, the banded
# matrix's B), per orientation: OpenBLAS writes (steps, few outputs) faster than (few outputs,
# steps). Interpolated in log2. A matmul's amount is its time at these rates (nominal seconds),
# which its price then scales.
GEMM_MACS = 45e9
CHANNEL_MAJOR_EFFICIENCY = ((1, 0.05), (8, 0.25), (16, 0.35), (32, 0.45), (64, 0.58), (128, 0.75), (256, 0.88), (512, 0.97))
TIME_MAJOR_EFFICIENCY = ((1, 0.05), (8, 0.4), (16, 0.6), (32, 0.75), (64, 0.85), (128, 0.9), (256, 0.95), (512, 1.0))

Work = dict[str, float]

# Seconds per unit of each resource, at one thread and at two (fitted by bench_numerics.py
# --calibrate [--threads 2]): at two threads BLAS splits a big matmul over both cores, while
# copies, transposes and small matmuls gain less or nothing, so the best strategy can differ.
PRICES: dict[int, dict[str, float]] = {
    1: {
        "matmul, outputs by rows": 0.99,  # nominal seconds: W @ columns (channel-major)
        "matmul, outputs by columns": 2.26,  # nominal seconds: rows @ W^T (time-major)
        "small matmuls": 0.362,  # nominal seconds: one per channel (banded depthwise), over few columns
        "frequency matmuls": 3.62,  # nominal seconds: the FFT's complex products, one per frequency
        "tap matmuls": 1.81,  # nominal seconds: the per-tap products of a window (short reductions)
        "tap traffic": 0.43e-9,  # elements a tap's product reads or adds into
        "transform matmuls": 1.28,  # nominal seconds: DFT and Winograd transforms (few rows, memory-bound)
        "copied": 0.3e-9,  # elements copied in runs
        "gather runs": 1.78e-9,  # inner loops of a gather (short runs are slow)
        "transposed": 2.11e-9,  # elements copied across axes (rows of one array to columns of another)
        "strided": 1.0e-9,  # elements copied from or to every n-th place
        "elementwise": 0.43e-9,  # elementwise multiplies or adds
        "weight reordered": 31.9e-9,  # weight elements moved into another axis order (reads miss the cache)
        "calls": 1.42e-6,  # NumPy calls (a copy, a ufunc, a matmul over a batch) before any work
        "matmul calls": 1e-6,  # BLAS calls: one per matrix of a batched matmul
        # the same work in cache-sized tiles run side by side, BLAS on one core each (at one
        # thread: one after another, as the resources above)
        "tile matmuls": 0.99,  # nominal seconds
        "tile copied": 0.3e-9,
        "tile strided": 1.0e-9,
        "tile weight reads": 1.0e-9,  # weight elements BLAS packs again for every tile
        "handoffs": 0.0,  # convolutions whose tiles are handed to _threads (one thread: none)
    },
    2: {
        "matmul, outputs by rows": 0.55,  # BLAS splits a big product over both cores
        "matmul, outputs by columns": 0.62,
        "small matmuls": 0.566,  # the banded depthwise windows run side by side
        "frequency matmuls": 0.707,
        "tap matmuls": 0.566,  # the per-tap windows run side by side
        "tap traffic": 0.005e-9,
        "transform matmuls": 1.28,
        "copied": 0.3e-9,
        "gather runs": 1.78e-9,
        "transposed": 2.64e-9,
        "strided": 0.39e-9,
        "elementwise": 0.108e-9,  # the per-tap depthwise windows run side by side
        "weight reordered": 6.38e-9,
        "calls": 1.42e-6,
        "matmul calls": 1e-6,
        "tile matmuls": 0.42,  # two narrow products at once, one core each, gain more than one on two
        "tile copied": 0.19e-9,
        "tile strided": 0.8e-9,
        "tile weight reads": 0.55e-9,
        "handoffs": 12.5e-6,  # waking the other thread, setting BLAS's thread count and back
    },
}


def prices(threads: int) -> dict[str, float]:
    """The prices at `threads` threads (more than two: those fitted at two)."""
    return PRICES[min(max(1, threads), max(PRICES))]


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


def _outputs(shape: ConvShape) -> int:
    return shape.batch * shape.c_out * shape.length


def _inputs(shape: ConvShape) -> int:
    return shape.batch * shape.c_in * shape.padded


def _windows(shape: ConvShape, steps: int) -> int:
    return len(_dense.windows(shape.batch, shape.length, steps))


def _matmul(shape: ConvShape, macs: float, efficiency: tuple[tuple[int, float], ...], narrow: int) -> float:
    """Nominal seconds of `macs` multiply-adds (float64 at half the rate)."""
    return macs / (GEMM_MACS * _interpolate(efficiency, narrow) * (4 / shape.itemsize))


def pointwise_work(shape: ConvShape) -> Work:
    windows = _windows(shape, 1 << 14)
    return {"matmul, outputs by rows": _matmul(shape, shape.macs, CHANNEL_MAJOR_EFFICIENCY, shape.cg_out),
            "calls": windows, "matmul calls": windows * shape.groups}


def channel_major_work(shape: ConvShape) -> Work:
    inner = shape.cg_in * shape.taps
    gathered = shape.batch * shape.length * shape.c_in * shape.taps
    return {"matmul, outputs by rows": _matmul(shape, shape.macs, CHANNEL_MAJOR_EFFICIENCY, shape.cg_out),
            "copied" if shape.stride == 1 else "strided": gathered,
            "gather runs": shape.c_in * shape.taps * max(shape.batch, _windows(shape, _dense.rows_per_product(inner))),
            "calls": _windows(shape, _dense.rows_per_product(inner)) * shape.groups * 2,
            "matmul calls": max(shape.batch, _windows(shape, _dense.rows_per_product(inner))) * shape.groups}


def channel_major_tiles_work(shape: ConvShape) -> Work:
    tiles = _windows(shape, _dense.tile_steps(shape))
    steps = min(_dense.tile_steps(shape), shape.batch * shape.length)
    return {"tile matmuls": _matmul(shape, shape.macs, CHANNEL_MAJOR_EFFICIENCY, min(shape.cg_out, steps)),
            "tile copied" if shape.stride == 1 else "tile strided": shape.batch * shape.length * shape.c_in * shape.taps,
            "gather runs": shape.c_in * shape.taps * max(shape.batch, tiles),
            "calls": tiles * shape.groups * 2,
            "matmul calls": max(shape.batch, tiles) * shape.groups,
            "tile weight reads": tiles * shape.c_out * shape.cg_in * shape.taps,
            "handoffs": 1}


def per_tap_work(shape: ConvShape) -> Work:
    windows = _windows(shape, _dense.tap_steps(shape))
    steps = shape.batch * shape.length * shape.groups
    return {"tap matmuls": _matmul(shape, shape.macs, CHANNEL_MAJOR_EFFICIENCY, min(shape.cg_out, shape.cg_in)),
            # each tap's product reads its input rows and adds into the output block
            "tap traffic": shape.taps * steps * (shape.cg_in + 2 * shape.cg_out),
            "copied": 0 if shape.stride == 1 else _inputs(shape),
            "calls": windows * (shape.stride + shape.groups * 2 * shape.taps),
            "matmul calls": windows * shape.groups * shape.taps}


def time_major_work(shape: ConvShape) -> Work:
    inner = shape.cg_in * shape.taps
    classes = shape.classes
    in_place = classes.step >= shape.taps
    windows = _windows(shape, _dense.rows_per_product(inner) * classes.count)
    return {"matmul, outputs by columns": _matmul(shape, shape.macs, TIME_MAJOR_EFFICIENCY, shape.cg_out),
            "transposed": _inputs(shape) + _outputs(shape),
            "copied": 0 if in_place else shape.batch * shape.length * shape.c_in * shape.taps,
            "weight reordered": shape.c_out * shape.cg_in * shape.taps,
            "calls": windows * (1 + classes.count * shape.groups * 3),
            "matmul calls": windows * classes.count * shape.groups}


def time_major_taps_work(shape: ConvShape) -> Work:
    inner = shape.cg_in * shape.taps
    gathered = shape.batch * shape.length * inner * shape.groups
    run = shape.taps if shape.dilation == 1 else 1  # samples copied per inner loop of the gather
    windows = _windows(shape, _dense.rows_per_product(inner))
    return {"matmul, outputs by columns": _matmul(shape, shape.macs, TIME_MAJOR_EFFICIENCY, shape.cg_out),
            "copied": gathered, "gather runs": gathered / run, "transposed": _outputs(shape),
            "calls": windows * shape.groups * 3, "matmul calls": windows * shape.groups}


def winograd_work(shape: ConvShape) -> Work:
    pieces = _winograd.pieces(shape.taps)
    inner = pieces * shape.cg_in
    outputs, inputs = _outputs(shape), _inputs(shape)
    alpha, tile = _winograd.ALPHA, _winograd.TILE
    # A matmul whose reduction is short (few input channels) runs well below BLAS's peak.
    shortness = max(1.0, (256 / inner) ** 0.6)
    weight = shape.c_out * shape.cg_in * pieces * tile
    transforms = alpha * alpha / tile * inputs + alpha * outputs + alpha * weight  # (5x5), (3x5), (5x3) products
    windows = _windows(shape, _winograd.window_tiles(shape) * tile * shape.classes.count) * shape.classes.count
    return {"matmul, outputs by rows": _matmul(shape, outputs * inner * alpha / tile, CHANNEL_MAJOR_EFFICIENCY,
                                               shape.cg_out) * shortness,
            "transform matmuls": _matmul(shape, transforms, TIME_MAJOR_EFFICIENCY, 8),
            "strided": alpha / tile * inputs + outputs,
            "copied": 0 if pieces == 1 else alpha / tile * pieces * inputs,
            "weight reordered": weight,
            "calls": windows * (2 * alpha + 2 + shape.groups * (pieces + 2 + tile)),
            "matmul calls": windows * shape.groups * (alpha + 1)}


def fft_work(shape: ConvShape, size: int) -> Work | None:
    if not _fft.fits(shape, size):
        return None
    bins = size // 2 + 1
    step = _fft.hop(shape, size)
    classes = shape.classes.count
    per_window = _fft.window_blocks(shape, size) * step * classes
    windows = _windows(shape, per_window)
    columns = shape.batch * classes * -(-shape.length // (step * classes))  # blocks of all items and classes
    transforms = 1 if _fft.weight_spectra_cached(shape, size) else windows * classes
    weight = transforms * shape.c_out * shape.cg_in * shape.taps * bins * 2  # real multiply-adds of the weight's DFT
    inputs = shape.c_in * columns * size * bins * 2
    inverse = shape.c_out * columns * 2 * bins * step
    products = 4 * bins * shape.c_out * shape.cg_in * columns  # complex multiply-adds, 4 real each
    chunks = shape.groups * -(-shape.cg_out // _fft.chunk_channels(shape, size))
    per_class = windows * classes
    return {"transform matmuls": _matmul(shape, weight + inputs + inverse, TIME_MAJOR_EFFICIENCY, 256),
            "frequency matmuls": _matmul(shape, products, CHANNEL_MAJOR_EFFICIENCY,
                                     min(shape.cg_out, columns // max(1, per_class))),
            "copied": shape.c_in * columns * size + 3 * _outputs(shape),
            "transposed": _outputs(shape),
            "calls": per_class * (shape.groups * 4 + chunks * 6),
            "matmul calls": per_class * (shape.groups * 2 + chunks * (bins + 1))}


def toeplitz_work(shape: ConvShape, block: int) -> Work:
    classes = shape.classes
    width = (block - 1) * classes.step + shape.taps
    outputs = _outputs(shape)
    # Each output costs W multiply-adds (of which K are needed); each input window of W samples
    # serves B outputs; the banded matrices hold C_out*W*B elements.
    per_window = max(block, _depthwise.TOEPLITZ_WINDOW // shape.c_out) * classes.count
    return {"small matmuls": _matmul(shape, outputs * width, TIME_MAJOR_EFFICIENCY, block),
            "copied": outputs * width / block,
            "strided": outputs + shape.c_out * width * block,
            "calls": _windows(shape, per_window) * classes.count * 4,
            "matmul calls": _windows(shape, per_window) * classes.count * shape.groups}


def taps_work(shape: ConvShape) -> Work:
    return {"elementwise": 2 * shape.taps * _outputs(shape),
            "calls": _windows(shape, max(1, _depthwise.TAPS_WINDOW // shape.c_out)) * 2 * shape.taps}


def price(work: Work | None, threads: int | None = None) -> float:
    """Seconds of `work` at the prices for `threads` (default: what one convolution may use now;
    None work: the strategy cannot take the shape)."""
    if work is None:
        return math.inf
    table = prices(_threads.threads() if threads is None else threads)
    return sum(table[resource] * amount for resource, amount in work.items())


Kernel = Callable[[np.ndarray, np.ndarray, ConvShape], np.ndarray]


@dataclass(frozen=True)
class Strategy:
    """One way to compute a correlation: where it applies, what it costs, the kernel."""

    name: str
    applies: Callable[[ConvShape], bool]
    work: Callable[[ConvShape], Work | None]
    kernel: Kernel

    def cost(self, shape: ConvShape) -> float:
        return price(self.work(shape))


def _spectral(size: int) -> Strategy:
    return Strategy(
        f"FFT as matmuls, F={size}",
        lambda s: _fft.applies(s) and _fft.fits(s, size),
        lambda s: fft_work(s, size),
        lambda x, w, s: _fft.fft_correlate(x, w, s, size),
    )


def _banded(block: int) -> Strategy:
    return Strategy(
        f"depthwise banded matmul, B={block}",
        lambda s: s.depthwise,
        lambda s: toeplitz_work(s, block),
        lambda x, w, s: _depthwise.toeplitz(x, w, s, block),
    )


FORWARD: tuple[Strategy, ...] = (
    Strategy("pointwise matmul", lambda s: s.taps == 1 and s.stride == 1, pointwise_work, _dense.pointwise),
    Strategy("channel-major im2col", lambda s: True, channel_major_work, _dense.channel_major),
    Strategy("channel-major im2col, tiles side by side", lambda s: True, channel_major_tiles_work,
             _dense.channel_major_tiles),
    Strategy("time-major im2col", lambda s: True, time_major_work, _dense.time_major),
    Strategy("per-tap matmuls", lambda s: True, per_tap_work, _dense.per_tap),
    Strategy("time-major im2col, taps inner", lambda s: True, time_major_taps_work, _dense.time_major_taps),
    Strategy("Winograd F(3,3)", _winograd.applies, winograd_work, _winograd.winograd),
    *(_spectral(size) for size in _fft.SIZES),
    *(_banded(block) for block in TOEPLITZ_BLOCKS),
    Strategy("depthwise per tap", lambda s: s.depthwise, taps_work, _depthwise.taps),
)


def choose(shape: ConvShape) -> Strategy:
    """The cheapest strategy that applies to `shape`."""
    return min((s for s in FORWARD if s.applies(shape) and math.isfinite(s.cost(shape))), key=lambda s: s.cost(shape))


def correlate(xp: np.ndarray, w: np.ndarray, stride: int, dilation: int, groups: int) -> np.ndarray:
    """Grouped cross-correlation of an already padded, C-contiguous input, with no padding of its own.

    xp: (N, C_in, Lp); w: (C_out, C_in/groups, K), same float dtype.
    Returns (N, C_out, L_out), L_out = (Lp - (K-1)*dilation - 1)//stride + 1 >= 1, C-contiguous.
    """
    shape = ConvShape.of(xp, w, stride, dilation, groups)
    return choose(shape).kernel(np.ascontiguousarray(xp), np.ascontiguousarray(w), shape)
