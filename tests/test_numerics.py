"""convmigrate.numerics against the real PyTorch: Conv1d and ConvTranspose1d, every dtype.

Each hypothesis sweep draws hyperparameters (stride, padding, padding_mode, dilation, groups
incl. depthwise, bias, batch, lengths near the kernel span) and requires that either PyTorch
and convmigrate both refuse the call (ours with ValueError) or both give the same numbers
within a tolerance scaled by the sum of |products| each output adds up.
MindSpore's twins are in test_numerics_mindspore.py.
"""

from __future__ import annotations

import doctest
import math
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import convmigrate.numerics
from convmigrate.numerics import (
    _dense,
    _depthwise,
    _fft,
    _plan,
    _threads,
    _transposed,
    conv,
    ms_conv1d,
    ms_conv1d_transpose,
    torch_conv1d,
    torch_conv_transpose1d,
    transpose,
)
from convmigrate.numerics._shape import ConvShape
from convmigrate.numerics.padding import mindspore_same_padding
from convmigrate.vocab import DTYPES

# torch warns that padding="same" with an even kernel copies the input; the sweeps do that on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

PADDING_MODES = ["zeros", "reflect", "replicate", "circular"]

# Relative error allowed against the sum of |x*w| (+|bias|) that forms each output: float32
# accumulation error for the wide types, one or two roundings of the result for the narrow ones.
# bfloat16 allows three: torch's CPU bfloat16 conv_transpose1d rounds partial sums, and a
# hypothesis case (stride 3, dilation 3, groups 2) found it at -21.0 where the exact value is
# -20.54 (1.9 x 2**-7 of the magnitude 31.6); ours gives -20.5, the exact value rounded once.
RELATIVE_TOLERANCE = {"float64": 1e-12, "float32": 2e-5, "float16": 2 * 2.0**-10, "bfloat16": 3 * 2.0**-7}


def assert_close(ours: np.ndarray, reference: np.ndarray, magnitude: np.ndarray, dtype: str) -> None:
    """ours and reference (float arrays) agree within RELATIVE_TOLERANCE[dtype] * magnitude."""
    assert ours.shape == reference.shape
    allowed = RELATIVE_TOLERANCE[dtype] * magnitude + 1e-30
    error = np.abs(ours.astype(np.float64) - reference.astype(np.float64))
    worst = np.unravel_index(np.argmax(error - allowed), error.shape) if error.size else None
    assert np.all(error <= allowed), f"{dtype}: error {error[worst]} > allowed {allowed[worst]} at {worst}"


def magnitude_of(function, x, weight, bias, **kwargs) -> np.ndarray:
    """The sum of |products| (+|bias|) behind each output: the same conv on absolute values."""
    absolute = None if bias is None else np.abs(bias).astype(np.float64)
    return function(np.abs(x).astype(np.float64), np.abs(weight).astype(np.float64), absolute, **kwargs)


def to_torch(array: np.ndarray | None, dtype: str) -> torch.Tensor | None:
    if array is None:
        return None
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64)).to(getattr(torch, dtype))


def stored(array: np.ndarray | None, dtype: str) -> np.ndarray | None:
    """`array` (float64) as convmigrate takes it: float16/32/64 arrays, bfloat16 as uint16 bits."""
    if array is None:
        return None
    return DTYPES[dtype].from_float32(array.astype(np.float32)) if dtype == "bfloat16" else array.astype(dtype)


def as_float(array: np.ndarray, dtype: str) -> np.ndarray:
    return DTYPES[dtype].to_float32(array) if dtype == "bfloat16" else array


def torch_result(call):
    """call() as a float64 numpy array, or None when PyTorch refuses it."""
    try:
        with torch.no_grad():
            return call().double().numpy()
    except (RuntimeError, ValueError):
        return None


