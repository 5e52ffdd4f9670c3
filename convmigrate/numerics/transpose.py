"""ConvTranspose1d as PyTorch and MindSpore compute it, in NumPy.

Both frameworks compute the same full transposed convolution (_kernels.col2im), of length
F = (L-1)*stride + (K-1)*dilation + 1, and differ only in which window of it they return.
Measured on torch 2.13 and mindspore 2.10 (tests re-check each rule):

| call                                   | window start | output length                          |
| -------------------------------------- | ------------ | -------------------------------------- |
| torch conv_transpose1d                 | padding      | F - 2*padding + output_padding         |
| mindspore Conv1dTranspose pad_mode=pad | padding      | F - 2*padding                          |
| mindspore pad_mode=same                | max(Kd-s,0)//2 | L*stride                             |
| mindspore pad_mode=valid               | 0            | max(F, L*stride)                       |

(Kd = (K-1)*dilation + 1.) Where the window runs past F the output is zero plus bias: that is
torch's output_padding, and MindSpore's valid/same modes when Kd < stride.
"""

from __future__ import annotations

import numpy as np

from convmigrate.numerics import _checks, _kernels
from convmigrate.numerics._precision import Precision, resolve_precision
from convmigrate.numerics.padding import effective_kernel


def torch_conv_transpose1d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | tuple[int] = 1,
    padding: int | tuple[int] = 0,
    output_padding: int | tuple[int] = 0,
    groups: int = 1,
    dilation: int | tuple[int] = 1,
    *,
    dtype: str | None = None,
) -> np.ndarray:
    """The output of `torch.nn.functional.conv_transpose1d` (nn.ConvTranspose1d) for these weights.

    Shapes: x (N, C_in, L) or unbatched (C_in, L); weight (C_in, C_out/groups, K); bias (C_out,)
    or None. Returns (N, C_out, L_out), or (C_out, L_out) for unbatched x, where
    L_out = (L-1)*stride - 2*padding + dilation*(K-1) + output_padding + 1 (must be >= 1).
    output_padding must be smaller than stride or than dilation.

    dtype and the returned array follow torch_conv1d's rules (bfloat16 as uint16 bits).

    >>> x = np.ones((1, 1, 3), np.float32)
    >>> torch_conv_transpose1d(x, np.ones((1, 1, 2), np.float32), stride=2)
    array([[[1., 1., 1., 1., 1., 1.]]], dtype=float32)
    """
    precision = resolve_precision(x, dtype)
    x = np.asarray(x)
    _checks.check_input(x, allow_unbatched=True)
    unbatched = x.ndim == 2
    weight = np.asarray(weight)
    if weight.ndim != 3:
        raise ValueError(f"weight must have shape (C_in, C_out/groups, K), got shape {weight.shape}")
    stride = _checks.as_int(stride, "stride", 1, allow_tuple=True)
    dilation = _checks.as_int(dilation, "dilation", 1, allow_tuple=True)
    padding = _checks.as_int(padding, "padding", 0, allow_tuple=True)
    output_padding = _checks.as_int(output_padding, "output_padding", 0, allow_tuple=True)
    groups = _checks.as_int(groups, "groups", 1, allow_tuple=False)
    if output_padding >= stride and output_padding >= dilation:
        raise ValueError(
            f"output_padding ({output_padding}) must be smaller than either stride ({stride}) "
            f"or dilation ({dilation})"
        )
    c_in, cg_out, taps = weight.shape
    if c_in % groups:
        raise ValueError(f"weight's {c_in} input channels are not divisible by groups={groups}")
    if x.shape[-2] != c_in:
        raise ValueError(f"weight of shape {weight.shape} expects x to have {c_in} channels, but x has {x.shape[-2]}")
    _checks.check_bias(bias, cg_out * groups)
    full = (x.shape[-1] - 1) * stride + effective_kernel(taps, dilation)
    length = full - 2 * padding + output_padding
    if length < 1:
        raise ValueError(f"the output length would be {length} (input length {x.shape[-1]}): output size is too small")

    xb = x[None] if unbatched else x
    out = _transpose(precision, xb, weight, bias, stride, dilation, groups, padding, length)
    return out[0] if unbatched else out


def ms_conv1d_transpose(
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
    """The output of `mindspore.nn.Conv1dTranspose(..., pad_mode=pad_mode)` for these weights.

    Shapes: x (N, C_in, L); weight as MindSpore stores it, (C_in, C_out/group, 1, K) (a 3-D
    weight is refused: insert the unit axis with weight[:, :, None, :]); bias (C_out,) or None.
    Returns (N, C_out, L_out), with Kd = (K-1)*dilation + 1:

    - pad_mode="same": L_out = L*stride; the full result cropped from max(Kd-stride, 0)//2.
    - pad_mode="valid": L_out = L*stride + max(Kd-stride, 0); nothing cropped.
    - pad_mode="pad": L_out = (L-1)*stride + Kd - 2*padding; `padding` cropped from each side.

    An L_out of 0 gives an empty result, as in MindSpore; a negative one raises ValueError.
    `padding` must be 0 unless pad_mode="pad". dtype and the returned array follow
    torch_conv1d's rules (bfloat16 as uint16 bits).

    >>> x = np.ones((1, 1, 3), np.float32)
    >>> ms_conv1d_transpose(x, np.ones((1, 1, 1, 3), np.float32), stride=2)
    array([[[1., 1., 2., 1., 2., 1.]]], dtype=float32)
    """
    precision = resolve_precision(x, dtype)
    args = _checks.mindspore_args(
        x, weight, stride, pad_mode, padding, dilation, group, "Conv1dTranspose", "C_in, C_out/group",
        "torch_conv_transpose1d",
    )
    c_in, cg_out, taps = args.weight.shape
    _checks.check_groups(c_in, cg_out * args.group, args.group, "group")
    if args.x.shape[1] != c_in:
        raise ValueError(f"weight of shape ({c_in}, {cg_out}, 1, K) expects x to have {c_in} channels, "
                         f"but x has {args.x.shape[1]}")
    _checks.check_bias(bias, cg_out * args.group)

    length_in, stride = args.x.shape[-1], args.stride
    span = effective_kernel(taps, args.dilation)
    if args.pad_mode == "same":
        start, length = max(span - stride, 0) // 2, length_in * stride
    elif args.pad_mode == "valid":
        start, length = 0, length_in * stride + max(span - stride, 0)
    else:
        start, length = args.padding, (length_in - 1) * stride + span - 2 * args.padding
    if length < 0:
        raise ValueError(f"the output length would be {length} (input length {length_in}): output size is too small")
    return _transpose(precision, args.x, args.weight, bias, stride, args.dilation, args.group, start, length)


def _transpose(
    precision: Precision,
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: int,
    dilation: int,
    groups: int,
    start: int,
    length: int,
) -> np.ndarray:
    """The full transposed conv of (N, C_in, L) x, window [start, start+length), plus bias."""
    xc = precision.load(x, "x")
    wc = precision.load(weight, "weight")
    bc = precision.load(bias, "bias")
    c_out = wc.shape[1] * groups
    if xc.shape[0] and c_out and length and xc.shape[-1]:
        # Past the end of the full result the window is zero (output_padding, or Kd < stride).
        out = _kernels.col2im(xc, wc, stride, dilation, groups, start, length)
    else:
        out = np.zeros((xc.shape[0], c_out, length), dtype=xc.dtype)
    if bc is not None:
        out += bc[:, None]
    return precision.store(out)
