"""Checking a translated conv with the bundled numerics before anyone sees it.

The source layer and the translated layer (pre_pad, constructor kwargs, post_crop) run on the
same random weights and inputs over several input lengths; their largest difference becomes
`spec.verified`. A translation that does not reproduce its source raises
UnverifiedTranslationError: that is a bug in a rule, and it is never printed as a result.

Channels are reduced to at most 2 per group (the group count is kept): padding, stride,
dilation and groups decide where each output sample reads, not how many channels there are.
"""

from __future__ import annotations

import numpy as np

from convmigrate import numerics
from convmigrate.layers.spec import LayerSpec, LayerTranslationError, PostCrop, PrePad, UnverifiedTranslationError
from convmigrate.limits import LAYER_CHECK_MAX_ELEMENTS
from convmigrate.vocab import Framework, LayerKind

# torch.nn.functional.pad / mindspore.ops.pad mode -> numpy.pad mode.
_NUMPY_PAD = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
TOLERANCE = 1e-4  # relative to the output's largest magnitude; a wrong rule is off by O(1)
LENGTH_COUNT = 5


def apply_pre_pad(x: np.ndarray, pad: PrePad | None) -> np.ndarray:
    if pad is None or pad.left == pad.right == 0:
        return x
    widths = [(0, 0)] * (x.ndim - 1) + [(pad.left, pad.right)]
    if pad.mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=pad.value)
    return np.pad(x, widths, mode=_NUMPY_PAD[pad.mode])


def apply_post_crop(y: np.ndarray, crop: PostCrop | None, bias: np.ndarray | None) -> np.ndarray:
    if crop is None:
        return y
    y = y[..., crop.left : y.shape[-1] - max(crop.right, 0)]
    if crop.right < 0:  # columns beyond the full output hold only the bias
        tail = np.zeros(y.shape[:-1] + (-crop.right,), dtype=y.dtype)
        if bias is not None:
            tail += bias.reshape(1, -1, 1).astype(y.dtype)
        y = np.concatenate([y, tail], axis=-1)
    return y


