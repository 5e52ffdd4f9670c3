"""The transposed convolution: one matmul gives every (tap, output channel, input step) product,
and each tap's products are added into a contiguous buffer for its output phase.

Inputs here are validated and in the compute dtype; transpose.py owns the frameworks' rules.
"""

from __future__ import annotations

import numpy as np

# Upper bound on the elements of one product block: 2M elements = 8 MiB of float32.
_BLOCK_ELEMENTS = 1 << 21


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
