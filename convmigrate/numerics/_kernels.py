"""The arithmetic: grouped, strided, dilated 1-D cross-correlation and its transpose, in NumPy.

Inputs here are already validated, padded and in the compute dtype (float32 or float64); the
public functions in conv.py and transpose.py own the frameworks' rules. The strategies hand
the multiply-adds to BLAS (np.matmul) wherever they can, because an elementwise NumPy loop over
taps makes one pass over memory per tap and runs up to ~10x slower than PyTorch's kernels.

Strategies, chosen per shape (bench/bench_numerics.py measures them against PyTorch):

- `_im2col`: the general case. Gather the K taps of each input channel into a column matrix
  (C_in/groups * K, L_out) and do one matmul per group. The gather is done in chunks whose
  columns fit a fixed budget so memory stays bounded on long sequences.
- `_depthwise_toeplitz`: one input channel per group (depthwise, any channel multiplier).
  Cut the output into blocks of B steps; each block is (input window) @ (banded Toeplitz matrix
  of the taps), a batched matmul over channels. It does ~(stride+1)x the multiply-adds of a
  direct depthwise conv, but at BLAS speed.
- `_depthwise_taps`: depthwise with few taps or dilation, where a multiply-accumulate per tap
  is cheaper.
- `col2im`: the transposed conv. One matmul gives every (tap, output channel, input step)
  product; each tap's slice is added into a contiguous buffer for its output phase
  (position mod stride), and the phases are interleaved into the requested window.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

# Upper bound on the elements of one gathered column block (im2col) or one product block
# (col2im): 2M elements = 8 MiB of float32, measured as fast as unbounded (bench_numerics).
_BLOCK_ELEMENTS = 1 << 21

# OpenBLAS runs a matmul with few output rows (M = C_out/groups) 10-20% faster as
# (steps, C_in/groups*K) @ (C_in/groups*K, M) with a contiguous time-major left operand (measured
# for M = 48, wav2vec2's positional conv). Gathering time-major columns copies runs of K taps,
# which pays only for long kernels: with M = 64, K = 17 it was slower overall.
_TIME_MAJOR_MAX_OUT = 48
_TIME_MAJOR_MIN_TAPS = 32

# Depthwise convs with fewer taps than this (or dilated ones) use the per-tap multiply-accumulate:
# measured faster than the Toeplitz blocks up to K=5, slower from K=7 on.
_TOEPLITZ_MIN_TAPS = 6


def correlate(xp: np.ndarray, w: np.ndarray, stride: int, dilation: int, groups: int) -> np.ndarray:
    """Grouped cross-correlation of an already padded input, with no padding of its own.

    xp: (N, C_in, Lp); w: (C_out, C_in/groups, K), same float dtype.
    Returns (N, C_out, L_out), L_out = (Lp - (K-1)*dilation - 1)//stride + 1 >= 1, C-contiguous.
    """
    cg_in, taps = w.shape[1], w.shape[2]
    if cg_in == 1 and groups > 1:  # depthwise; with groups == 1 im2col is a single matmul
        # A Toeplitz block does ~(stride + 1)x the multiply-adds of a direct conv (more with
        # dilation), which BLAS speed repays only for undilated kernels at stride 1 or 2.
        if taps >= _TOEPLITZ_MIN_TAPS and dilation == 1 and stride <= 2:
            return _depthwise_toeplitz(xp, w, stride, dilation, groups)
        return _depthwise_taps(xp, w, stride, dilation, groups)
    return _im2col(xp, w, stride, dilation, groups)


def _output_length(padded: int, taps: int, stride: int, dilation: int) -> int:
    return (padded - (taps - 1) * dilation - 1) // stride + 1


def _im2col(xp: np.ndarray, w: np.ndarray, stride: int, dilation: int, groups: int) -> np.ndarray:
    n_batch, _, padded = xp.shape
    c_out, cg_in, taps = w.shape
    cg_out = c_out // groups
    length = _output_length(padded, taps, stride, dilation)
    # w: (C_out, Cg_in, K) -> (G, Cg_out, Cg_in*K); row (c, k) matches the column order below.
    wg = w.reshape(groups, cg_out, cg_in * taps)
    xg = xp.reshape(n_batch, groups, cg_in, padded)
    out = np.empty((n_batch, groups, cg_out, length), dtype=xp.dtype)
    _, s_g, s_c, s_l = xg.strides

    # Chunk over groups, then over output steps, so one column block stays under the budget.
    rows = cg_in * taps
    group_chunk = max(1, min(groups, _BLOCK_ELEMENTS // max(1, rows * length)))
    step_chunk = length if group_chunk > 1 else max(1, min(length, _BLOCK_ELEMENTS // rows))
    buffer = np.empty(group_chunk * rows * step_chunk, dtype=xp.dtype)
    time_major = cg_out <= _TIME_MAJOR_MAX_OUT and taps >= _TIME_MAJOR_MIN_TAPS
    for n in range(n_batch):
        for g0 in range(0, groups, group_chunk):
            gc = min(group_chunk, groups - g0)
            for t0 in range(0, length, step_chunk):
                tc = min(step_chunk, length - t0)
                source = xg[n, g0 : g0 + gc, :, t0 * stride :]
                target = out[n, g0 : g0 + gc, :, t0 : t0 + tc]
                if time_major:
                    # cols[g, t, c, k] = xp[n, g0+g, c, (t0+t)*stride + k*dilation]: (gc, tc, Cg_in, K)
                    window = as_strided(
                        source, (gc, tc, cg_in, taps), (s_g, s_l * stride, s_c, s_l * dilation), writeable=False
                    )
                    cols = buffer[: gc * rows * tc].reshape(gc, tc, cg_in, taps)
                    np.copyto(cols, window)
                    # (gc, tc, Cg_in*K) @ (gc, Cg_in*K, Cg_out) -> (gc, tc, Cg_out), copied into out.
                    target[...] = np.matmul(cols.reshape(gc, tc, rows), wg[g0 : g0 + gc].transpose(0, 2, 1)).transpose(
                        0, 2, 1
                    )
                else:
                    # cols[g, c, k, t] = xp[n, g0+g, c, (t0+t)*stride + k*dilation]: (gc, Cg_in, K, tc)
                    window = as_strided(
                        source, (gc, cg_in, taps, tc), (s_g, s_c, s_l * dilation, s_l * stride), writeable=False
                    )
                    cols = buffer[: gc * rows * tc].reshape(gc, cg_in, taps, tc)
                    np.copyto(cols, window)
                    # (gc, Cg_out, Cg_in*K) @ (gc, Cg_in*K, tc) -> (gc, Cg_out, tc), straight into out.
                    np.matmul(wg[g0 : g0 + gc], cols.reshape(gc, rows, tc), out=target)
    return out.reshape(n_batch, c_out, length)


def _depthwise_taps(xp: np.ndarray, w: np.ndarray, stride: int, dilation: int, groups: int) -> np.ndarray:
    n_batch, _, padded = xp.shape
    c_out, _, taps = w.shape
    mult = c_out // groups
    length = _output_length(padded, taps, stride, dilation)
    last = (length - 1) * stride + 1
    # x: (N, G, 1, Lp) against tap k of w: (G, mult, 1); each product is (N, G, mult, L_out).
    xg = xp.reshape(n_batch, groups, 1, padded)
    wg = w.reshape(groups, mult, taps)
    out = xg[..., 0:last:stride] * wg[..., 0:1]
    term = np.empty_like(out)
    for k in range(1, taps):
        start = k * dilation
        np.multiply(xg[..., start : start + last : stride], wg[..., k : k + 1], out=term)
        out += term
    return out.reshape(n_batch, c_out, length)


def _depthwise_toeplitz(xp: np.ndarray, w: np.ndarray, stride: int, dilation: int, groups: int) -> np.ndarray:
    n_batch, _, padded = xp.shape
    c_out, _, taps = w.shape
    mult = c_out // groups
    length = _output_length(padded, taps, stride, dilation)
    span = (taps - 1) * dilation + 1
    block = span  # B output steps per block; measured fastest near the kernel span
    window = (block - 1) * stride + span  # input samples one block reads
    n_blocks = -(-length // block)
    needed = (n_blocks - 1) * block * stride + window
    if needed > padded:  # the last block runs past the input: zeros feed only discarded outputs
        xp = np.pad(xp, ((0, 0), (0, 0), (0, needed - padded)))
    xg = xp.reshape(n_batch, groups, xp.shape[-1])
    s_n, s_g, s_l = xg.strides
    # blocks[n, g, b, j] = x[n, g, b*B*stride + j]: (N, G, n_blocks, window), copied for BLAS.
    blocks = np.ascontiguousarray(
        as_strided(xg, (n_batch, groups, n_blocks, window), (s_n, s_g, s_l * block * stride, s_l), writeable=False)
    )
    # toeplitz[g, j, m, i] = w[g*mult + m, 0, k] where j = i*stride + k*dilation: (G, window, mult, B)
    toeplitz = np.zeros((groups, window, mult, block), dtype=xp.dtype)
    k_idx, i_idx = np.meshgrid(np.arange(taps), np.arange(block), indexing="ij")  # (K, B) each
    # Advanced indices split by a slice: the assigned shape is (K, B, G, mult).
    toeplitz[:, i_idx * stride + k_idx * dilation, :, i_idx] = w.reshape(groups, mult, taps).transpose(2, 0, 1)[
        :, None
    ]
    # (N, G, n_blocks, window) @ (G, window, mult*B) -> (N, G, n_blocks, mult, B)
    prod = np.matmul(blocks, toeplitz.reshape(groups, window, mult * block))
    prod = prod.reshape(n_batch, groups, n_blocks, mult, block).transpose(0, 1, 3, 2, 4)
    out = prod.reshape(n_batch, groups, mult, n_blocks * block)[..., :length]
    return np.ascontiguousarray(out).reshape(n_batch, c_out, length)


def col2im(
    x: np.ndarray, w: np.ndarray, stride: int, dilation: int, groups: int, start: int, length: int
) -> np.ndarray:
    """A window of the full transposed convolution, which is zero past its end.

    x: (N, C_in, L); w: (C_in, C_out/groups, K), same float dtype. The full result has
    F = (L-1)*stride + (K-1)*dilation + 1 positions: position l*stride + k*dilation receives
    x[:, ci, l] * w[ci, co, k] summed over the group's input channels ci. Returns positions
    [start, start + length) of it as (N, C_out, length); those >= F are 0.
    """
    n_batch, c_in, steps = x.shape
    _, cg_out, taps = w.shape
    cg_in = c_in // groups
    full = (steps - 1) * stride + (taps - 1) * dilation + 1
    # Tap k lands on output phase r = (k*d) % s, shifted by j = (k*d) // s input steps. Summing
    # into one contiguous buffer per phase is ~3x faster than K adds at stride s into the output.
    shift = [divmod(k * dilation, stride) for k in range(taps)]
    span = steps + shift[-1][0]
    phases = np.zeros((n_batch, groups, stride, cg_out, span), dtype=x.dtype)
    # w: (C_in, Cg_out, K) -> (G, Cg_out*K, Cg_in), a transposed view BLAS reads as it is:
    # copying the weight into (K, Cg_out) row order costs ~1/4 of the matmul on HiFi-GAN shapes.
    wt = w.reshape(groups, cg_in, cg_out * taps).transpose(0, 2, 1)
    xg = x.reshape(n_batch, groups, cg_in, steps)
    step_chunk = max(1, min(steps, _BLOCK_ELEMENTS // max(1, n_batch * groups * taps * cg_out)))
    for t0 in range(0, steps, step_chunk):
        tc = min(step_chunk, steps - t0)
        # (G, Cg_out*K, Cg_in) @ (N, G, Cg_in, tc) -> (N, G, Cg_out, K, tc)
        prod = np.matmul(wt, xg[..., t0 : t0 + tc]).reshape(n_batch, groups, cg_out, taps, tc)
        for k, (j, r) in enumerate(shift):
            phases[:, :, r, :, t0 + j : t0 + j + tc] += prod[:, :, :, k]
    # Interleave the phases straight into the window: out[..., o - start] = phases[r][..., q]
    # for o = q*stride + r in [start, min(start + length, F)).
    out = np.zeros((n_batch, groups, cg_out, length), dtype=x.dtype)
    stop = min(start + length, full)
    for r in range(stride):
        first = start + (r - start) % stride  # first position >= start in phase r
        if first >= stop:
            continue
        count = (stop - 1 - first) // stride + 1
        q0 = (first - r) // stride
        out[..., first - start : first - start + (count - 1) * stride + 1 : stride] = phases[:, :, r, :, q0 : q0 + count]
    return out.reshape(n_batch, groups * cg_out, length)