@st.composite
def conv_cases(draw, transposed: bool = False, allow_unbatched: bool = True):
    groups = draw(st.integers(1, 3))
    depthwise = draw(st.booleans())
    cg_in = 1 if depthwise else draw(st.integers(1, 3))
    cg_out = draw(st.integers(1, 3))
    # >= 6 taps reach the depthwise Toeplitz path, >= 32 the time-major im2col
    taps = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 9, 12, 33]))
    stride = draw(st.integers(1, 3))
    dilation = draw(st.integers(1, 3))
    span = (taps - 1) * dilation + 1
    length = max(1, span + draw(st.integers(-3, 12)))  # short inputs near the kernel span
    shape = draw(st.sampled_from(["batch1", "batch2", "unbatched"] if allow_unbatched else ["batch1", "batch2"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2 if shape == "batch2" else 1, groups * cg_in, length))
    if shape == "unbatched":
        x = x[0]
    if transposed:
        weight = rng.standard_normal((groups * cg_in, cg_out, taps))
    else:
        weight = rng.standard_normal((groups * cg_out, cg_in, taps))
    bias = rng.standard_normal(groups * cg_out) if draw(st.booleans()) else None
    return {"x": x, "weight": weight, "bias": bias, "stride": stride, "dilation": dilation, "groups": groups}


@st.composite
def torch_conv_cases(draw):
    case = draw(conv_cases())
    case["padding"] = draw(st.sampled_from([0, 1, 2, 3, (2,), "valid", "same"]))
    case["padding_mode"] = draw(st.sampled_from(PADDING_MODES))
    return case


@st.composite
def torch_transpose_cases(draw):
    case = draw(conv_cases(transposed=True))
    case["padding"] = draw(st.integers(0, 3))
    case["output_padding"] = draw(st.integers(0, 2))
    return case


def torch_layer_conv(case: dict, dtype: str) -> np.ndarray | None:
    """torch.nn.Conv1d (padding_mode needs the module) with the case's weights, as float64."""
    x, weight, bias = case["x"], case["weight"], case["bias"]

    def call():
        layer = torch.nn.Conv1d(
            x.shape[-2], weight.shape[0], weight.shape[-1], stride=case["stride"], padding=case["padding"],
            dilation=case["dilation"], groups=case["groups"], bias=bias is not None,
            padding_mode=case["padding_mode"],
        ).to(getattr(torch, dtype))
        layer.weight.copy_(to_torch(weight, dtype))
        if bias is not None:
            layer.bias.copy_(to_torch(bias, dtype))
        return layer(to_torch(x, dtype))

    return torch_result(call)


def check_against(reference, ours_call, magnitude_call, dtype: str) -> None:
    """Both refuse, or both answer and agree."""
    try:
        ours = ours_call()
    except ValueError:
        assert reference is None, "convmigrate refused a call PyTorch accepts"
        return
    assert reference is not None, f"PyTorch refuses a call convmigrate answered with shape {ours.shape}"
    assert_close(as_float(ours, dtype), reference, magnitude_call(), dtype)


def run_torch_conv(case: dict, dtype: str) -> None:
    hyper = {k: case[k] for k in ("stride", "padding", "dilation", "groups", "padding_mode")}
    # Round the inputs to the dtype first, so both sides see identical values.
    x, weight, bias = (None if a is None else as_float(stored(a, dtype), dtype).astype(np.float64)
                       for a in (case["x"], case["weight"], case["bias"]))
    case = {**case, "x": x, "weight": weight, "bias": bias}
    reference = torch_layer_conv(case, dtype)
    check_against(
        reference,
        lambda: torch_conv1d(stored(x, dtype), stored(weight, dtype), stored(bias, dtype), **hyper, dtype=dtype),
        lambda: magnitude_of(torch_conv1d, x, weight, bias, **hyper),
        dtype,
    )


def run_torch_transpose(case: dict, dtype: str) -> None:
    hyper = {k: case[k] for k in ("stride", "padding", "output_padding", "groups", "dilation")}
    x, weight, bias = (None if a is None else as_float(stored(a, dtype), dtype).astype(np.float64)
                       for a in (case["x"], case["weight"], case["bias"]))
    reference = torch_result(
        lambda: F.conv_transpose1d(to_torch(x, dtype), to_torch(weight, dtype), to_torch(bias, dtype), **hyper)
    )
    if reference is not None and reference.shape[-1] == 0:
        # An output length of 0 is refused by torch with groups=1 ("output size is too small")
        # but comes back empty with groups > 1 (another backend). convmigrate always refuses.
        reference = None
    check_against(
        reference,
        lambda: torch_conv_transpose1d(stored(x, dtype), stored(weight, dtype), stored(bias, dtype), **hyper,
                                       dtype=dtype),
        lambda: magnitude_of(torch_conv_transpose1d, x, weight, bias, **hyper),
        dtype,
    )


@settings(max_examples=300, deadline=None)
@given(torch_conv_cases(), st.sampled_from(["float32", "float64"]))
def test_conv1d_matches_torch(case, dtype):
    run_torch_conv(case, dtype)


@settings(max_examples=200, deadline=None)
@given(torch_transpose_cases(), st.sampled_from(["float32", "float64"]))
def test_conv_transpose1d_matches_torch(case, dtype):
    run_torch_transpose(case, dtype)


@settings(max_examples=60, deadline=None)
@given(torch_conv_cases(), st.sampled_from(["float16", "bfloat16"]))
def test_conv1d_half_precision_matches_torch(case, dtype):
    run_torch_conv(case, dtype)


@settings(max_examples=40, deadline=None)
@given(torch_transpose_cases(), st.sampled_from(["float16", "bfloat16"]))
def test_conv_transpose1d_half_precision_matches_torch(case, dtype):
    run_torch_transpose(case, dtype)


@settings(max_examples=40, deadline=None)
@given(torch_conv_cases(), torch_transpose_cases())
def test_chunked_kernels_match_torch(conv_case, transpose_case):
    """With tiny scratch budgets every kernel runs its window loops (items, steps, groups)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_dense, "ROW_BUDGET", 7)
        patch.setattr(_dense, "MIN_ROWS", 1)
        patch.setattr(_depthwise, "TAPS_WINDOW", 5)
        patch.setattr(_depthwise, "TOEPLITZ_WINDOW", 3)
        patch.setattr(_transposed, "_BLOCK_ELEMENTS", 7)
        run_torch_conv(conv_case, "float64")
        run_torch_transpose(transpose_case, "float64")


# (N, C_in, C_out, K, stride, dilation, groups, L): shapes that reach each strategy's edge cases
STRATEGY_SHAPES = [
    (2, 6, 4, 3, 1, 1, 1, 40),  # dense
    (3, 4, 6, 5, 2, 3, 2, 61),  # grouped, strided and dilated: phase classes with step 2
    (1, 5, 5, 4, 4, 1, 1, 30),  # stride == K: time-major rows read in place
    (2, 4, 8, 1, 1, 1, 2, 17),  # pointwise, grouped
    (2, 5, 5, 7, 1, 1, 5, 50),  # depthwise
    (1, 4, 8, 6, 2, 1, 4, 45),  # depthwise, channel multiplier 2, strided
    (2, 3, 3, 3, 1, 4, 3, 29),  # depthwise, dilated: four phase classes
    (1, 3, 6, 9, 3, 2, 3, 70),  # depthwise, multiplier 2, stride 3, dilation 2
    (2, 16, 8, 5, 1, 1, 1, 40),  # 80 products per output: FFT sizes 16 and 32, a last block past the input
    (3, 16, 6, 9, 2, 4, 2, 90),  # FFT per phase class (stride 2, dilation 4) and group
    (1, 8, 4, 16, 1, 1, 1, 20),  # FFT with fewer outputs (5) than one block's hop
    (1, 96, 3, 127, 1, 1, 1, 200),  # K >= 64: every FFT size up to 1024 fits
]


def _strategy_cases():
    for case in STRATEGY_SHAPES:
        n, c_in, c_out, taps, stride, dilation, groups, length = case
        shape = ConvShape(n, c_in, c_out, groups, taps, stride, dilation, length, 8)
        for strategy in _plan.FORWARD:
            if strategy.applies(shape):
                yield pytest.param(case, strategy, id=f"{case}-{strategy.name}")


@pytest.mark.parametrize("case, strategy", list(_strategy_cases()))
def test_each_strategy_on_edge_shapes(case, strategy):
    n, c_in, c_out, taps, stride, dilation, groups, length = case
    rng = np.random.default_rng(len(strategy.name) + taps)
    x = rng.standard_normal((n, c_in, length))
    weight = rng.standard_normal((c_out, c_in // groups, taps))
    hyper = {"stride": stride, "dilation": dilation, "groups": groups}
    reference = F.conv1d(torch.from_numpy(x), torch.from_numpy(weight), **hyper).numpy()
    ours = strategy.kernel(x, weight, ConvShape.of(x, weight, stride, dilation, groups))
    assert ours.shape == reference.shape and ours.flags.c_contiguous
    assert_close(ours, reference, magnitude_of(torch_conv1d, x, weight, None, **hyper), "float64")


@pytest.mark.parametrize("case, strategy", list(_strategy_cases()))
def test_each_strategy_in_tiny_windows(case, strategy, monkeypatch):
    """With tiny budgets every strategy runs all its loops: windows of one step or block, the
    FFT's weight spectrum per output channel, transformed again in every window."""
    for module, name, value in [(_dense, "ROW_BUDGET", 7), (_dense, "MIN_ROWS", 1), (_dense, "TAP_CACHE", 1),
                                (_dense, "MIN_TAP_STEPS", 1), (_dense, "TILE_CACHE", 1),
                                (_dense, "MIN_TILE_STEPS", 1), (_depthwise, "TAPS_WINDOW", 5),
                                (_depthwise, "TOEPLITZ_WINDOW", 3), (_fft, "SPECTRUM_BUDGET", 1),
                                (_fft, "WEIGHT_BUDGET", 1), (_fft, "MIN_BLOCKS", 1)]:
        monkeypatch.setattr(module, name, value)
    test_each_strategy_on_edge_shapes(case, strategy)


@settings(max_examples=60, deadline=None)
@given(conv_cases(allow_unbatched=False), st.data())
def test_every_strategy_matches_torch(case, data):
    """The cost model picks one strategy per shape; each must give every shape it applies to
    PyTorch's answer (float64, so that only the arithmetic's order differs)."""
    x, weight = case["x"], case["weight"]
    hyper = {k: case[k] for k in ("stride", "dilation", "groups")}
    span = (weight.shape[-1] - 1) * hyper["dilation"] + 1
    if x.shape[-1] < span:
        return
    reference = F.conv1d(torch.from_numpy(x), torch.from_numpy(weight), **hyper).numpy()
    shape = ConvShape.of(x, weight, hyper["stride"], hyper["dilation"], hyper["groups"])
    strategy = data.draw(st.sampled_from([s for s in _plan.FORWARD if s.applies(shape)]), label="strategy")
    ours = strategy.kernel(x, weight, shape)
    assert ours.shape == reference.shape and ours.flags.c_contiguous
    assert_close(ours, reference, magnitude_of(torch_conv1d, x, weight, None, **hyper), "float64")


TILES = next(s for s in _plan.FORWARD if s.kernel is _dense.channel_major_tiles)


@pytest.fixture
def tiles_on_two_threads(monkeypatch):
    """Every forward conv computed by the tiled strategy, in tiles of a few steps on two threads
    (BLAS on one thread each meanwhile, where its thread count can be set)."""
    monkeypatch.setattr(_plan, "choose", lambda shape: TILES)
    monkeypatch.setattr(_dense, "TILE_CACHE", 1)
    monkeypatch.setattr(_dense, "MIN_TILE_STEPS", 3)
    _threads.set_threads(2)
    blas = _threads.blas_threads()
    before = blas.get() if blas else None
    yield
    _threads.set_threads(None)
    assert (blas.get() if blas else None) == before  # BLAS's thread count is put back


# (N, C_in, C_out, K, stride, padding, dilation, groups, L)
TILED_LAYERS = [
    (1, 16, 16, 7, 1, 3, 1, 1, 300),  # DAC residual unit, shortened
    (2, 8, 8, 7, 1, 27, 9, 1, 250),  # dilation 9, batch 2
    (3, 6, 4, 3, 1, 1, 1, 1, 1),  # items shorter than a tile: several items per tile
    (1, 8, 16, 4, 2, 1, 1, 1, 301),  # DAC downsampler: strided
    (2, 12, 6, 5, 3, 2, 2, 3, 200),  # grouped, strided and dilated
    (1, 4, 8, 15, 1, 7, 1, 4, 400),  # depthwise with channel multiplier 2
]


@pytest.mark.parametrize("layer", TILED_LAYERS)
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "circular"])
def test_tiles_side_by_side_match_torch(layer, padding_mode, tiles_on_two_threads):
    n, c_in, c_out, taps, stride, padding, dilation, groups, length = layer
    rng = np.random.default_rng(taps + length)
    x = rng.standard_normal((n, c_in, length)).astype(np.float32)
    weight = rng.standard_normal((c_out, c_in // groups, taps)).astype(np.float32)
    bias = rng.standard_normal(c_out).astype(np.float32)
    hyper = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    if padding_mode != "zeros" and padding >= length:
        return
    layer_ = torch.nn.Conv1d(c_in, c_out, taps, padding_mode=padding_mode, **hyper)
    layer_.weight.data, layer_.bias.data = torch.from_numpy(weight), torch.from_numpy(bias)
    with torch.no_grad():
        reference = layer_(torch.from_numpy(x)).numpy()
    ours = torch_conv1d(x, weight, bias, padding_mode=padding_mode, **hyper)
    assert ours.dtype == np.float32 and ours.flags.c_contiguous
    assert_close(ours, reference, magnitude_of(torch_conv1d, x, weight, bias, padding_mode=padding_mode, **hyper),
                 "float32")


@pytest.mark.parametrize("layer", TILED_LAYERS)
@pytest.mark.parametrize("pad_mode", ["same", "valid", "pad"])
def test_tiles_side_by_side_in_mindspore_semantics(layer, pad_mode, tiles_on_two_threads):
    """ms_conv1d through the tiled strategy against torch on MindSpore's padding (the real
    MindSpore's agreement with that padding is test_numerics_mindspore.py's)."""
    n, c_in, c_out, taps, stride, padding, dilation, groups, length = layer
    rng = np.random.default_rng(taps)
    x = rng.standard_normal((n, c_in, length))
    weight = rng.standard_normal((c_out, c_in // groups, taps))
    pads = {"same": mindspore_same_padding(length, taps, stride, dilation), "valid": (0, 0), "pad": (padding, padding)}
    if length + sum(pads[pad_mode]) < (taps - 1) * dilation + 1:
        return
    hyper = {"stride": stride, "dilation": dilation, "groups": groups}
    reference = F.conv1d(F.pad(torch.from_numpy(x), pads[pad_mode]), torch.from_numpy(weight), **hyper).numpy()
    ours = ms_conv1d(x, weight[:, :, None, :], stride=stride, pad_mode=pad_mode,
                     padding=padding if pad_mode == "pad" else 0, dilation=dilation, group=groups)
    padded = np.pad(x, ((0, 0), (0, 0), pads[pad_mode]))
    assert_close(ours, reference, magnitude_of(torch_conv1d, padded, weight, None, **hyper), "float64")


def test_tiles_from_two_callers_at_once(tiles_on_two_threads):
    """Two threads in the tiled strategy at the same time (BLAS's thread count is the process's:
    the last one out puts it back) both get torch's answer."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 8, 500))
    weight = rng.standard_normal((8, 8, 7))
    reference = F.conv1d(torch.from_numpy(x), torch.from_numpy(weight), padding=3, dilation=1).numpy()
    results: list[np.ndarray] = []
    callers = [threading.Thread(target=lambda: results.extend(torch_conv1d(x, weight, padding=3) for _ in range(20)))
               for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(results) == 40
    for ours in results:
        assert_close(ours, reference, magnitude_of(torch_conv1d, x, weight, None, padding=3), "float64")


# float32 layers (N, C_in, C_out, K, stride, dilation, groups, L) where the cost model sends the
# benchmark's full-size shapes to Winograd or FFT: both round differently from a direct sum.
FAST_ALGORITHM_SHAPES = [
    (1, 64, 64, 3, 1, 1, 1, 900),  # HiFi-GAN resblock K3 (Winograd)
    (1, 48, 48, 11, 1, 5, 1, 700),  # HiFi-GAN resblock K11 d5 (FFT, 5 phase classes)
    (2, 96, 96, 128, 1, 1, 16, 300),  # wav2vec2 positional conv (FFT, 16 groups)
    (4, 32, 32, 39, 1, 1, 1, 512),  # InceptionTime K39 (FFT)
    (2, 40, 40, 5, 1, 8, 1, 400),  # TCN K5 d8 (Winograd, composite: 2 pieces)
    (1, 16, 24, 7, 2, 4, 1, 300),  # stride 2, dilation 4: two undilated phase classes
]


def _fast_cases():
    for case in FAST_ALGORITHM_SHAPES:
        n, c_in, c_out, taps, stride, dilation, groups, length = case
        shape = ConvShape(n, c_in, c_out, groups, taps, stride, dilation, length)
        for strategy in _plan.FORWARD:
            fast = strategy.name.startswith(("Winograd", "FFT"))
            if fast and strategy.applies(shape) and math.isfinite(strategy.cost(shape)):
                yield pytest.param(case, strategy, id=f"{case}-{strategy.name}")


@pytest.mark.parametrize("case, strategy", list(_fast_cases()))
def test_fast_algorithms_round_like_float32(case, strategy):
    """Winograd's and the FFT's float32 results stay within the float32 tolerance of PyTorch."""
    n, c_in, c_out, taps, stride, dilation, groups, length = case
    rng = np.random.default_rng(taps)
    x = rng.standard_normal((n, c_in, length)).astype(np.float32)
    weight = rng.standard_normal((c_out, c_in // groups, taps)).astype(np.float32)
    hyper = {"stride": stride, "dilation": dilation, "groups": groups}
    reference = F.conv1d(torch.from_numpy(x).double(), torch.from_numpy(weight).double(), **hyper).numpy()
    ours = strategy.kernel(x, weight, ConvShape.of(x, weight, stride, dilation, groups))
    assert ours.dtype == np.float32
    assert_close(ours, reference, magnitude_of(torch_conv1d, x, weight, None, **hyper), "float32")


@pytest.mark.parametrize(
    "shape",
    [
        # name: C_in, C_out, K, stride, padding, dilation, groups, L (the benchmark's layer shapes, shortened)
        (80, 384, 3, 1, 1, 1, 1, 300),  # Whisper conv1
        (1, 64, 10, 5, 0, 1, 1, 400),  # wav2vec2 feature encoder layer 0
        (96, 96, 128, 1, 64, 1, 16, 49),  # wav2vec2 positional conv
        (64, 64, 31, 1, 15, 1, 64, 200),  # Conformer depthwise
        (64, 128, 31, 2, 15, 1, 64, 200),  # depthwise with channel multiplier 2, strided
        (32, 32, 11, 1, 25, 5, 1, 500),  # HiFi-GAN resblock, dilation 5
    ],
)
def test_real_layer_shapes_match_torch(shape):
    c_in, c_out, taps, stride, padding, dilation, groups, length = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, c_in, length)).astype(np.float32)
    weight = rng.standard_normal((c_out, c_in // groups, taps)).astype(np.float32)
    bias = rng.standard_normal(c_out).astype(np.float32)
    hyper = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    reference = F.conv1d(torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias), **hyper).numpy()
    ours = torch_conv1d(x, weight, bias, **hyper)
    assert ours.dtype == np.float32 and ours.flags.c_contiguous
    assert_close(ours, reference, magnitude_of(torch_conv1d, x, weight, bias, **hyper), "float32")


def test_hifigan_upsample_matches_torch():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 64, 50)).astype(np.float32)
    weight = rng.standard_normal((64, 32, 16)).astype(np.float32)
    hyper = {"stride": 8, "padding": 4}
    reference = F.conv_transpose1d(torch.from_numpy(x), torch.from_numpy(weight), **hyper).numpy()
    ours = torch_conv_transpose1d(x, weight, **hyper)
    assert_close(ours, reference, magnitude_of(torch_conv_transpose1d, x, weight, None, **hyper), "float32")


def test_torch_same_padding_puts_the_odd_pad_on_the_right():
    """The seed doc says PyTorch pads the left first; torch 2.13 pads the right (framework wins)."""
    x = torch.arange(1.0, 6.0).reshape(1, 1, 5)
    weight = torch.tensor([[[1.0, 10.0]]])
    same = F.conv1d(x, weight, padding="same")
    right = F.conv1d(F.pad(x, (0, 1)), weight)
    assert torch.equal(same, right)
    ours = torch_conv1d(x.numpy(), weight.numpy(), padding="same")
    np.testing.assert_array_equal(ours, right.numpy())


def test_dtypes_of_results():
    x = np.ones((1, 2, 6))
    weight = np.ones((2, 2, 3))
    assert torch_conv1d(x, weight).dtype == np.float64
    assert torch_conv1d(x.astype(np.float32), weight.astype(np.float32)).dtype == np.float32
    assert torch_conv1d(x.astype(np.float16), weight.astype(np.float16)).dtype == np.float16
    bits = DTYPES["bfloat16"].from_float32(x.astype(np.float32))
    result = torch_conv1d(bits, DTYPES["bfloat16"].from_float32(weight.astype(np.float32)), dtype="bfloat16")
    assert result.dtype == np.uint16
    np.testing.assert_array_equal(DTYPES["bfloat16"].to_float32(result), np.full((1, 2, 4), 6.0, np.float32))
    unbatched = torch_conv_transpose1d(x[0], weight, stride=2)
    assert unbatched.shape == (2, 13)


def test_strided_views_are_read_and_never_written():
    """Non-contiguous inputs (channel-reversed, time-strided views) give the same numbers, and
    the result is a new array even where the conv is the identity (K=1, one weight of 1)."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((2, 6, 40)).astype(np.float32)
    x = base[:, ::-1, ::2]
    weight = rng.standard_normal((6, 3, 5)).astype(np.float32)[:, :, ::-1]
    ours = torch_conv1d(x, weight, groups=2, padding=2)
    reference = F.conv1d(torch.from_numpy(x.copy()), torch.from_numpy(weight.copy()), groups=2, padding=2).numpy()
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)
    identity = np.ones((6, 1, 1), np.float32)
    same = torch_conv1d(base, identity, groups=6)
    np.testing.assert_array_equal(same, base)
    assert not np.shares_memory(same, base)


X = np.ones((1, 4, 8), np.float32)
W = np.ones((4, 2, 3), np.float32)  # groups=2 layout for torch_conv1d
W4 = W[:, :, None, :]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: torch_conv1d(X, W, groups=3), "divisible"),
        (lambda: torch_conv1d(X, W, groups=1), "channels"),
        (lambda: torch_conv1d(X, W, groups=2, stride=2, padding="same"), "strided"),
        (lambda: torch_conv1d(X, W, groups=2, padding="full"), "padding"),
        (lambda: torch_conv1d(X, W, groups=2, padding=-1), "non-negative"),
        (lambda: torch_conv1d(X, W, groups=2, stride=0), "positive"),
        (lambda: torch_conv1d(X, W, groups=2, dilation=(1, 1)), "1-tuple"),
        (lambda: torch_conv1d(X, W, groups=2, padding=8, padding_mode="reflect"), "reflect"),
        (lambda: torch_conv1d(X, W, groups=2, padding=9, padding_mode="circular"), "circular"),
        (lambda: torch_conv1d(X, W, groups=2, padding_mode="mirror"), "padding_mode"),
        (lambda: torch_conv1d(X, W, groups=2, dilation=4), "kernel"),
        (lambda: torch_conv1d(X, np.ones((4, 2, 3, 1), np.float32), groups=2), "weight"),
        (lambda: torch_conv1d(X, W, np.ones(3, np.float32), groups=2), "bias"),
        (lambda: torch_conv1d(X, W.astype(np.float64), groups=2), "dtype"),
        (lambda: torch_conv1d(X.astype(np.int32), W, groups=2), "dtype"),
        (lambda: torch_conv1d(X.view(np.uint16), W, groups=2), "bfloat16"),
        (lambda: torch_conv1d(X, W, groups=2, dtype="bfloat16"), "dtype"),
        (lambda: torch_conv1d(X, W, groups=2, dtype="int8"), "not supported"),
        (lambda: torch_conv1d(X[0, 0], W, groups=2), "shape"),
        (lambda: torch_conv_transpose1d(X, W, stride=2, output_padding=2), "output_padding"),
        (lambda: torch_conv_transpose1d(X, W, groups=3), "divisible"),
        (lambda: torch_conv_transpose1d(X[:, :2], W), "channels"),
        (lambda: torch_conv_transpose1d(X[..., :1], np.ones((4, 2, 1), np.float32), padding=1), "too small"),
        (lambda: ms_conv1d(X, W, group=2), "1, K"),
        (lambda: ms_conv1d(X, W4, group=2, pad_mode="valid", padding=1), "pad_mode"),
        (lambda: ms_conv1d(X, W4, group=2, pad_mode="zeros"), "pad_mode"),
        (lambda: ms_conv1d(X, W4, group=3), "divisible"),
        (lambda: ms_conv1d(X, W4, group=2, stride=(1,)), "int"),
        (lambda: ms_conv1d(X[0], W4, group=2), "shape"),
        (lambda: ms_conv1d(X, W4, group=2, pad_mode="valid", dilation=4), "kernel"),
        (lambda: ms_conv1d_transpose(X, W), "1, K"),
        (lambda: ms_conv1d_transpose(X, W4, pad_mode="same", padding=1), "pad_mode"),
        (lambda: ms_conv1d_transpose(X, W4, group=3), "divisible"),
        (lambda: ms_conv1d_transpose(X[..., :1], np.ones((4, 2, 1, 1), np.float32), pad_mode="pad", padding=2),
         "too small"),
    ],
)
def test_invalid_hyperparameters_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("module", [convmigrate.numerics, conv, transpose], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted and not result.failed
