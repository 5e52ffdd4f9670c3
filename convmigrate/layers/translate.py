"""Layer hyperparameter translation, PyTorch <-> MindSpore, by the rules in tables.py.

`translate_layer` returns a LayerSpec that has been checked by the bundled numerics (convs);
the rule functions here only decide, they never verify and never print.

Conv1d reduces every padding form to the (left, right, fill) padding of the input; the
transposed conv reduces every form to the window of its full output that it keeps:

    full output of a transposed conv: (L - 1) * s + dk columns, dk = d * (K - 1) + 1
    torch  padding p, output_padding op : [p, (L - 1) * s + dk - p + op)
    MindSpore pad_mode='pad', padding q : [q, (L - 1) * s + dk - q)
    MindSpore pad_mode='valid'          : [0, (L - 1) * s + max(dk, s))
    MindSpore pad_mode='same', c=dk-s   : [c // 2, (L - 1) * s + c // 2 + s)   (c >= 0; else [0, .. + s))

Two layers agree when their windows agree; otherwise the target keeps a wider window and the
output is cropped (post_crop, exact=False). Columns past the full output hold only the bias.
"""

from __future__ import annotations

from typing import Any

from convmigrate.layers.parse import bind
from convmigrate.layers.spec import LayerSpec, LayerTranslationError, PostCrop, PrePad
from convmigrate.layers.tables import (
    MS_PAD_MODES,
    MS_TO_TORCH_CONV_RULES,
    PAD_MODE_OF_PADDING_MODE,
    RENAMES,
    SIGNATURES,
    TORCH_PADDING_MODES,
    TORCH_TO_MS_CONV_RULES,
)
from convmigrate.vocab import Framework, LayerKind

TORCH, MS = Framework.TORCH, Framework.MINDSPORE