def _run(spec: LayerSpec, framework: Framework, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """The layer as `framework` builds it (kwargs only; the caller adds pre_pad/post_crop)."""
    kw = spec.kwargs(framework)
    if framework is Framework.TORCH:
        if spec.kind is LayerKind.CONV1D:
            return numerics.torch_conv1d(x, w, b, stride=kw["stride"], padding=kw["padding"], dilation=kw["dilation"],
                                         groups=kw["groups"], padding_mode=kw["padding_mode"])
        return numerics.torch_conv_transpose1d(x, w, b, stride=kw["stride"], padding=kw["padding"],
                                               output_padding=kw["output_padding"], groups=kw["groups"],
                                               dilation=kw["dilation"])
    w4 = w[:, :, None, :]  # (A, B, K) -> (A, B, 1, K): MindSpore's nn layout
    conv = numerics.ms_conv1d if spec.kind is LayerKind.CONV1D else numerics.ms_conv1d_transpose
    return conv(x, w4, b, stride=kw["stride"], pad_mode=kw["pad_mode"], padding=kw["padding"],
                dilation=kw["dilation"], group=kw["group"])


def verification_lengths(spec: LayerSpec) -> list[int]:
    """Input lengths that exercise every remainder mod stride and satisfy both pads' limits."""
    kw = spec.torch
    stride, dk = kw["stride"], kw["dilation"] * (kw["kernel_size"] - 1) + 1
    if spec.kind is LayerKind.CONV1D:
        pads = spec.pre_pad.left + spec.pre_pad.right if spec.pre_pad else 0
        first = max(dk + 1, pads + 2, 4)  # reflect needs pad < L; every conv needs L + pads >= dk
    else:
        first = 2 + -(-2 * max(kw["padding"], spec.mindspore["padding"]) // stride)
    # Consecutive lengths cover every remainder mod stride (up to 4); one long input besides.
    lengths = [first + i for i in range(max(min(stride, LENGTH_COUNT - 1), 2) + 1)] + [2 * first + 7]
    if spec.length_multiple:
        m = spec.length_multiple
        lengths = [m * (-(-first // m) + i) for i in range(LENGTH_COUNT)]
    return lengths


def _count(value: object) -> int:
    return value if isinstance(value, int) else 0  # "same" / "valid": the span covers them


def check_size(spec: LayerSpec, channels: int, lengths: list[int]) -> None:
    """Refuse hyperparameters whose check would build arrays beyond LAYER_CHECK_MAX_ELEMENTS
    (a layers JSON may claim a dilation of 2**40): sized from the numbers, before allocating."""
    kw = spec.torch
    longest = max(lengths)
    samples = longest + kw["dilation"] * (kw["kernel_size"] - 1) + 1 \
        + (spec.pre_pad.left + spec.pre_pad.right if spec.pre_pad else 0) \
        + 2 * max(_count(kw["padding"]), _count(spec.mindspore.get("padding", 0)))
    if spec.kind is LayerKind.CONV_TRANSPOSE1D:  # the output grows with the stride
        samples += (longest - 1) * kw["stride"] + _count(kw.get("output_padding", 0))
    if channels * samples > LAYER_CHECK_MAX_ELEMENTS:
        raise LayerTranslationError(
            f"{spec.name}: kernel_size {kw['kernel_size']}, dilation {kw['dilation']}, stride {kw['stride']}, padding "
            f"{kw['padding']!r} and {kw['groups']} groups need arrays of {channels * samples:,} values to check; "
            f"at most {LAYER_CHECK_MAX_ELEMENTS:,} (limits.LAYER_CHECK_MAX_ELEMENTS)")


def verify_spec(spec: LayerSpec, seed: int = 0) -> LayerSpec:
    """Run source and translation with the bundled conv; set spec.verified or raise.

    Example:
        >>> from convmigrate.layers import translate_kwargs
        >>> spec = translate_kwargs(LayerKind.CONV1D, Framework.TORCH, {"in_channels": 2, "out_channels": 4,
        ...                                                             "kernel_size": 3, "padding": 1})
        >>> verify_spec(spec).verified < 1e-5
        True
    """
    if not spec.kind.is_conv:
        return spec
    kw = spec.torch
    groups = kw["groups"]
    cin = groups * min(kw["in_channels"] // groups, 2)
    cout = groups * min(kw["out_channels"] // groups, 2)
    lengths = verification_lengths(spec)
    check_size(spec, max(cin, cout), lengths)
    rng = np.random.default_rng(seed)
    shape = (cout, cin // groups, kw["kernel_size"]) if spec.kind is LayerKind.CONV1D else (cin, cout // groups, kw["kernel_size"])
    w = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if kw["bias"] else None
    worst = 0.0
    for length in lengths:
        x = rng.standard_normal((1, cin, length)).astype(np.float32)
        expected = np.asarray(_run(spec, spec.source, x, w, b))
        got = apply_post_crop(np.asarray(_run(spec, spec.target, apply_pre_pad(x, spec.pre_pad), w, b)), spec.post_crop, b)
        if got.shape != expected.shape:
            raise UnverifiedTranslationError(
                f"{spec.name}: translated {spec.kind.value} gives shape {got.shape} for input length {length}, "
                f"the {spec.source.value} layer {expected.shape}; this is a bug in convmigrate's layer rules, please report it"
            )
        error = float(np.max(np.abs(got.astype(np.float64) - expected), initial=0.0))
        scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
        if error > TOLERANCE * scale:
            raise UnverifiedTranslationError(
                f"{spec.name}: translated {spec.kind.value} differs from the {spec.source.value} layer by {error:.3g} at "
                f"input length {length}; this is a bug in convmigrate's layer rules, please report it"
            )
        worst = max(worst, error)
    spec.verified, spec.verified_lengths = worst, lengths
    return spec
