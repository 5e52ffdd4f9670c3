"""Long-kernel stride-1 correlations in the frequency domain, with the DFTs as matrix products.

For a K-tap kernel, a block of F input samples gives hop = F - K + 1 outputs of a circular
correlation: Y(f) = X(f) * conj(W(f)), per frequency a (C_out x C_in) @ (C_in x blocks)
complex matmul instead of K real ones. wav2vec2 / HuBERT's positional conv (K=128, 16 groups)
needs ~30x fewer multiply-adds that way.

numpy.fft is no help here: transforming the weight row by row and moving the spectra into
(frequency, C_out, C_in) order cost more than the direct conv (measured 3-16x torch). So every
transform is a real matmul with a DFT matrix (float32, computed in float64 once per call),
laid out so that BLAS writes each spectrum where the next product reads it:

    weight: conj(W)[f, (o, c)] = sum_k (cos + i sin)[k, f] * w[(o, c), k]    (F/2+1 x K) @ (K x O*C)
    input:  X[f, (c, block)]   = sum_j (cos - i sin)[j, f] * x[(c, block), j]
    output: y[t, (o, block)]   = sum_f (Re Y cos - Im Y sin)[f, t] * c_f / F  (t < hop)

Work runs a window of output (items, steps), a phase class and a group (and, for wide groups,
a range of its output channels) at a time, so the spectra stay within SPECTRUM_BUDGET whatever
the input's length. The weight's spectrum is transformed once if it fits WEIGHT_BUDGET, else
again in every window; it costs O*C_in*K*(F/2+1) multiply-adds: the cost model (_plan.py)
picks this strategy only where the products it saves outweigh it. Error: the rounding of a block's transforms spreads over the block, so it is
bounded by the block's largest values, not each output's: measured <= 1e-6 of each output's
sum of |products| on random inputs where that sum has >= MIN_PRODUCTS terms (the tests allow
2e-5); an output near silence next to loud samples carries their rounding (verification
compares with the layer's largest output, which this is small against).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from convmigrate.numerics._dense import Window, run_windows, windows
from convmigrate.numerics._shape import ConvShape, class_steps

# Elements (complex) of one chunk's weight spectrum, and about those of one window's input
# spectrum: 1M complex64 = 8 MiB. The whole weight's spectrum is kept if within WEIGHT_BUDGET.
SPECTRUM_BUDGET = 1 << 20
WEIGHT_BUDGET = 4 << 20
MIN_BLOCKS = 64  # blocks per window at least: the per-frequency products' columns
SIZES = (16, 32, 64, 128, 256, 512, 1024)  # FFT sizes the cost model may choose


# The rounding of a transform is spread over its whole block: relative to one output's own sum
# of |products| it is small only where that sum has many terms (measured: 8e-6 for a 7-term
# sum, <= 1e-6 from 64 terms on). Fewer terms: the direct strategies.
MIN_PRODUCTS = 64


def applies(shape: ConvShape) -> bool:
    """Each phase class an undilated stride-1 correlation (stride divides dilation), K >= 5, and
    MIN_PRODUCTS terms per output."""
    return shape.classes.step == 1 and shape.taps >= 5 and shape.cg_in * shape.taps >= MIN_PRODUCTS


def hop(shape: ConvShape, size: int) -> int:
    return size - shape.taps + 1


def fits(shape: ConvShape, size: int) -> bool:
    return hop(shape, size) >= max(1, shape.taps // 2)  # at least ~1/3 of a block is output


def _dft(size: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of 2*pi*j*f/F: (F, F/2+1) each."""
    bins = size // 2 + 1
    angle = (2 * np.pi / size) * np.outer(np.arange(size), np.arange(bins))
    return np.cos(angle).astype(dtype), np.sin(angle).astype(dtype)