def _int1(value: Any, name: str, where: str) -> int:
    """An int, or PyTorch's 1-tuple spelling of one: (3,) -> 3."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int):
        raise LayerTranslationError(f"{where}: {name} must be an int, got {value!r}")
    return value


def _check(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise LayerTranslationError(f"{where}: {message}")


def _dk(kernel: int, dilation: int) -> int:
    """The span of a dilated kernel: d * (K - 1) + 1."""
    return dilation * (kernel - 1) + 1


def _same_split(total: int) -> tuple[int, int]:
    # Both frameworks put the odd element on the right (measured, both 'same' modes).
    return total // 2, total - total // 2


# --- kwargs normalization and validation, per source framework ---------------------------


def _normalize_torch_conv(kind: LayerKind, kw: dict[str, Any], where: str) -> dict[str, Any]:
    kw = dict(kw)
    for name in ("kernel_size", "stride", "dilation") + (("output_padding",) if kind is LayerKind.CONV_TRANSPOSE1D else ()):
        kw[name] = _int1(kw[name], name, where)
    if isinstance(kw["padding"], str):
        _check(kind is LayerKind.CONV1D and kw["padding"] in ("same", "valid"), where,
               f"padding={kw['padding']!r}: only Conv1d accepts the strings 'same' and 'valid'")
    else:
        kw["padding"] = _int1(kw["padding"], "padding", where)
    _check(kw["padding_mode"] in TORCH_PADDING_MODES, where,
           f"padding_mode must be one of {', '.join(TORCH_PADDING_MODES)}, got {kw['padding_mode']!r}")
    _check(isinstance(kw["bias"], bool), where, f"bias must be True or False, got {kw['bias']!r}")
    # torch's own checks, here too: torch is an optional extra (_validate_with_torch may not run).
    channels = (kw["groups"], kw["in_channels"], kw["out_channels"])
    if all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in channels):
        _check(channels[1] % channels[0] == 0 and channels[2] % channels[0] == 0, where,
               f"groups={channels[0]} must divide in_channels={channels[1]} and out_channels={channels[2]}")
    _check(kw["padding"] != "same" or kw["stride"] == 1, where, "padding='same' is not supported for strided convolutions")
    return kw


def _normalize_ms_conv(kw: dict[str, Any], where: str) -> dict[str, Any]:
    kw = dict(kw)
    # MindSpore 2.10 takes plain ints only: padding=(1,) and padding=(1, 2) are TypeErrors.
    for name in ("kernel_size", "stride", "padding", "dilation", "group"):
        value = kw[name]
        _check(isinstance(value, int) and not isinstance(value, bool), where, f"{name} must be an int, got {value!r}")
    _check(kw["pad_mode"] in MS_PAD_MODES, where, f"pad_mode must be one of {', '.join(MS_PAD_MODES)}, got {kw['pad_mode']!r}")
    _check(kw["padding"] == 0 or kw["pad_mode"] == "pad", where,
           f"padding={kw['padding']} needs pad_mode='pad' (MindSpore refuses a nonzero padding with pad_mode={kw['pad_mode']!r})")
    _check(kw["padding"] >= 0, where, "padding must be >= 0")
    for name in ("kernel_size", "stride", "dilation", "group", "in_channels", "out_channels"):
        _check(kw[name] >= 1, where, f"{name} must be >= 1")
    _check(kw["in_channels"] % kw["group"] == 0 and kw["out_channels"] % kw["group"] == 0, where,
           f"group={kw['group']} must divide in_channels={kw['in_channels']} and out_channels={kw['out_channels']}")
    _check(isinstance(kw["has_bias"], bool), where, f"has_bias must be True or False, got {kw['has_bias']!r}")
    return kw


def _validate_with_torch(kind: LayerKind, kw: dict[str, Any], where: str) -> None:
    """Construct the layer on torch's meta device: torch's own checks, no memory for the weights.

    Without torch installed (it is an optional extra) only our own checks above apply.
    """
    try:
        import torch
    except ModuleNotFoundError:
        return

    cls = getattr(torch.nn, SIGNATURES[TORCH][kind].class_name)
    try:
        cls(**kw, device="meta")
    except (TypeError, ValueError, RuntimeError, AssertionError) as exc:
        raise LayerTranslationError(f"{where}: torch refuses these hyperparameters: {exc}") from None


# --- renames and default differences ----------------------------------------------------


def _renamed(kind: LayerKind, source: Framework, kw: dict[str, Any]) -> dict[str, Any]:
    """The target kwargs that cross by a plain rename (and value map) from the source kwargs."""
    out = {}
    for torch_name, ms_name, to_ms, to_torch in RENAMES[kind]:
        src, dst, convert = (torch_name, ms_name, to_ms) if source is TORCH else (ms_name, torch_name, to_torch)
        out[dst] = convert(kw[src]) if convert else kw[src]
    return out


def _default_differences(kind: LayerKind, source: Framework, src_kw: dict, dst_kw: dict) -> list[str]:
    """Where the source kept a default and the target's own default for that parameter differs."""
    target = MS if source is TORCH else TORCH
    src_defaults = SIGNATURES[source][kind].defaults
    dst_sig = SIGNATURES[target][kind]
    pairs = [(t, m) if source is TORCH else (m, t) for t, m, _, _ in RENAMES[kind]]
    if kind.is_conv:
        pairs.append(("padding", "pad_mode") if source is TORCH else ("pad_mode", "padding"))
    found = []
    for src_name, dst_name in pairs:
        if src_kw[src_name] != src_defaults[src_name]:
            continue
        dst_default = dst_sig.defaults[dst_name]
        if dst_kw[dst_name] != dst_default:
            found.append(
                f"{src_name}: {source.value}'s default {src_kw[src_name]!r} is {dst_name}={dst_kw[dst_name]!r} in "
                f"{target.value}, whose default is {dst_name}={dst_default!r}; keep it explicit"
            )
    return found


def _complete(kind: LayerKind, framework: Framework, kw: dict[str, Any]) -> dict[str, Any]:
    return {name: kw.get(name, default) for name, default in SIGNATURES[framework][kind].params}


# --- Conv1d -------------------------------------------------------------------------------


