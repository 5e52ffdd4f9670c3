"""Stride-1 correlations with Winograd's minimal filtering F(3,3): fewer multiply-adds for BLAS.

Three outputs of a 3-tap correlation need 9 multiply-adds per input channel directly; F(3,3)
gets them from 5 products of transformed values (Toom-Cook with the points 0, 1, -1, 2, inf):

    y = A^T [ (G g) * (B^T d) ]     d: 5 inputs, g: 3 taps, y: 3 outputs

Over channels the 5 products become 5 matmuls (C_out x C_in) @ (C_in x tiles), so BLAS does
5/9 of the direct multiply-adds. A longer kernel is cut into P = ceil(K/3) pieces of 3 taps
(zeros pad the last); piece p reads the input 3p samples, i.e. p tiles, later, so all pieces
share one input transform and their products add up inside one matmul over (P*C_in) rows.
Dilated convs run per phase class (_shape.Classes), which are undilated.

The transforms are a few elementwise passes over the input and output: they pay where the
matmuls are big (many channels) and cost more than they save for small ones (the cost model
in _plan.py decides). Rounding: the integer input transform is exact up to its sums; the
weights' transform runs in the weight's dtype (G's 1/6 rounded, a 3-term sum); measured against a float64 reference the error is 2-5x
that of the direct float32 sum, at most ~5e-7 of each output's sum of |products| where that
sum has >= MIN_PRODUCTS terms (the tests allow 2e-5).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from convmigrate.numerics._dense import Window, run_windows, windows
from convmigrate.numerics._shape import ConvShape, class_steps

# F(3,3) for correlation, points 0, 1, -1, 2 and infinity. B^T's rows are scaled to small
# integers (exact in floating point) and the scales moved into G's rows.
INPUT_TRANSFORM = np.array([  # B^T (5 x 5): transformed[i] = sum_l B^T[i, l] * d[l]
    [2, -1, -2, 1, 0],
    [0, 2, 1, -1, 0],
    [0, -2, 3, -1, 0],
    [0, -1, 0, 1, 0],
    [0, 2, -1, -2, 1],
])
WEIGHT_TRANSFORM = np.array([  # G (5 x 3): transformed[i] = sum_k G[i, k] * g[k]
    [1, 0, 0],
    [1, 1, 1],
    [1, -1, 1],
    [1, 2, 4],
    [0, 0, 1],
]) / np.array([2, 2, 6, 6, 1])[:, None]
OUTPUT_TRANSFORM = np.array([  # A^T (3 x 5): y[j] = sum_i A^T[j, i] * product[i]
    [1, 1, 1, 1, 0],
    [0, 1, -1, 2, 0],
    [0, 1, 1, 4, 1],
])
ALPHA, TILE = 5, 3  # products per tile, outputs (and taps per piece) per tile

# Scratch elements of one window's transformed input or products.
WINDOW_BUDGET = 1 << 20


# Products per output below which the transforms' rounding is not small next to each output's
# own sum of |products|: the error is the tile's (a few neighbouring inputs, weighted by the
# transforms), so an output whose few products are all small can carry a neighbour's error
# (measured: 1e-5..3e-4 of sum |x*w| for depthwise convs; <= 5e-7 from 64 products on).
MIN_PRODUCTS = 64


def applies(shape: ConvShape) -> bool:
    """Each phase class must be an undilated stride-1 correlation (stride divides dilation),
    and each output must add up enough products (MIN_PRODUCTS) for the rounding to stay small."""
    return shape.classes.step == 1 and shape.taps > 1 and shape.cg_in * shape.taps >= MIN_PRODUCTS


def pieces(taps: int) -> int:
    return -(-taps // TILE)


def window_tiles(shape: ConvShape) -> int:
    """Tiles per window: the transformed input, one group's columns and products stay in budget."""
    widest = max(shape.c_in, pieces(shape.taps) * shape.cg_in, shape.cg_out)
    return max(16, WINDOW_BUDGET // (ALPHA * widest))


def transformed_weights(w: np.ndarray, groups: int) -> np.ndarray:
    """U[i, g, o, p*Cg_in + c] = sum_k G[i, k] * w[g*Cg_out + o, c, 3p + k]: (5, G, Cg_out, P*Cg_in)."""
    c_out, cg_in, taps = w.shape
    count = pieces(taps)
    # split[k, o, p, c] = w[o, c, 3p + k] (zeros past K), then one (5 x 3) @ (3 x everything) product.
    split = np.zeros((TILE, c_out, count, cg_in), dtype=w.dtype)
    for p in range(count):
        for k in range(min(TILE, taps - p * TILE)):
            split[k, :, p, :] = w[:, :, p * TILE + k]
    u = WEIGHT_TRANSFORM.astype(w.dtype) @ split.reshape(TILE, -1)
    return u.reshape(ALPHA, groups, c_out // groups, count * cg_in)


def winograd(xp: np.ndarray, w: np.ndarray, shape: ConvShape) -> np.ndarray:
    """Per phase class and window: transform the input, 5 matmuls per group, transform back.

    Both transforms are small matmuls over every element at once ((5 x 5) @ (5 x C*tiles) and
    (3 x 5) @ (5 x C_out*tiles)): one pass over memory each instead of ~17 elementwise passes.
    """
    n_batch, groups, length = shape.batch, shape.groups, shape.length
    cg_in, cg_out, c_in, c_out = shape.cg_in, shape.cg_out, shape.c_in, shape.c_out
    classes, dilation = shape.classes, shape.dilation
    count = pieces(shape.taps)
    u_all = transformed_weights(w, groups)
    input_transform = INPUT_TRANSFORM.astype(xp.dtype)
    output_transform = OUTPUT_TRANSFORM.astype(xp.dtype)
    out = np.empty((n_batch, c_out, length), dtype=xp.dtype)
    tiles_budget = window_tiles(shape)
    blocks = windows(n_batch, length, tiles_budget * TILE * classes.count)

    most = max((n1 - n0) * (-(-classes.steps(0, t1 - t0) // TILE) + count) for n0, n1, t0, t1 in blocks)

    def work(mine: Iterable[Window]) -> None:
        gathered_buffer = np.empty(ALPHA * c_in * most, dtype=xp.dtype)
        transformed_buffer = np.empty(ALPHA * c_in * most, dtype=xp.dtype)
        columns_buffer = np.empty(ALPHA * count * cg_in * most if count > 1 else 0, dtype=xp.dtype)
        products_buffer = np.empty(ALPHA * cg_out * most, dtype=xp.dtype)
        outputs_buffer = np.empty(TILE * cg_out * most, dtype=xp.dtype)
        for part in class_steps(shape, mine):
            n0, n1, t0, t1, nw, u = part.n0, part.n1, part.t0, part.t1, part.n1 - part.n0, part.u
            steps, origin = part.steps, part.origin
            tiles = -(-steps // TILE)
            spread = tiles + count - 1  # tiles of transformed input the pieces read
            # the class's input phase: x_u[j] = x[origin + j*d]; tile i reads x_u[3i : 3i + 5]
            gathered = gathered_buffer[: ALPHA * c_in * nw * spread].reshape(ALPHA, c_in, nw, spread)
            for r in range(ALPHA):  # gathered[r, c, n, i] = x_u[3i + r], zeros past the input
                start = origin + r * dilation
                source = xp[n0:n1, :, start : start + TILE * dilation * spread : TILE * dilation]
                got = source.shape[-1]
                np.copyto(gathered[r, :, :, :got], source.transpose(1, 0, 2))
                gathered[r, :, :, got:] = 0
            transformed = transformed_buffer[: ALPHA * c_in * nw * spread].reshape(ALPHA, c_in, nw, spread)
            np.matmul(input_transform, gathered.reshape(ALPHA, -1), out=transformed.reshape(ALPHA, -1))
            for g in range(groups):
                mine = transformed[:, g * cg_in : (g + 1) * cg_in]  # (5, Cg_in, nw, spread)
                if count == 1:
                    columns = mine.reshape(ALPHA, cg_in, nw * spread)
                else:  # columns[i, p*Cg_in + c, (n, tile)] = mine[i, c, n, tile + p]
                    columns = columns_buffer[: ALPHA * count * cg_in * nw * tiles].reshape(ALPHA, count, cg_in, nw, tiles)
                    for p in range(count):
                        np.copyto(columns[:, p], mine[:, :, :, p : p + tiles])
                    columns = columns.reshape(ALPHA, count * cg_in, nw * tiles)
                products = products_buffer[: ALPHA * cg_out * nw * tiles].reshape(ALPHA, cg_out * nw * tiles)
                np.matmul(u_all[:, g], columns, out=products.reshape(ALPHA, cg_out, nw * tiles))
                result = outputs_buffer[: TILE * cg_out * nw * tiles].reshape(TILE, cg_out * nw * tiles)
                np.matmul(output_transform, products, out=result)
                result = result.reshape(TILE, cg_out, nw, tiles)
                for j in range(TILE):  # outputs q = 3*tile + j, for the q < steps
                    valid = -(-(steps - j) // TILE)
                    if valid <= 0:
                        continue
                    first = t0 + u + j * classes.count
                    target = out[n0:n1, g * cg_out : (g + 1) * cg_out, first : t1 : TILE * classes.count]
                    np.copyto(target, result[j, :, :, :valid].transpose(1, 0, 2))

    run_windows(blocks, work, parallel=False)
    return out
