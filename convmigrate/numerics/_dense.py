"""Dense and grouped correlations as matrix products (im2col), in two memory orders.

Both gather the K taps of every input channel of a group into a column matrix and hand the
multiply-adds to BLAS; they differ in which axis is contiguous, and that decides how fast
OpenBLAS runs the product (measured with bench/bench_numerics.py):

- `channel_major`: columns (C_in/g*K, steps), out = W @ columns written straight into the
  (N, C_out, L) result. No transposes; the product runs at full speed when a group has many
  output channels (>= ~128).
- `time_major`: rows (steps, K*C_in/g), out^T = rows @ W^T. OpenBLAS runs this orientation
  10-40% faster for few output channels (16-64), which pays for transposing the input window
  and the output block. The input window is split into its dilation phases first, so the K
  taps of one output are K*C_in/g contiguous samples even for dilated and strided convs
  (see _shape.Classes), and where the rows do not overlap (stride >= K) BLAS reads them in
  place without a gather.
- `channel_major_tiles`: channel_major in cache-sized tiles of output run side by side on
  _threads, BLAS on one thread each: for narrow products over long inputs (few channels),
  which BLAS's second thread speeds up little while the gathers would run on one core.
- `pointwise`: K = 1, stride 1: out = W @ x, nothing gathered at all.
- `per_tap`: out = sum_k W[:, :, k] @ x shifted by k taps, K small products per window that
  read the input in place (stride 1): for few output channels and short reductions, where a
  gather would copy more than the product computes.

Work is cut into windows of output (a run of steps of one item, or several whole short items
folded into one product) whose scratch memory stays under ROW_BUDGET elements, and the windows
run on _threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from convmigrate.numerics import _threads
from convmigrate.numerics._shape import ConvShape

# Scratch elements of one gathered column/row block: 1M = 4 MiB of float32. Products of up to
# ~2048 rows run at full BLAS speed on the measured machine; more rows only cost memory.
ROW_BUDGET = 1 << 20
MIN_ROWS, MAX_ROWS = 256, 2048


Window = tuple[int, int, int, int]  # (n0, n1, t0, t1): items n0:n1, output steps t0:t1


def rows_per_product(inner: int) -> int:
    """Rows (output steps) of one matrix product whose reduction has `inner` terms."""
    return max(MIN_ROWS, min(MAX_ROWS, ROW_BUDGET // max(1, inner)))


def windows(batch: int, length: int, steps: int, parts: int = 1) -> list[Window]:
    """Output blocks (n0, n1, t0, t1) of about `steps` steps, at least `parts` of them when
    there is enough work: runs of one item's steps, or several whole items when they are short."""
    steps = max(1, min(steps, -(-batch * length // max(1, parts))))
    if length >= steps:
        count = -(-length // steps)
        cuts = [length * i // count for i in range(count + 1)]
        return [(n, n + 1, cuts[i], cuts[i + 1]) for n in range(batch) for i in range(count)]
    items = max(1, steps // length)
    return [(n0, min(batch, n0 + items), 0, length) for n0 in range(0, batch, items)]


def run_windows(blocks: list[Window], work: Callable[[Iterable[Window]], None], parallel: bool = True) -> None:
    """work(windows) on every thread allowed: each allocates its scratch once, then takes the next
    window until none is left (on a loaded machine a fixed share would wait for the slowest).
    parallel=False for kernels whose time is in big matmuls, which BLAS already spreads."""
    _threads.run_shared(blocks, work, parallel)


def pointwise(xp: np.ndarray, w: np.ndarray, shape: ConvShape) -> np.ndarray:
    """K = 1, stride 1: (G, Cg_out, Cg_in) @ (N, G, Cg_in, L) -> (N, G, Cg_out, L), no copies."""
    n_batch, groups, length = shape.batch, shape.groups, shape.length
    out = np.empty((n_batch, shape.c_out, length), dtype=xp.dtype)
    wg = w.reshape(groups, shape.cg_out, shape.cg_in)
    xg = xp.reshape(n_batch, groups, shape.cg_in, shape.padded)
    og = out.reshape(n_batch, groups, shape.cg_out, length)

    def work(mine: Iterable[Window]) -> None:
        for n0, n1, t0, t1 in mine:
            np.matmul(wg, xg[n0:n1, :, :, t0:t1], out=og[n0:n1, :, :, t0:t1])

    run_windows(windows(n_batch, length, 1 << 14, _threads.threads()), work, parallel=False)
    return out


def channel_major(xp: np.ndarray, w: np.ndarray, shape: ConvShape) -> np.ndarray:
    """Columns (Cg_in*K, steps) per group; W_g (Cg_out, Cg_in*K) @ columns -> out[n, group, :, steps].
    One window at a time, BLAS spreading each product over its threads."""
    return _channel_major(xp, w, shape, side_by_side=False)


# Output steps of one tile of channel_major_tiles: its columns and its output block stay in a
# core's cache (2 MiB of float32: L2, or L3 next to it) between the gather and the matmul.
TILE_CACHE = 1 << 19
MIN_TILE_STEPS, MAX_TILE_STEPS = 256, 2048


def tile_steps(shape: ConvShape) -> int:
    """Output steps of one tile of `channel_major_tiles`."""
    return max(MIN_TILE_STEPS, min(MAX_TILE_STEPS, TILE_CACHE // (shape.cg_in * shape.taps + shape.cg_out)))


def channel_major_tiles(xp: np.ndarray, w: np.ndarray, shape: ConvShape) -> np.ndarray:
    """channel_major in tiles of output small enough for a core's cache, run side by side on
    _threads with BLAS on one thread each. Wins for few channels over long inputs (DAC's
    C64 K7 residual units at 44.1k samples): there a product (Cg_out, Cg_in*K) @ (Cg_in*K, steps)
    is too narrow for BLAS to gain from a second thread, while the whole-length gather and the
    windows one after another leave a core idle."""
    return _channel_major(xp, w, shape, side_by_side=True)


def _channel_major(xp: np.ndarray, w: np.ndarray, shape: ConvShape, side_by_side: bool) -> np.ndarray:
    n_batch, groups, taps = shape.batch, shape.groups, shape.taps
    cg_in, cg_out, length = shape.cg_in, shape.cg_out, shape.length
    stride, dilation = shape.stride, shape.dilation
    inner = cg_in * taps
    wg = w.reshape(groups, cg_out, inner)  # row (c, k) matches the column order below
    xg = xp.reshape(n_batch, groups, cg_in, shape.padded)
    out = np.empty((n_batch, groups, cg_out, length), dtype=xp.dtype)
    _, _, s_c, s_l = xg.strides
    steps = tile_steps(shape) if side_by_side else rows_per_product(inner)
    blocks = windows(n_batch, length, steps, _threads.threads())
    largest = max((n1 - n0) * (t1 - t0) for n0, n1, t0, t1 in blocks)

    def work(mine: Iterable[Window]) -> None:
        buffer = np.empty(inner * largest, dtype=xp.dtype)
        for n0, n1, t0, t1 in mine:
            nw, tw = n1 - n0, t1 - t0
            for g in range(groups):
                # cols[n, c, k, t] = x[n0+n, g, c, (t0+t)*stride + k*dilation]: (nw, Cg_in, K, tw)
                source = xg[n0:n1, g, :, t0 * stride :]
                window = as_strided(source, (nw, cg_in, taps, tw), (source.strides[0], s_c, s_l * dilation, s_l * stride),
                                    writeable=False)
                cols = buffer[: nw * inner * tw].reshape(nw, cg_in, taps, tw)
                np.copyto(cols, window)
                # (Cg_out, Cg_in*K) @ (nw, Cg_in*K, tw) -> (nw, Cg_out, tw), straight into out.
                np.matmul(wg[g], cols.reshape(nw, inner, tw), out=out[n0:n1, g, :, t0:t1])

    if side_by_side:
        _threads.run_blas_alone(blocks, work)
    else:
        run_windows(blocks, work, parallel=False)
    return out.reshape(n_batch, shape.c_out, length)


def split_phases(xp: np.ndarray, n0: int, n1: int, start: int, need: int, shape: ConvShape, buffer: np.ndarray) -> np.ndarray:
    """The input window [start, start+need) of items n0:n1, time-major and split by dilation phase.

    Returns xph (nw, d, G, J, Cg_in) with xph[n, p, g, j, c] = x[n0+n, g*Cg_in + c, start + j*d + p],
    J = ceil(need/d). Entries past the input's end are left unset: no valid output reads them.
    """
    nw, d, groups, cg = n1 - n0, shape.dilation, shape.groups, shape.cg_in
    rows = -(-need // d)
    xph = buffer[: nw * d * groups * rows * cg].reshape(nw, d, groups, rows, cg)
    available = min(rows * d, shape.padded - start)
    full, rest = divmod(available, d)
    source = xp[n0:n1, :, start : start + full * d].reshape(nw, groups, cg, full, d)
    np.copyto(xph[:, :, :, :full], source.transpose(0, 4, 1, 3, 2))
    if rest and full < rows:
        tail = xp[n0:n1, :, start + full * d : start + full * d + rest].reshape(nw, groups, cg, rest)
        np.copyto(xph[:, :rest, :, full], tail.transpose(0, 3, 1, 2))
    return xph


def time_major(xp: np.ndarray, w: np.ndarray, shape: ConvShape) -> np.ndarray:
    """Rows (steps, K*Cg_in) per phase class and group; rows @ W_g^T -> (steps, Cg_out), transposed into out."""
    n_batch, groups, taps = shape.batch, shape.groups, shape.taps
    cg_in, cg_out, length = shape.cg_in, shape.cg_out, shape.length
    classes = shape.classes
    inner = taps * cg_in
    # (G, K*Cg_in, Cg_out): row k*Cg_in + c holds w[g*Cg_out + o, c, k], the order of a row's taps.
    wt = np.ascontiguousarray(w.reshape(groups, cg_out, cg_in, taps).transpose(0, 3, 2, 1)).reshape(groups, inner, cg_out)
    out = np.empty((n_batch, shape.c_out, length), dtype=xp.dtype)
    blocks = windows(n_batch, length, rows_per_product(inner) * classes.count, _threads.threads())
    in_place = classes.step >= taps  # rows do not overlap: BLAS reads them where they are
    itemsize = xp.dtype.itemsize

    def need(t0: int, t1: int) -> int:
        return (t1 - t0 - 1) * shape.stride + shape.span

    phase_size = max((n1 - n0) * (-(-need(t0, t1) // shape.dilation) * shape.dilation) for n0, n1, t0, t1 in blocks)
    row_count = max((n1 - n0) * classes.steps(0, t1 - t0) for n0, n1, t0, t1 in blocks)

    def work(mine: Iterable[Window]) -> None:
        phases = np.empty(phase_size * shape.c_in, dtype=xp.dtype)
        cols = np.empty(0 if in_place else row_count * inner, dtype=xp.dtype)
        products = np.empty(row_count * cg_out, dtype=xp.dtype)
        for n0, n1, t0, t1 in mine:
            nw, tw = n1 - n0, t1 - t0
            xph = split_phases(xp, n0, n1, t0 * shape.stride, need(t0, t1), shape, phases)
            for u in range(classes.count):
                steps = classes.steps(u, tw)
                if not steps:
                    continue
                for g in range(groups):
                    slab = xph[:, classes.phase(u), g, classes.first(u) :]  # (nw, J', Cg_in)
                    # rows[n, q, k*Cg_in + c] = slab[n, q*step + k, c]: K*Cg_in consecutive samples
                    rows = as_strided(slab, (nw, steps, inner), (slab.strides[0], classes.step * cg_in * itemsize, itemsize),
                                      writeable=False)
                    result = products[: nw * steps * cg_out].reshape(nw, steps, cg_out)
                    if in_place:
                        np.matmul(rows, wt[g], out=result)
                    else:
                        gathered = cols[: nw * steps * inner].reshape(nw, steps, inner)
                        np.copyto(gathered, rows)
                        np.matmul(gathered.reshape(nw * steps, inner), wt[g], out=result.reshape(nw * steps, cg_out))
                    # out[n0+n, g*Cg_out + o, t0 + u + q*count] = result[n, q, o]
                    target = out[n0:n1, g * cg_out : (g + 1) * cg_out, t0 + u : t1 : classes.count]
                    np.copyto(target, result.transpose(0, 2, 1))

    run_windows(blocks, work, parallel=False)
    return out


def time_major_taps(xp: np.ndarray, w: np.ndarray, shape: ConvShape) -> np.ndarray:
    """Rows (steps, Cg_in*K) with each channel's K taps together, gathered straight from the
    channel-major input (runs of K samples when undilated); rows @ W_g^T reads the weight as a
    transposed view, so nothing of the weight is copied (time_major copies it into (K, Cg_in)
    order, which costs ~4 ns an element: too much for a big weight on a short input)."""
    n_batch, groups, taps = shape.batch, shape.groups, shape.taps
    cg_in, cg_out, length = shape.cg_in, shape.cg_out, shape.length
    stride, dilation = shape.stride, shape.dilation
    inner = cg_in * taps
    wt = w.reshape(groups, cg_out, inner).transpose(0, 2, 1)  # (G, Cg_in*K, Cg_out), a view
    xg = xp.reshape(n_batch, groups, cg_in, shape.padded)
    out = np.empty((n_batch, shape.c_out, length), dtype=xp.dtype)
    blocks = windows(n_batch, length, rows_per_product(inner), _threads.threads())
    s_n, _, s_c, s_l = xg.strides

    row_count = max((n1 - n0) * (t1 - t0) for n0, n1, t0, t1 in blocks)

    def work(mine: Iterable[Window]) -> None:
        cols = np.empty(row_count * inner, dtype=xp.dtype)
        products = np.empty(row_count * cg_out, dtype=xp.dtype)
        for n0, n1, t0, t1 in mine:
            nw, tw = n1 - n0, t1 - t0
            for g in range(groups):
                # rows[n, t, c, k] = x[n0+n, g, c, (t0+t)*stride + k*dilation]: (nw, tw, Cg_in, K)
                source = xg[n0:n1, g, :, t0 * stride :]
                rows = as_strided(source, (nw, tw, cg_in, taps), (s_n, s_l * stride, s_c, s_l * dilation), writeable=False)
                gathered = cols[: nw * tw * inner].reshape(nw, tw, cg_in, taps)
                np.copyto(gathered, rows)
                result = products[: nw * tw * cg_out].reshape(nw * tw, cg_out)
                np.matmul(gathered.reshape(nw * tw, inner), wt[g], out=result)
                np.copyto(out[n0:n1, g * cg_out : (g + 1) * cg_out, t0:t1], result.reshape(nw, tw, cg_out).transpose(0, 2, 1))

    run_windows(blocks, work, parallel=False)
    return out


# Scratch of one per-tap window (its input, output and one tap's product) that stays in a core's
# cache between the K matmuls; fewer steps than MIN_TAP_STEPS cost more in calls than they save.
TAP_CACHE = 1 << 16
MIN_TAP_STEPS = 1024


def tap_steps(shape: ConvShape) -> int:
    """Output steps of one per-tap window."""
    return max(MIN_TAP_STEPS, TAP_CACHE // (shape.cg_in + 2 * shape.cg_out))


def per_tap(xp: np.ndarray, w: np.ndarray, shape: ConvShape) -> np.ndarray:
    """out = sum over taps k of W[:, :, k] @ (the input shifted by k*dilation), per window of
    output: no gather at all for stride 1 (each tap reads the input where it is), one copy of
    the window's input split into its stride phases otherwise. Wins where a gather would copy
    far more than the product computes: few output channels (HiFi-GAN's conv_post, 32 -> 1),
    short reductions. The windows are small products, run on _threads side by side."""
    n_batch, groups, taps = shape.batch, shape.groups, shape.taps
    cg_in, cg_out, length = shape.cg_in, shape.cg_out, shape.length
    stride, dilation = shape.stride, shape.dilation
    wk = np.ascontiguousarray(w.reshape(groups, cg_out, cg_in, taps).transpose(3, 0, 1, 2))  # (K, G, Cg_out, Cg_in)
    out = np.empty((n_batch, shape.c_out, length), dtype=xp.dtype)
    blocks = windows(n_batch, length, tap_steps(shape), _threads.threads())
    largest = max((n1 - n0) * (t1 - t0) for n0, n1, t0, t1 in blocks)
    reach = (taps - 1) * dilation // stride + 1  # samples of a phase beyond a window's steps
    phase_size = 0 if stride == 1 else max(stride * (n1 - n0) * shape.c_in * (t1 - t0 + reach) for n0, n1, t0, t1 in blocks)

    def work(mine: Iterable[Window]) -> None:
        product = np.empty(largest * cg_out, dtype=xp.dtype)
        phases = np.empty(phase_size, dtype=xp.dtype)
        for n0, n1, t0, t1 in mine:
            nw, tw = n1 - n0, t1 - t0
            if stride == 1:
                source, width = xp[n0:n1], None
            else:
                # phase p of the window: xw[s, n, c, j] = x[n0+n, c, (t0 + j)*stride + p]
                width = tw + reach
                source = phases[: stride * nw * shape.c_in * width].reshape(stride, nw, shape.c_in, width)
                for p in range(stride):
                    part = xp[n0:n1, :, t0 * stride + p :: stride][..., :width]
                    np.copyto(source[p, :, :, : part.shape[-1]], part)
            for g in range(groups):
                target = out[n0:n1, g * cg_out : (g + 1) * cg_out, t0:t1]
                scratch = product[: nw * cg_out * tw].reshape(nw, cg_out, tw)
                for k in range(taps):
                    if stride == 1:
                        start = t0 + k * dilation
                        rows = source[:, g * cg_in : (g + 1) * cg_in, start : start + tw]
                    else:
                        start = k * dilation // stride
                        rows = source[(k * dilation) % stride, :, g * cg_in : (g + 1) * cg_in, start : start + tw]
                    if k == 0:
                        np.matmul(wk[0, g], rows, out=target)
                    else:
                        np.matmul(wk[k, g], rows, out=scratch)
                        target += scratch

    run_windows(blocks, work)
    return out