def weight_spectra_cached(shape: ConvShape, size: int) -> bool:
    """Whether the whole weight's spectrum fits WEIGHT_BUDGET and is transformed once; else each
    window of output transforms the chunks of output channels it needs again."""
    return (size // 2 + 1) * shape.c_out * shape.cg_in <= WEIGHT_BUDGET


def chunk_channels(shape: ConvShape, size: int) -> int:
    """Output channels per weight spectrum (of a group's), within SPECTRUM_BUDGET."""
    return max(1, min(shape.cg_out, SPECTRUM_BUDGET // max(1, (size // 2 + 1) * shape.cg_in)))


def window_blocks(shape: ConvShape, size: int) -> int:
    """Blocks (of one phase class) per window of output: the input spectrum within SPECTRUM_BUDGET,
    but at least MIN_BLOCKS columns for the per-frequency products."""
    return max(MIN_BLOCKS, SPECTRUM_BUDGET // max(1, (size // 2 + 1) * shape.cg_in))


def fft_correlate(xp: np.ndarray, w: np.ndarray, shape: ConvShape, size: int) -> np.ndarray:
    """Windows of output (items, steps), per phase class (dilated convs; _shape.Classes) and group:
    blocks of `size` samples of the class's input phase, their spectra, products per frequency."""
    n_batch, groups, taps = shape.batch, shape.groups, shape.taps
    cg_in, cg_out, length = shape.cg_in, shape.cg_out, shape.length
    classes, dilation = shape.classes, shape.dilation
    dtype = xp.dtype
    complex_dtype = np.complex64 if dtype == np.float32 else np.complex128
    step = hop(shape, size)
    bins = size // 2 + 1
    cos, sin = _dft(size, dtype)
    # inverse: y[t] = sum_f c_f/F (Re Y[f] cos[t, f] - Im Y[f] sin[t, f]), c_f = 1 at 0 and F/2, else 2
    scale = np.full(bins, 2.0 / size, dtype=dtype)
    scale[0] = scale[-1] = 1.0 / size  # F is even
    inverse = np.concatenate([cos[:step] * scale, -sin[:step] * scale], axis=1)  # (hop, 2*bins)
    chunk = chunk_channels(shape, size)
    chunks = [(g, o0, min(cg_out, o0 + chunk)) for g in range(groups) for o0 in range(0, cg_out, chunk)]

    def weight_spectrum(g: int, o0: int, o1: int) -> np.ndarray:
        """conj(W) of output channels o0:o1 of group g: (F/2+1, o1-o0, Cg_in)."""
        rows = w[g * cg_out + o0 : g * cg_out + o1].reshape(-1, taps)  # ((o, c), K)
        spectrum = np.empty((bins, rows.shape[0]), dtype=complex_dtype)
        spectrum.real = cos[:taps].T @ rows.T
        spectrum.imag = sin[:taps].T @ rows.T  # conj(W): a correlation, not a convolution
        return spectrum.reshape(bins, o1 - o0, cg_in)

    cached = {c: weight_spectrum(*c) for c in chunks} if weight_spectra_cached(shape, size) else None
    out = np.empty((n_batch, shape.c_out, length), dtype=dtype)
    e = dtype.itemsize
    s_n, s_c, _ = xp.strides
    blocks = windows(n_batch, length, window_blocks(shape, size) * step * classes.count)

    def work(mine: Iterable[Window]) -> None:
        for part in class_steps(shape, mine):
            n0, n1, nw, u = part.n0, part.n1, part.n1 - part.n0, part.u
            # block b of the class reads its input phase from origin + b*hop*d: hop outputs, zeros past the input
            count, full = part.blocks(shape, step, step, size)
            columns = nw * count
            for g in range(groups):
                # the group's blocks (Cg_in, nw, count, F) and their spectrum (F/2+1, Cg_in, nw*count)
                source = xp[n0:n1, g * cg_in : (g + 1) * cg_in]
                blocks_in = np.empty((cg_in, nw, count, size), dtype=dtype)
                if full:
                    np.copyto(blocks_in[:, :, :full], as_strided(source[:, :, part.origin:], (cg_in, nw, full, size),
                                                                 (s_c, s_n, step * dilation * e, dilation * e),
                                                                 writeable=False))
                for b in range(full, count):  # blocks that run past the input: zeros after it
                    begin = part.origin + b * step * dilation
                    tail = source[:, :, begin : begin + size * dilation : dilation]
                    blocks_in[:, :, b, : tail.shape[-1]] = tail.transpose(1, 0, 2)
                    blocks_in[:, :, b, tail.shape[-1] :] = 0
                rows = blocks_in.reshape(-1, size)
                spectrum = np.empty((bins, cg_in * columns), dtype=complex_dtype)
                spectrum.real = cos.T @ rows.T
                spectrum.imag = -(sin.T @ rows.T)
                spectrum = spectrum.reshape(bins, cg_in, columns)
                for key in (c for c in chunks if c[0] == g):
                    _, o0, o1 = key
                    weights = cached[key] if cached is not None else weight_spectrum(*key)
                    # per frequency: (o, c) @ (c, columns) -> (o, columns)
                    products = np.matmul(weights, spectrum)
                    stacked = np.concatenate([products.real, products.imag]).reshape(2 * bins, -1)
                    result = (inverse @ stacked).reshape(step, o1 - o0, nw, count)  # y[t, o, n, block]
                    by_item = result.transpose(2, 1, 3, 0).reshape(nw, o1 - o0, count * step)
                    target = out[n0:n1, g * cg_out + o0 : g * cg_out + o1, part.t0 + u : part.t1 : classes.count]
                    np.copyto(target, by_item[..., : part.steps])

    run_windows(blocks, work, parallel=False)
    return out
