"""What to fix where a port parts: the PyTorch layer as it is, and what `convmigrate layers`
translates it to (the constructor, and any explicit pad the MindSpore layer needs before it)."""

from __future__ import annotations

from typing import Any

from convmigrate.errors import ConvmigrateError
from convmigrate.vocab import Framework


def layer_hint(model: Any, name: str) -> str | None:
    """One line for PyTorch module `name` of `model`; None when there is no such module."""
    from convmigrate.layers import module_layers, translate_layer

    module = dict(model.named_modules()).get(name)
    if module is None:
        return None
    hint = f"PyTorch's {name} is {type(module).__name__}({module.extra_repr()})"
    for layer_name, kind, kwargs in module_layers(module):
        if layer_name:  # the module itself only, not what it contains
            continue
        try:
            code = translate_layer(kind, Framework.TORCH, kwargs, name).code.get(Framework.MINDSPORE.value)
        except ConvmigrateError:
            return hint
        if code:
            hint += "; convmigrate layers translates it to: " + "; ".join(code.strip().splitlines())
    return hint
