"""Depthwise correlations (one input channel per group, any channel multiplier) in NumPy.

No operand of a depthwise conv is shared across channels, so BLAS cannot take many channels
in one product. Two ways remain:

- `toeplitz`: per channel, blocks of B outputs are (input window of W = (B-1)*step + K samples)
  @ (W x B banded matrix of the taps): one small matmul per channel over all blocks of all
  items, which OpenBLAS runs at 70-85% of its peak. It does W/K times the multiply-adds of a
  direct conv; the cost model picks B (small B: fewer wasted products, smaller matmuls).
  Dilated convs run per phase class (_shape.Classes), where the taps are consecutive.
- `taps`: a multiply and an add over the whole (window of) output per tap. Cheapest for a
  handful of taps, and for dilations too large for the banded matrix.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from convmigrate.numerics import _threads
from convmigrate.numerics._dense import Window, run_windows, windows
from convmigrate.numerics._shape import ConvShape, class_steps

# Output elements of one window of the per-tap loop: 64K float32 (256 KiB) keeps the output,
# the product and the input rows it reads in the L2 cache; bigger windows ran slower.
TAPS_WINDOW = 1 << 16
# Output elements of one window of the banded products (before the channel multiplier).
TOEPLITZ_WINDOW = 1 << 18


def taps(xp: np.ndarray, w: np.ndarray, shape: ConvShape) -> np.ndarray:
    """out[n, g*mult + m, t] = sum_k w[g*mult + m, 0, k] * x[n, g, t*stride + k*dilation]."""
    n_batch, groups, length = shape.batch, shape.groups, shape.length
    mult, stride, dilation = shape.cg_out, shape.stride, shape.dilation
    out = np.empty((n_batch, groups, mult, length), dtype=xp.dtype)
    xg = xp.reshape(n_batch, groups, 1, shape.padded)
    wg = w.reshape(groups, mult, shape.taps, 1)  # tap k of (group, m) broadcasts along time

    blocks = windows(n_batch, length, max(1, TAPS_WINDOW // shape.c_out), 4 * _threads.threads())
    largest = max((n1 - n0) * (t1 - t0) for n0, n1, t0, t1 in blocks)

    def work(mine: Iterable[Window]) -> None:
        scratch = np.empty(largest * shape.c_out, dtype=xp.dtype)
        for n0, n1, t0, t1 in mine:
            acc = out[n0:n1, :, :, t0:t1]
            term = scratch[: acc.size].reshape(acc.shape)
            last = (t1 - t0 - 1) * stride + 1
            for k in range(shape.taps):
                start = t0 * stride + k * dilation
                source = xg[n0:n1, :, :, start : start + last : stride]
                if k == 0:
                    np.multiply(source, wg[:, :, 0], out=acc)
                else:
                    np.multiply(source, wg[:, :, k], out=term)
                    acc += term

    run_windows(blocks, work)
    return out.reshape(n_batch, shape.c_out, length)


def banded(w: np.ndarray, mult: int, block: int, step: int) -> np.ndarray:
    """The (G, W, mult*B) matrices whose product with a window of W = (B-1)*step + K samples
    gives B outputs: band[g, j, m*B + i] = w[g*mult + m, 0, j - i*step] where 0 <= j - i*step < K."""
    c_out, _, taps = w.shape
    groups = c_out // mult
    width = (block - 1) * step + taps
    # padded[r, (B-1)*step + k] = w[r, 0, k], zeros around it: band[j, i] = padded[j - i*step + (B-1)*step],
    # a strided view (strides +1 along j, -step along i) copied once.
    lead = (block - 1) * step
    padded = np.zeros((c_out, lead + taps + lead), dtype=w.dtype)
    padded[:, lead : lead + taps] = w[:, 0, :]
    e = padded.itemsize
    start = padded[:, lead:]
    view = as_strided(start, (groups, mult, width, block), (mult * padded.strides[0], padded.strides[0], e, -step * e),
                      writeable=False)
    band = np.empty((groups, width, mult, block), dtype=w.dtype)
    np.copyto(band, view.transpose(0, 2, 1, 3))
    return band.reshape(groups, width, mult * block)


def toeplitz(xp: np.ndarray, w: np.ndarray, shape: ConvShape, block: int) -> np.ndarray:
    """Per phase class: (rows of W-sample windows) @ banded taps, one matmul per channel."""
    n_batch, groups, length = shape.batch, shape.groups, shape.length
    mult, classes = shape.cg_out, shape.classes
    step, dilation = classes.step, shape.dilation
    width = (block - 1) * step + shape.taps
    band = banded(w, mult, block, step)  # (G, W, mult*B)
    out = np.empty((n_batch, groups, mult, length), dtype=xp.dtype)
    e = xp.itemsize
    s_n, s_g, _ = xp.strides
    per_window = max(block, TOEPLITZ_WINDOW // (groups * mult)) * classes.count

    blocks = windows(n_batch, length, per_window, 4 * _threads.threads())
    most = max((n1 - n0) * -(-classes.steps(0, t1 - t0) // block) for n0, n1, t0, t1 in blocks)

    def work(mine: Iterable[Window]) -> None:
        # Scratch for the largest window, allocated once: fresh arrays per window cost page faults.
        inputs = np.empty(groups * most * width, dtype=xp.dtype)
        products = np.empty(groups * most * mult * block, dtype=xp.dtype)
        for part in class_steps(shape, mine):
            n0, n1, nw, u = part.n0, part.n1, part.n1 - part.n0, part.u
            # window b of the class reads its input phase from origin + b*B*step*d: B outputs, zeros past the input
            count, full = part.blocks(shape, block, block * step, width)
            origin = part.origin
            windows_in = inputs[: groups * nw * count * width].reshape(groups, nw, count, width)
            if full:
                source = as_strided(xp[n0:n1, :, origin:], (groups, nw, full, width),
                                    (s_g, s_n, block * step * dilation * e, dilation * e), writeable=False)
                np.copyto(windows_in[:, :, :full], source)
            for b in range(full, count):  # windows that run past the input: zeros after it
                begin = origin + b * block * step * dilation
                tail = xp[n0:n1, :, begin : begin + width * dilation : dilation]
                windows_in[:, :, b, : tail.shape[-1]] = tail.transpose(1, 0, 2)
                windows_in[:, :, b, tail.shape[-1] :] = 0
            # (G, nw*blocks, W) @ (G, W, mult*B) -> (G, nw*blocks, mult*B)
            product = products[: groups * nw * count * mult * block].reshape(groups, nw * count, mult * block)
            np.matmul(windows_in.reshape(groups, nw * count, width), band, out=product)
            by_block = product.reshape(groups, nw, count, mult, block).transpose(1, 0, 3, 2, 4)
            target = out[n0:n1, :, :, part.t0 + u : part.t1 : classes.count]  # (nw, G, mult, steps)
            np.copyto(target, by_block.reshape(nw, groups, mult, count * block)[..., : part.steps])

    run_windows(blocks, work)
    return out.reshape(n_batch, shape.c_out, length)