def _torch_conv1d_to_ms(kw: dict[str, Any]) -> dict[str, Any]:
    kernel, dilation, padding, mode = kw["kernel_size"], kw["dilation"], kw["padding"], kw["padding_mode"]
    form = padding if isinstance(padding, str) else "int"
    left, right = {"int": (padding, padding), "valid": (0, 0)}.get(form) or _same_split(dilation * (kernel - 1))
    rule = TORCH_TO_MS_CONV_RULES[(form, mode)]
    ms = _renamed(LayerKind.CONV1D, TORCH, kw)
    result: dict[str, Any] = {"pre_pad": None, "exact": True, "note": ""}
    if rule == "pad" and left == 0:
        rule = "valid"
    if rule == "pre_pad" and left == right == 0:
        rule = "valid"
    if rule == "pad":
        ms.update(pad_mode="pad", padding=left)
        result["note"] = "zero padding on both sides: pad_mode='pad' with the same padding"
    elif rule == "valid":
        ms.update(pad_mode="valid", padding=0)
        result["note"] = "no padding: pad_mode='valid' (MindSpore's default 'same' would pad)"
    elif rule == "same":
        ms.update(pad_mode="same", padding=0)
        result["note"] = (f"padding='same' at stride 1: both frameworks pad {left + right} in total, the odd "
                          "element on the right; pad_mode='same' is identical")
    else:  # pre_pad: MindSpore's conv pads only with zeros
        ms.update(pad_mode="valid", padding=0)
        result["pre_pad"] = PrePad(PAD_MODE_OF_PADDING_MODE[mode], left, right)
        result["note"] = (f"padding_mode={mode!r}: MindSpore's Conv1d pads only with zeros, so the input is padded "
                          f"explicitly (mindspore.ops.pad, {left} left, {right} right, mode {PAD_MODE_OF_PADDING_MODE[mode]!r}) "
                          "before a pad_mode='valid' conv; the weights load unchanged")
    result["mindspore"] = ms
    return result


def _ms_conv1d_to_torch(kw: dict[str, Any]) -> dict[str, Any]:
    kernel, stride, dilation, pad_mode = kw["kernel_size"], kw["stride"], kw["dilation"], kw["pad_mode"]
    torch_kw = _renamed(LayerKind.CONV1D, MS, kw)
    torch_kw["padding_mode"] = "zeros"
    result: dict[str, Any] = {"pre_pad": None, "exact": True, "note": ""}
    rule = MS_TO_TORCH_CONV_RULES[(pad_mode, stride > 1)]
    if rule == "padding":
        if pad_mode == "pad":
            torch_kw["padding"] = kw["padding"]
            result["note"] = "pad_mode='pad': zero padding on both sides, torch padding=p"
        elif pad_mode == "valid":
            torch_kw["padding"] = 0
            result["note"] = "pad_mode='valid': no padding, torch padding=0"
        else:
            left, right = _same_split(dilation * (kernel - 1))
            torch_kw["padding"] = left if left == right else "same"
            result["note"] = (f"pad_mode='same' at stride 1 pads {left} left, {right} right"
                              + ("" if left == right else "; torch padding='same' splits it the same way (odd element right)"))
    else:  # same_strided
        total = max(_dk(kernel, dilation) - stride, 0)
        left, right = _same_split(total)
        torch_kw["padding"] = 0  # the pad is explicit: the code recomputes it per call
        if total:
            result["pre_pad"] = PrePad("constant", left, right)
        result.update(exact=False, length_multiple=stride)
        result["note"] = (
            f"pad_mode='same' with stride {stride} pads max((ceil(L/{stride}) - 1) * {stride} + {_dk(kernel, dilation)} - L, 0) "
            f"in total (odd element right): it depends on the input length L. This translation is exact only "
            f"for L divisible by {stride} (pad {left} left, {right} right); for other lengths pad the input "
            "per call as the code shows"
        )
    result["torch"] = torch_kw
    return result


# --- ConvTranspose1d: windows of the full output ----------------------------------------


def _ms_transpose_window(pad_mode: str, padding: int, dk: int, stride: int) -> tuple[int, int]:
    """(start, end offset) of MindSpore's output in the full output, end = (L - 1) * s + offset."""
    if pad_mode == "pad":
        return padding, dk - padding
    if pad_mode == "valid":
        return 0, max(dk, stride)
    crop = dk - stride  # 'same': output length L * s, odd crop element on the right (measured)
    start = crop // 2 if crop >= 0 else 0
    return start, start + stride


def _crop(target: tuple[int, int], source: tuple[int, int]) -> PostCrop | None:
    left, right = source[0] - target[0], target[1] - source[1]
    return None if left == right == 0 else PostCrop(left, right)


