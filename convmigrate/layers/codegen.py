"""The code a user writes for a translated layer: the constructor, and any explicit pad or crop.

    torch.nn.Conv1d(120, 240, 4, padding=1, padding_mode='reflect')
    layer = mindspore.nn.Conv1d(120, 240, 4, pad_mode='valid', has_bias=True)
    y = layer(mindspore.ops.pad(x, (1, 1), mode='reflect'))

Required parameters are positional; a keyword is written only where it differs from that
framework's own default, so every default the two frameworks disagree on shows up explicitly.
"""

from __future__ import annotations

from typing import Any

from convmigrate.layers.spec import LayerSpec
from convmigrate.layers.tables import REQUIRED, SIGNATURES
from convmigrate.vocab import Framework, LayerKind

MODULE = {Framework.TORCH: "torch.nn", Framework.MINDSPORE: "mindspore.nn"}
PAD_FUNCTION = {Framework.TORCH: "torch.nn.functional.pad", Framework.MINDSPORE: "mindspore.ops.pad"}
CAT = {Framework.TORCH: "torch.cat({parts}, dim=-1)", Framework.MINDSPORE: "mindspore.ops.cat({parts}, axis=-1)"}


def constructor_code(framework: Framework, kind: LayerKind, kwargs: dict[str, Any]) -> str:
    """`torch.nn.Conv1d(120, 240, 4, padding=1)`: required values positional, non-defaults by keyword."""
    signature = SIGNATURES[framework][kind]
    parts = []
    for name, default in signature.params:
        value = kwargs[name]
        if isinstance(value, list):
            value = tuple(value)
        if default is REQUIRED:
            parts.append(repr(value))
        elif value != default or type(value) is not type(default):
            parts.append(f"{name}={value!r}")
    return f"{MODULE[framework]}.{signature.class_name}({', '.join(parts)})"


def _forward_code(spec: LayerSpec, framework: Framework) -> str | None:
    """The forward line for the target layer, or None when `layer(x)` needs nothing around it."""
    kw = spec.kwargs(framework)
    call = "layer(x)"
    if spec.length_multiple and framework is Framework.TORCH:
        # MindSpore pad_mode='same' at stride s: total = max((ceil(L/s) - 1) * s + dk - L, 0).
        stride, dk = kw["stride"], kw["dilation"] * (kw["kernel_size"] - 1) + 1
        return (
            f"total = max((-(-x.shape[-1] // {stride}) - 1) * {stride} + {dk} - x.shape[-1], 0)\n"
            f"y = layer({PAD_FUNCTION[framework]}(x, (total // 2, total - total // 2)))"
        )
    if spec.pre_pad is not None:
        pad = spec.pre_pad
        call = f"layer({PAD_FUNCTION[framework]}(x, ({pad.left}, {pad.right}), mode={pad.mode!r}))"
    if spec.post_crop is None:
        return None if spec.pre_pad is None else f"y = {call}"
    left, right = spec.post_crop.left, spec.post_crop.right
    stop = f"-{right}" if right > 0 else ""
    lines = [f"y = {call}[..., {left or ''}:{stop}]" if left or stop else f"y = {call}"]
    if right < 0:
        has_bias = kw["bias"] if framework is Framework.TORCH else kw["has_bias"]
        if has_bias:
            tail = (f"layer.bias.reshape(1, -1, 1).expand(y.shape[0], -1, {-right})" if framework is Framework.TORCH
                    else f"mindspore.ops.tile(layer.bias.reshape(1, -1, 1), (y.shape[0], 1, {-right}))")
            lines.append("y = " + CAT[framework].format(parts=f"(y, {tail})"))
        else:
            lines.append(f"y = {PAD_FUNCTION[framework]}(y, (0, {-right}))")
    return "\n".join(lines)


def layer_code(spec: LayerSpec) -> dict[str, str]:
    """{"torch": code, "mindspore": code}; the target's code includes the explicit pad or crop."""
    code = {}
    for framework in (Framework.TORCH, Framework.MINDSPORE):
        constructor = constructor_code(framework, spec.kind, spec.kwargs(framework))
        forward = _forward_code(spec, framework) if framework is spec.target else None
        code[framework.value] = constructor if forward is None else f"layer = {constructor}\n{forward}"
    return code
