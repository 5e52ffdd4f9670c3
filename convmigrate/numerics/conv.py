"""Conv1d as PyTorch's nn.Conv1d and as MindSpore's nn.Conv1d compute it, in NumPy.

Both functions pad the input by their framework's rules (padding.py), then run the same
grouped cross-correlation (_kernels.py). Neither calls torch or MindSpore.
"""

from __future__ import annotations

import numpy as np

from convmigrate.numerics import _checks, _kernels
from convmigrate.numerics._precision import Precision, resolve_precision
from convmigrate.numerics.padding import (
    PADDING_MODES,
    effective_kernel,
    mindspore_same_padding,
    pad_signal,
    torch_same_padding,
)


def torch_conv1d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | tuple[int] = 1,
    padding: int | tuple[int] | str = 0,
    dilation: int | tuple[int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    dtype: str | None = None,
) -> np.ndarray:
    """The output of `torch.nn.Conv1d(..., padding_mode=padding_mode)` for these weights.

    Shapes: x (N, C_in, L) or unbatched (C_in, L); weight (C_out, C_in/groups, K); bias (C_out,)
    or None. Returns (N, C_out, L_out), or (C_out, L_out) for unbatched x, where
    L_out = (L + left + right - dilation*(K-1) - 1) // stride + 1.

    padding: an int or 1-tuple p (p on each side), "valid" (none) or "same" (dilation*(K-1) in
    total, the odd one on the right; stride must be 1). padding_mode: "zeros", "reflect",
    "replicate" or "circular", as torch.nn.functional.pad does them.

    dtype: the element type of x, weight and bias, which must all be stored alike. None infers
    float16/float32/float64 from x; bfloat16 tensors are uint16 bit arrays with
    dtype="bfloat16". float32 and float64 are computed in their own precision; float16 and
    bfloat16 in float32 and rounded once. The result is a new C-contiguous array stored like x.

    Raises ValueError for what PyTorch refuses: channels not divisible by groups, padding="same"
    with stride > 1, a kernel longer than the padded input, reflect padding >= L, ...

    >>> x = np.arange(8, dtype=np.float32).reshape(1, 2, 4)
    >>> torch_conv1d(x, np.ones((1, 2, 3), np.float32), padding=1)
    array([[[10., 18., 24., 18.]]], dtype=float32)
    """
    precision = resolve_precision(x, dtype)
    x = np.asarray(x)
    _checks.check_input(x, allow_unbatched=True)
    unbatched = x.ndim == 2
    weight = np.asarray(weight)
    if weight.ndim != 3:
        raise ValueError(f"weight must have shape (C_out, C_in/groups, K), got shape {weight.shape}")
    stride = _checks.as_int(stride, "stride", 1, allow_tuple=True)
    dilation = _checks.as_int(dilation, "dilation", 1, allow_tuple=True)
    groups = _checks.as_int(groups, "groups", 1, allow_tuple=False)
    c_out, cg_in, taps = weight.shape
    if c_out % groups:
        raise ValueError(f"weight's {c_out} output channels are not divisible by groups={groups}")
    c_in = x.shape[-2]
    if c_in != cg_in * groups:
        raise ValueError(
            f"with groups={groups}, weight of shape {weight.shape} expects x to have "
            f"{cg_in * groups} channels, but x has {c_in}"
        )
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {', '.join(PADDING_MODES)}, got {padding_mode!r}")

    if isinstance(padding, str):
        if padding == "valid":
            left = right = 0
        elif padding == "same":
            if stride != 1:
                raise ValueError("padding='same' is not supported for strided convolutions")
            left, right = torch_same_padding(taps, dilation)
        else:
            raise ValueError(f"padding must be an int, a 1-tuple, 'valid' or 'same', got {padding!r}")
    else:
        left = right = _checks.as_int(padding, "padding", 0, allow_tuple=True)
    _checks.check_bias(bias, c_out)

    xb = x[None] if unbatched else x
    out = _convolve(precision, xb, weight, bias, (left, right), padding_mode, stride, dilation, groups)
    return out[0] if unbatched else out