def _torch_transpose_to_ms(kw: dict[str, Any]) -> dict[str, Any]:
    kernel, stride, dilation = kw["kernel_size"], kw["stride"], kw["dilation"]
    padding, output_padding = kw["padding"], kw["output_padding"]
    dk = _dk(kernel, dilation)
    want = (padding, dk - padding + output_padding)
    candidates = [("valid", 0), ("pad", padding), ("same", 0)] + [("pad", q) for q in range(padding - 1, -1, -1)]
    ms = _renamed(LayerKind.CONV_TRANSPOSE1D, TORCH, kw)
    best = None
    for pad_mode, q in candidates:
        window = _ms_transpose_window(pad_mode, q, dk, stride)
        crop = _crop(window, want)
        if crop is None:
            best = (pad_mode, q, None)
            break
        if crop.left >= 0 and crop.right >= 0 and (best is None or crop.left + crop.right < best[2].left + best[2].right):
            best = (pad_mode, q, crop)
    if best is None:  # output_padding beyond padding and beyond MindSpore's widest window:
        # keep the window that ends latest; the missing columns hold only the bias.
        pad_mode = "valid" if stride > dk else "pad"
        best = (pad_mode, 0, _crop(_ms_transpose_window(pad_mode, 0, dk, stride), want))
    pad_mode, q, crop = best
    ms.update(pad_mode=pad_mode, padding=q)
    result: dict[str, Any] = {"mindspore": ms, "pre_pad": None, "post_crop": crop, "exact": crop is None}
    if crop is None:
        result["note"] = (f"torch keeps columns [{want[0]}, (L-1)*{stride} + {want[1]}) of the full transposed output; "
                          f"pad_mode={pad_mode!r}" + (f", padding={q}" if pad_mode == "pad" else "") + " keeps the same")
    else:
        result["note"] = _transpose_crop_note("output_padding", output_padding, crop)
    return result


def _transpose_crop_note(what: str, value: Any, crop: PostCrop) -> str:
    parts = []
    if crop.left:
        parts.append(f"drop the first {crop.left} output column(s)")
    if crop.right > 0:
        parts.append(f"drop the last {crop.right} output column(s)")
    if crop.right < 0:
        parts.append(f"append {-crop.right} column(s) holding only the bias (zeros without bias)")
    return (f"{what}={value!r} has no static equivalent in the target constructor: the translated layer "
            f"computes a wider window; {' and '.join(parts)} to match (post_crop)")


def _ms_transpose_to_torch(kw: dict[str, Any]) -> dict[str, Any]:
    kernel, stride, dilation = kw["kernel_size"], kw["stride"], kw["dilation"]
    dk = _dk(kernel, dilation)
    want = _ms_transpose_window(kw["pad_mode"], kw["padding"], dk, stride)
    limit = max(stride, dilation)  # torch: output_padding < max(stride, dilation)
    torch_kw = _renamed(LayerKind.CONV_TRANSPOSE1D, MS, kw)
    torch_kw["padding_mode"] = "zeros"
    best = None
    for padding in range(want[0], -1, -1):
        output_padding = max(0, want[1] - (dk - padding))
        if output_padding < limit:
            best = (padding, output_padding, _crop((padding, dk - padding + output_padding), want))
            break
    if best is None:  # pragma: no cover - padding=0 always covers MindSpore's windows
        raise LayerTranslationError(f"no torch ConvTranspose1d covers MindSpore's output window {want}")
    padding, output_padding, crop = best
    torch_kw.update(padding=padding, output_padding=output_padding)
    result: dict[str, Any] = {"torch": torch_kw, "pre_pad": None, "post_crop": crop, "exact": crop is None}
    if crop is None:
        result["note"] = (f"pad_mode={kw['pad_mode']!r} keeps columns [{want[0]}, (L-1)*{stride} + {want[1]}) of the full "
                          f"transposed output; torch padding={padding}, output_padding={output_padding} keeps the same")
    else:
        result["note"] = _transpose_crop_note("pad_mode", kw["pad_mode"], crop) + (
            "; MindSpore's 'same' crops the odd column on the right, torch's padding crops both sides equally")
    return result


