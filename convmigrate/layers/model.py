"""Reading the translatable layers of a PyTorch model built by the user's own factory.

`package.module:callable` is imported and called with no arguments: this runs the user's code,
so it is for code the user trusts (their own model definition), exactly like `python -c`.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convmigrate.extras import require
from convmigrate.layers.spec import LayerExpressionError, LayerSpec
from convmigrate.layers.tables import TORCH_SIGNATURES
from convmigrate.vocab import Framework, LayerKind, ParamFamily

FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _one(value: Any) -> Any:
    return value[0] if isinstance(value, tuple) and len(value) == 1 else value


def _has_bias(module: Any, affine_attr: str) -> bool:
    # torch >= 2.1 norm layers take bias=False (weight without bias); bias only exists when affine.
    return getattr(module, "bias", None) is not None if getattr(module, affine_attr) else True


# Layer kind -> how to read each torch constructor kwarg back from a built module.
_READERS: dict[LayerKind, dict[str, Callable[[Any], Any]]] = {
    LayerKind.CONV1D: {
        "in_channels": lambda m: m.in_channels, "out_channels": lambda m: m.out_channels,
        "kernel_size": lambda m: _one(m.kernel_size), "stride": lambda m: _one(m.stride),
        "padding": lambda m: _one(m.padding), "dilation": lambda m: _one(m.dilation), "groups": lambda m: m.groups,
        "bias": lambda m: m.bias is not None, "padding_mode": lambda m: m.padding_mode,
    },
    LayerKind.BATCH_NORM1D: {
        "num_features": lambda m: m.num_features, "eps": lambda m: m.eps, "momentum": lambda m: m.momentum,
        "affine": lambda m: m.affine, "track_running_stats": lambda m: m.track_running_stats,
        "bias": lambda m: _has_bias(m, "affine"),
    },
    LayerKind.LAYER_NORM: {
        "normalized_shape": lambda m: list(m.normalized_shape), "eps": lambda m: m.eps,
        "elementwise_affine": lambda m: m.elementwise_affine, "bias": lambda m: _has_bias(m, "elementwise_affine"),
    },
    LayerKind.GROUP_NORM: {
        "num_groups": lambda m: m.num_groups, "num_channels": lambda m: m.num_channels, "eps": lambda m: m.eps,
        "affine": lambda m: m.affine, "bias": lambda m: _has_bias(m, "affine"),
    },
    LayerKind.EMBEDDING: {
        "num_embeddings": lambda m: m.num_embeddings, "embedding_dim": lambda m: m.embedding_dim,
        "padding_idx": lambda m: m.padding_idx, "max_norm": lambda m: m.max_norm, "norm_type": lambda m: m.norm_type,
        "scale_grad_by_freq": lambda m: m.scale_grad_by_freq, "sparse": lambda m: m.sparse,
    },
    LayerKind.PRELU: {"num_parameters": lambda m: m.num_parameters, "init": lambda m: m.init},
}
_READERS[LayerKind.CONV_TRANSPOSE1D] = {**_READERS[LayerKind.CONV1D], "output_padding": lambda m: _one(m.output_padding)}
_READERS[LayerKind.INSTANCE_NORM1D] = _READERS[LayerKind.BATCH_NORM1D]


def load_factory(spec: str) -> Callable[[], Any]:
    """The callable named by `package.module:callable` (the current directory is importable)."""
    if not FACTORY_PATTERN.match(spec):
        raise LayerExpressionError(f"{spec!r}: a model factory is written package.module:callable")
    module_name, _, attr_path = spec.partition(":")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise LayerExpressionError(f"{spec}: cannot import {module_name} ({exc})") from exc
    for attr in attr_path.split("."):
        if not hasattr(target, attr):
            raise LayerExpressionError(f"{spec}: {module_name} has no attribute {attr_path}")
        target = getattr(target, attr)
    if not callable(target):
        raise LayerExpressionError(f"{spec}: {attr_path} is not callable")
    return target


def module_layers(model: Any) -> list[tuple[str, LayerKind, dict[str, Any]]]:
    """(qualified name, kind, complete torch kwargs) for each translatable module of `model`.

    Example:
        >>> import torch
        >>> module_layers(torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3)))
        [('0', <LayerKind.CONV1D: 'Conv1d'>, {'in_channels': 2, ...})]
    """
    import torch

    classes = {kind: getattr(torch.nn, TORCH_SIGNATURES[kind].class_name) for kind in _READERS}
    found = []
    for name, module in model.named_modules():
        for kind, cls in classes.items():
            if isinstance(module, cls):
                kwargs = {param: read(module) for param, read in _READERS[kind].items()}
                found.append((name, kind, kwargs))
                break
    return found


def build_model(factory: str) -> Any:
    """Import and call `package.module:callable` (trusted code); it must return a torch.nn.Module."""
    torch = require("torch", "torch", "a PyTorch model factory (--model, layers package.module:callable)")

    try:
        model = load_factory(factory)()
    except LayerExpressionError:
        raise
    except Exception as exc:  # the user's factory failed: name it, one line
        raise LayerExpressionError(f"{factory}: calling the factory failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, torch.nn.Module):
        raise LayerExpressionError(f"{factory}: returned {type(model).__name__}, not a torch.nn.Module")
    return model


def layers_from_model(factory: str) -> list[tuple[str, LayerKind, dict[str, Any]]]:
    """Import and call `package.module:callable`, then list its translatable layers (trusted code)."""
    return module_layers(build_model(factory))


@dataclass
class ModelLayers:
    """What `torch2ms --model` tells: each module's kind and parameter family, and its translated,
    verified layers."""

    kinds: list[tuple[str, ParamFamily, LayerKind]]  # (module name, its parameters' family, its kind)
    specs: list[LayerSpec]  # translated PyTorch -> MindSpore and verified

    def notes(self) -> list[str]:
        return [f"{spec.name}: {difference}" for spec in self.specs for difference in spec.default_differences]


def model_layers(factory: str) -> ModelLayers:
    """Build the user's model and read every module the migration and verification care about."""
    torch = require("torch", "torch", "--model")

    from convmigrate.layers import translate_layer

    model = build_model(factory)
    kinds: list[tuple[str, ParamFamily, LayerKind]] = []
    specs = []
    for name, kind, kwargs in module_layers(model):
        family = kind.family
        if kind is LayerKind.INSTANCE_NORM1D and kwargs.get("track_running_stats"):
            family = ParamFamily.BATCH_NORM  # its running statistics are named like BatchNorm's
        kinds.append((name, family, kind))
        specs.append(translate_layer(kind, Framework.TORCH, kwargs, name))
    # Modules whose parameters the rules name but whose hyperparameters are not translated.
    untranslated = {torch.nn.Linear: LayerKind.LINEAR, torch.nn.Conv2d: LayerKind.CONV2D}
    kinds += [(name, kind.family, kind) for name, module in model.named_modules()
              for cls, kind in untranslated.items() if isinstance(module, cls)]
    return ModelLayers(kinds, specs)