def ms_conv1d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int = 1,
    pad_mode: str = "same",
    padding: int = 0,
    dilation: int = 1,
    group: int = 1,
    *,
    dtype: str | None = None,
) -> np.ndarray:
    """The output of `mindspore.nn.Conv1d(..., pad_mode=pad_mode)` for these weights.

    Shapes: x (N, C_in, L) (MindSpore takes no unbatched input); weight as MindSpore stores it,
    (C_out, C_in/group, 1, K) (a 3-D PyTorch-layout weight is refused: insert the unit axis with
    weight[:, :, None, :]); bias (C_out,) or None. Returns (N, C_out, L_out):

    - pad_mode="same": L_out = ceil(L / stride). Zeros pad TensorFlow-style:
      total = max((L_out-1)*stride + (K-1)*dilation + 1 - L, 0), total//2 on the left, the odd
      one on the right. `padding` must be 0.
    - pad_mode="valid": no padding, L_out = (L - (K-1)*dilation - 1) // stride + 1. padding 0.
    - pad_mode="pad": `padding` zeros on each side.

    dtype and the returned array follow torch_conv1d's rules (bfloat16 as uint16 bits).

    Raises ValueError for what MindSpore refuses: padding != 0 outside pad_mode="pad", channels
    not divisible by group, a kernel longer than the padded input, a weight not 4-D, ...
    Also when only the dilated kernel is longer than the padded input: MindSpore 2.10 checks the
    undilated K and then returns an empty output or fails inside oneDNN, depending on shape.

    >>> x = np.arange(8, dtype=np.float32).reshape(1, 2, 4)
    >>> ms_conv1d(x, np.ones((1, 2, 1, 2), np.float32), stride=2)  # same: pads 0 left, 0 right
    array([[[10., 18.]]], dtype=float32)
    """
    precision = resolve_precision(x, dtype)
    args = _checks.mindspore_args(
        x, weight, stride, pad_mode, padding, dilation, group, "Conv1d", "C_out, C_in/group", "torch_conv1d"
    )
    c_out, cg_in, taps = args.weight.shape
    c_in = args.x.shape[1]
    _checks.check_groups(c_in, c_out, args.group, "group")
    if c_in != cg_in * args.group:
        raise ValueError(
            f"x has {c_in} channels but weight of shape (C_out, {cg_in}, 1, K) with group={args.group} "
            f"expects {cg_in * args.group}"
        )
    _checks.check_bias(bias, c_out)
    if args.pad_mode == "same":
        pads = mindspore_same_padding(args.x.shape[-1], taps, args.stride, args.dilation)
    else:
        pads = (args.padding, args.padding)
    return _convolve(precision, args.x, args.weight, bias, pads, "zeros", args.stride, args.dilation, args.group)


def _convolve(
    precision: Precision,
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    pads: tuple[int, int],
    mode: str,
    stride: int,
    dilation: int,
    groups: int,
) -> np.ndarray:
    """Pad (N, C_in, L) x, correlate, add bias, round to the storage dtype: (N, C_out, L_out)."""
    xc = precision.load(x, "x")
    wc = precision.load(weight, "weight")
    bc = precision.load(bias, "bias")
    xp = pad_signal(xc, pads[0], pads[1], mode)
    _checks.check_fits(xp.shape[-1], effective_kernel(wc.shape[-1], dilation))
    if xp.shape[0] == 0 or wc.shape[0] == 0:  # empty batch or no output channels
        length = (xp.shape[-1] - effective_kernel(wc.shape[-1], dilation)) // stride + 1
        return precision.store(np.zeros((xp.shape[0], wc.shape[0], length), dtype=xc.dtype))
    out = _kernels.correlate(xp, wc, stride, dilation, groups)
    if bc is not None:
        out += bc[:, None]
    return precision.store(out)