# --- norm layers, Embedding, PReLU ------------------------------------------------------


def _norm_to_ms(kind: LayerKind, kw: dict[str, Any]) -> tuple[dict[str, Any], bool, list[str]]:
    ms = _renamed(kind, TORCH, kw)
    exact, notes = True, []
    if kind is LayerKind.BATCH_NORM1D:
        if kw["momentum"] is None:
            ms["momentum"] = 0.9
            exact = False
            notes.append("momentum=None (a cumulative average of the running statistics) has no MindSpore equivalent; "
                         "inference with loaded statistics is unaffected, training updates them differently")
        else:
            notes.append("MindSpore's momentum weights the old running value: momentum = 1 - torch's")
        ms["use_batch_statistics"] = None if kw["track_running_stats"] else True
        if not kw["track_running_stats"]:
            notes.append("track_running_stats=False: use_batch_statistics=True (batch statistics in train and eval)")
    if kind is LayerKind.LAYER_NORM:
        ndim = len(ms["normalized_shape"])
        if ndim > 1:
            # MindSpore 2.10 refuses begin_norm_axis < -1 ("should be in the range [-1, rank)"),
            # so the axes are positive and assume an (N, C, L) input: rank 3.
            ms["begin_norm_axis"] = ms["begin_params_axis"] = 3 - ndim
            exact = False
            notes.append(f"normalized_shape has {ndim} axes: MindSpore refuses begin_norm_axis=-{ndim}, so the axes are "
                         f"{3 - ndim} for a rank-3 input; for rank r use r - {ndim}")
        if not kw["elementwise_affine"] or not kw["bias"]:
            notes.append("MindSpore's LayerNorm always has gamma and beta: load ones/zeros and freeze them "
                         "(requires_grad=False) to keep the torch layer's fixed scale/shift")
    if kind is LayerKind.INSTANCE_NORM1D:
        if kw["track_running_stats"]:
            exact = False
            notes.append("track_running_stats=True: torch uses the running statistics in eval(); MindSpore's "
                         "InstanceNorm1d always uses the instance statistics: no equivalent")
        notes.append("MindSpore 2.10 has no InstanceNorm kernel on CPU (Ascend/GPU only); on CPU use "
                     f"mindspore.nn.GroupNorm({kw['num_features']}, {kw['num_features']}, eps={kw['eps']!r}) with "
                     "gamma/beta from the torch weight/bias (identical outputs, measured)")
    if kind in (LayerKind.BATCH_NORM1D, LayerKind.GROUP_NORM, LayerKind.INSTANCE_NORM1D) and not kw["bias"]:
        notes.append("bias=False: MindSpore's affine layer always has beta; load zeros and freeze it")
    if kind is LayerKind.EMBEDDING:
        if kw["padding_idx"] is not None and kw["padding_idx"] < 0:
            ms["padding_idx"] = kw["num_embeddings"] + kw["padding_idx"]  # MindSpore takes [0, vocab_size) only
        if kw["max_norm"] is not None:
            exact = False
            notes.append("max_norm renormalizes looked-up rows in place; MindSpore's nn.Embedding has no equivalent "
                         "(use mindspore.mint.nn.Embedding, which follows torch's signature)")
        if kw["scale_grad_by_freq"] or kw["sparse"]:
            notes.append("scale_grad_by_freq/sparse change only the gradient; MindSpore's nn.Embedding has neither")
        if kw["padding_idx"] is not None:
            notes.append("padding_idx: the row loads as it was saved; torch also keeps its gradient at zero")
    return ms, exact, notes


