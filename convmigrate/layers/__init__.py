"""Layer hyperparameter translation between PyTorch and MindSpore, verified before it is shown.

    >>> from convmigrate.layers import translate_source
    >>> [spec] = translate_source("torch.nn.Conv1d(120, 240, 4, padding=1, padding_mode='reflect')")
    >>> spec.mindspore["pad_mode"], spec.pre_pad.to_json()
    ('valid', {'mode': 'reflect', 'pads': [1, 1], 'value': 0.0})

A SOURCE is a constructor expression (parsed, never run), a PyTorch model factory
`package.module:callable` (imported and called: trusted code only), or a layers JSON written by
`convmigrate layers --report`. No typer or rich here: the CLI only renders what this returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convmigrate.layers.codegen import constructor_code, layer_code
from convmigrate.layers.model import FACTORY_PATTERN, layers_from_model, module_layers
from convmigrate.layers.parse import bind, parse_layer_expression
from convmigrate.layers.spec import (
    TRANSLATED_KINDS,
    LayerExpressionError,
    LayerRecord,
    LayerSpec,
    LayerTranslationError,
    PostCrop,
    PrePad,
    UnverifiedTranslationError,
    layers_document,
    read_layers_json,
    write_layers_json,
)
from convmigrate.layers.tables import SIGNATURES
from convmigrate.layers.translate import translate_kwargs
from convmigrate.layers.verify import verify_spec
from convmigrate.vocab import Framework, LayerKind

__all__ = [
    "TRANSLATED_KINDS", "LayerExpressionError", "LayerKind", "LayerRecord", "LayerSpec", "LayerTranslationError", "PostCrop", "PrePad",
    "UnverifiedTranslationError", "bind", "constructor_code", "layer_code", "layers_document", "layers_from_model",
    "module_layers", "parse_layer_expression", "read_layers_json", "translate_layer", "translate_source",
    "verify_spec", "write_layers_json",
]


def translate_layer(kind: LayerKind, source: Framework, kwargs: dict[str, Any], name: str = "") -> LayerSpec:
    """Translate one layer's kwargs to the other framework, verify it (convs), fill in its code."""
    spec = translate_kwargs(kind, source, kwargs, name=name)
    spec.code = layer_code(spec)
    return verify_spec(spec)


def _other(framework: Framework) -> Framework:
    return Framework.MINDSPORE if framework is Framework.TORCH else Framework.TORCH


def _source_for(known: Framework | None, to: Framework | None, what: str) -> Framework:
    """The source framework of a layer, given what the input says and the requested target."""
    if known is None:  # nn.Conv1d: both have it; the target decides, PyTorch -> MindSpore by default
        return _other(to) if to is not None else Framework.TORCH
    if to is known:
        flag = "ms" if known is Framework.TORCH else "torch"
        raise LayerExpressionError(f"{what} is already a {known.value} layer; translate it with --to {flag}")
    return known


def translate_source(source: str, to: Framework | None = None) -> list[LayerSpec]:
    """Every layer of SOURCE, translated to `to` (default: the other framework) and verified.

    Example:
        >>> translate_source("mindspore.nn.Conv1d(4, 8, 3)")[0].torch["padding"]
        1
    """
    path = Path(source)
    if source.endswith(".json") or (path.suffix == ".json" and path.exists()):
        if not path.is_file():
            raise LayerTranslationError(f"{source}: no such layers JSON file")
        records = read_layers_json(path, default_source=_other(to) if to is not None else Framework.TORCH)
        return [
            translate_layer(r.kind, _source_for(r.source, to, f"{source}: {r.name}"), r.kwargs, r.name)
            for r in records
        ]
    if "(" in source:
        parsed = parse_layer_expression(source)
        framework = _source_for(parsed.framework, to, repr(source.strip()))
        kwargs = bind(SIGNATURES[framework][parsed.kind], framework, parsed.args, parsed.kwargs)
        return [translate_layer(parsed.kind, framework, kwargs, parsed.kind.value)]
    if FACTORY_PATTERN.match(source):
        _source_for(Framework.TORCH, to, source)
        return [translate_layer(kind, Framework.TORCH, kwargs, name) for name, kind, kwargs in layers_from_model(source)]
    raise LayerExpressionError(
        f"{source!r} is not a layer expression (torch.nn.Conv1d(...)), a model factory (package.module:callable) "
        "or a layers JSON file (*.json)"
    )
