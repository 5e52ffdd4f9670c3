"""convmigrate.numerics against the real MindSpore: nn.Conv1d and nn.Conv1dTranspose.

The weights are loaded into a freshly built MindSpore layer (CPU) and its output is compared
with ms_conv1d / ms_conv1d_transpose, for every pad_mode; either both refuse the call (ours
with ValueError) or both agree within the dtype-aware tolerance of test_numerics.py.
Building a MindSpore layer is slowish, so the sweeps draw few examples.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convmigrate.numerics import ms_conv1d, ms_conv1d_transpose
from convmigrate.numerics.padding import mindspore_same_padding
from tests.test_numerics import assert_close, conv_cases, magnitude_of

PAD_MODES = ["same", "valid", "pad"]


@st.composite
def ms_cases(draw, transposed: bool):
    case = draw(conv_cases(transposed=transposed, allow_unbatched=False))
    case["pad_mode"] = draw(st.sampled_from(PAD_MODES))
    case["padding"] = draw(st.integers(0, 3)) if case["pad_mode"] == "pad" else 0
    case["weight"] = case["weight"][:, :, None, :]  # MindSpore's (out|in, in|out/group, 1, K)
    case["group"] = case.pop("groups")
    return case


def ms_layer_output(ms, case: dict, transposed: bool, dtype: str) -> np.ndarray | None:
    """The MindSpore layer's output (float64) for the case's weights, or None if it refuses."""
    x, weight, bias = case["x"], case["weight"], case["bias"]
    ms_dtype = getattr(ms, dtype)
    hyper = {k: case[k] for k in ("stride", "pad_mode", "padding", "dilation", "group")}
    try:
        if transposed:
            layer = ms.nn.Conv1dTranspose(x.shape[1], weight.shape[1] * case["group"], weight.shape[-1],
                                          has_bias=bias is not None, dtype=ms_dtype, **hyper)
        else:
            layer = ms.nn.Conv1d(x.shape[1], weight.shape[0], weight.shape[-1], has_bias=bias is not None,
                                 dtype=ms_dtype, **hyper)
        layer.weight.set_data(ms.Tensor(weight.astype(dtype)))
        if bias is not None:
            layer.bias.set_data(ms.Tensor(bias.astype(dtype)))
        return layer(ms.Tensor(x.astype(dtype))).asnumpy().astype(np.float64)
    except (ValueError, RuntimeError, TypeError):
        return None


def check_case(ms, case: dict, transposed: bool, dtype: str) -> None:
    function = ms_conv1d_transpose if transposed else ms_conv1d
    hyper = {k: case[k] for k in ("stride", "pad_mode", "padding", "dilation", "group")}
    # Round the inputs to the dtype first, so both sides see identical values.
    x, weight, bias = (None if a is None else a.astype(dtype).astype(np.float64)
                       for a in (case["x"], case["weight"], case["bias"]))
    case = {**case, "x": x, "weight": weight, "bias": bias}
    reference = ms_layer_output(ms, case, transposed, dtype)
    if not transposed and reference is not None and reference.shape[-1] == 0:
        # A dilated kernel 1..stride samples longer than the padded input: MindSpore 2.10 returns
        # an empty output for some such shapes and fails inside oneDNN for others (it checks
        # only the undilated K against the input). convmigrate refuses them all.
        reference = None
    narrow = (None if a is None else a.astype(dtype) for a in (x, weight, bias))
    try:
        ours = function(*narrow, **hyper)
    except ValueError:
        assert reference is None, "convmigrate refused a call MindSpore accepts"
        return
    assert reference is not None, f"MindSpore refuses a call convmigrate answered with shape {ours.shape}"
    assert_close(ours, reference, magnitude_of(function, x, weight, bias, **hyper), dtype)


@settings(max_examples=40, deadline=None)
@given(ms_cases(transposed=False))
def test_conv1d_matches_mindspore(ms, case):
    check_case(ms, case, transposed=False, dtype="float32")


@settings(max_examples=40, deadline=None)
@given(ms_cases(transposed=True))
def test_conv1d_transpose_matches_mindspore(ms, case):
    check_case(ms, case, transposed=True, dtype="float32")


@settings(max_examples=15, deadline=None)
@given(ms_cases(transposed=False), ms_cases(transposed=True))
def test_float16_matches_mindspore(ms, conv_case, transpose_case):
    """MindSpore's CPU kernels take float16 (bfloat16 Conv2D is refused on CPU, so it is tested
    against torch only)."""
    check_case(ms, conv_case, transposed=False, dtype="float16")
    check_case(ms, transpose_case, transposed=True, dtype="float16")


@pytest.mark.parametrize("length, taps, stride, dilation", [(7, 3, 2, 1), (8, 4, 3, 1), (5, 3, 4, 2), (3, 5, 2, 1)])
def test_mindspore_same_with_stride_pads_like_tensorflow(ms, length, taps, stride, dilation):
    """pad_mode='same', stride > 1: ceil(L/s) outputs, total pad as TensorFlow, odd pad right."""
    rng = np.random.default_rng(length * taps)
    x = rng.standard_normal((1, 2, length)).astype(np.float32)
    weight = rng.standard_normal((3, 2, 1, taps)).astype(np.float32)
    layer = ms.nn.Conv1d(2, 3, taps, stride=stride, dilation=dilation, pad_mode="same")
    layer.weight.set_data(ms.Tensor(weight))
    expected = layer(ms.Tensor(x)).asnumpy()
    assert expected.shape[-1] == -(-length // stride)
    left, right = mindspore_same_padding(length, taps, stride, dilation)
    explicit = np.pad(x, ((0, 0), (0, 0), (left, right)))
    ours = ms_conv1d(explicit, weight, stride=stride, dilation=dilation, pad_mode="valid")
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pad_mode, padding", [("same", 0), ("valid", 0), ("pad", 1)])
@pytest.mark.parametrize("length, taps, stride, dilation", [(5, 3, 2, 1), (4, 2, 3, 1), (3, 4, 2, 2), (6, 1, 4, 1)])
def test_mindspore_transpose_output_lengths(ms, pad_mode, padding, length, taps, stride, dilation):
    """Conv1dTranspose lengths: same L*s; valid L*s + max(Kd-s, 0); pad (L-1)*s + Kd - 2p."""
    span = (taps - 1) * dilation + 1
    expected = {
        "same": length * stride,
        "valid": length * stride + max(span - stride, 0),
        "pad": (length - 1) * stride + span - 2 * padding,
    }[pad_mode]
    layer = ms.nn.Conv1dTranspose(2, 2, taps, stride=stride, pad_mode=pad_mode, padding=padding, dilation=dilation)
    x = np.ones((1, 2, length), np.float32)
    assert layer(ms.Tensor(x)).shape[-1] == expected
    weight = layer.weight.asnumpy()
    assert ms_conv1d_transpose(x, weight, stride=stride, pad_mode=pad_mode, padding=padding,
                               dilation=dilation).shape == (1, 2, expected)