def _norm_to_torch(kind: LayerKind, kw: dict[str, Any]) -> tuple[dict[str, Any], bool, list[str]]:
    torch_kw = _renamed(kind, MS, kw)
    exact, notes = True, []
    if kind is LayerKind.BATCH_NORM1D:
        notes.append("torch's momentum weights the new batch statistic: momentum = 1 - MindSpore's")
        use = kw["use_batch_statistics"]
        torch_kw["track_running_stats"] = use is not True
        if use is True:
            notes.append("use_batch_statistics=True: track_running_stats=False (batch statistics in train and eval); "
                         "the checkpoint's moving_mean/moving_variance have no torch buffer")
        if use is False:
            exact = False
            notes.append("use_batch_statistics=False uses the moving statistics even in training: torch has no flag "
                         "for it; keep the torch module in eval() mode")
        _check(kw["data_format"] == "NCHW", "BatchNorm1d", "data_format='NHWC' (GPU only) has no torch equivalent")
    if kind is LayerKind.LAYER_NORM:
        ndim = len(kw["normalized_shape"])
        axes = (kw["begin_norm_axis"], kw["begin_params_axis"])
        if axes != (-1, -1) or ndim != 1:
            exact = False
            notes.append(f"begin_norm_axis/begin_params_axis={axes}: torch normalizes the last len(normalized_shape) "
                         "axes with parameters of that shape; the translation assumes these are the same axes")
    if kind is LayerKind.INSTANCE_NORM1D:
        torch_kw["track_running_stats"] = False
        notes.append("MindSpore's InstanceNorm1d always uses the instance statistics: track_running_stats=False")
    if kind is LayerKind.EMBEDDING and kw["use_one_hot"]:
        notes.append("use_one_hot only changes how MindSpore computes the lookup, not its result")
    for name in ("gamma_init", "beta_init", "moving_mean_init", "moving_var_init", "embedding_table"):
        default = SIGNATURES[MS][kind].defaults.get(name)
        if name in kw and kw[name] != default:
            notes.append(f"{name}={kw[name]!r} only initializes; the loaded weights replace it")
    return torch_kw, exact, notes


# --- the entry point ------------------------------------------------------------------------


def translate_kwargs(kind: LayerKind, source: Framework, kwargs: dict[str, Any], *, name: str = "") -> LayerSpec:
    """Translate complete source kwargs (see parse.bind) into an unverified LayerSpec.

    Example:
        >>> kw = {"in_channels": 4, "out_channels": 8, "kernel_size": 3, "padding": 1, "padding_mode": "reflect"}
        >>> spec = translate_kwargs(LayerKind.CONV1D, Framework.TORCH, kw)
        >>> spec.mindspore["pad_mode"], spec.pre_pad
        ('valid', PrePad(mode='reflect', left=1, right=1, value=0.0))
    """
    where = f"{name or kind.value} ({source.value} {SIGNATURES[source][kind].class_name})"
    kwargs = bind(SIGNATURES[source][kind], source, (), kwargs)
    extra: dict[str, Any] = {}
    if source is TORCH:
        if kind.is_conv:
            kwargs = _normalize_torch_conv(kind, kwargs, where)
        _validate_with_torch(kind, kwargs, where)
        if kind is LayerKind.CONV1D:
            extra = _torch_conv1d_to_ms(kwargs)
        elif kind is LayerKind.CONV_TRANSPOSE1D:
            extra = _torch_transpose_to_ms(kwargs)
        else:
            ms, exact, notes = _norm_to_ms(kind, kwargs)
            extra = {"mindspore": ms, "exact": exact, "note": "; ".join(notes)}
        torch_kw, ms_kw = kwargs, _complete(kind, MS, extra.pop("mindspore"))
    else:
        if kind.is_conv:
            kwargs = _normalize_ms_conv(kwargs, where)
        if kind is LayerKind.CONV1D:
            extra = _ms_conv1d_to_torch(kwargs)
        elif kind is LayerKind.CONV_TRANSPOSE1D:
            extra = _ms_transpose_to_torch(kwargs)
        else:
            translated, exact, notes = _norm_to_torch(kind, kwargs)
            extra = {"torch": translated, "exact": exact, "note": "; ".join(notes)}
        torch_kw, ms_kw = _complete(kind, TORCH, extra.pop("torch")), kwargs
        _validate_with_torch(kind, torch_kw, where)
    target_kw = ms_kw if source is TORCH else torch_kw
    spec = LayerSpec(
        name=name or kind.value,
        kind=kind,
        source=source,
        torch=torch_kw,
        mindspore=ms_kw,
        pre_pad=extra.get("pre_pad"),
        post_crop=extra.get("post_crop"),
        exact=extra["exact"],
        note=extra.get("note", ""),
        default_differences=_default_differences(kind, source, kwargs, target_kw),
        length_multiple=extra.get("length_multiple"),
    )
    return spec
