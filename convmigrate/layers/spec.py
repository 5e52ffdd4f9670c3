"""The value a layer translation produces, and its `{"layers": [...]}` JSON form.

A LayerSpec holds one layer in both frameworks: the complete constructor kwargs with each
framework's own names and defaults, the explicit ops a faithful port needs around the target
layer (an input pad before it, an output crop after it), the code to write, whether the
translation is exact for every input length, and the error measured when it was verified.

    {"layers": [{"name": "encoder.conv1", "kind": "Conv1d", "source": "torch",
                 "torch": {...}, "mindspore": {...},
                 "pre_pad": {"mode": "reflect", "pads": [1, 1], "value": 0.0} | null,
                 "post_crop": [0, 1] | null,
                 "code": {"torch": "...", "mindspore": "..."},
                 "exact": true, "note": "...", "default_differences": ["..."], "length_multiple": null,
                 "verified": 1.2e-07 | null, "verified_lengths": [9, 10, 13]}]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convmigrate.errors import CheckFailedError, UsageError
from convmigrate.formats.atomic import atomic_output
from convmigrate.limits import USER_FILE_MAX_BYTES
from convmigrate.untrusted import UntrustedTextError, load_json, read_bounded
from convmigrate.vocab import Framework, LayerKind

# The layer kinds whose hyperparameters this package translates (layers/tables.py has their
# constructor signatures in both frameworks).
TRANSLATED_KINDS: tuple[LayerKind, ...] = (
    LayerKind.CONV1D, LayerKind.CONV_TRANSPOSE1D, LayerKind.BATCH_NORM1D, LayerKind.LAYER_NORM,
    LayerKind.GROUP_NORM, LayerKind.INSTANCE_NORM1D, LayerKind.EMBEDDING, LayerKind.PRELU,
)

# Padding modes shared by torch.nn.functional.pad and mindspore.ops.pad (same names, measured
# equal in tests/test_layers_frameworks.py::test_pad_modes_agree).
PAD_MODES = ("constant", "reflect", "replicate", "circular")


class LayerExpressionError(UsageError):
    """A constructor expression is not one this tool can read (or would be unsafe to run)."""


class LayerTranslationError(UsageError):
    """A layer's hyperparameters are invalid in its own framework, or a layers JSON is malformed."""


class UnverifiedTranslationError(CheckFailedError):
    """A translation did not reproduce its source layer: a bug in a rule, never printed as a result."""


@dataclass(frozen=True)
class PrePad:
    """An explicit pad of the input's last axis, applied in the target framework before the layer."""

    mode: str  # one of PAD_MODES
    left: int
    right: int
    value: float = 0.0

    def to_json(self) -> dict:
        return {"mode": self.mode, "pads": [self.left, self.right], "value": self.value}


@dataclass(frozen=True)
class PostCrop:
    """Output columns to drop after the target layer: y[..., left : L - right].

    A negative `right` means the target output is too short by -right columns, which hold only
    the bias in the source layer (a transposed conv's output_padding beyond its padding):
    append them as bias (zeros without a bias).
    """

    left: int
    right: int

    def to_json(self) -> list[int]:
        return [self.left, self.right]


@dataclass
class LayerSpec:
    """One layer, translated: both frameworks' constructor kwargs and the proof that they agree."""

    name: str
    kind: LayerKind
    source: Framework  # the framework the layer was written for; the other one is the target
    torch: dict[str, Any]
    mindspore: dict[str, Any]
    pre_pad: PrePad | None = None
    post_crop: PostCrop | None = None
    code: dict[str, str] = field(default_factory=dict)
    exact: bool = True
    note: str = ""
    default_differences: list[str] = field(default_factory=list)
    # Set when the translation holds only for input lengths divisible by this (exact is False).
    length_multiple: int | None = None
    verified: float | None = None  # max |source - target| over `verified_lengths` (convs only)
    verified_lengths: list[int] = field(default_factory=list)

    @property
    def target(self) -> Framework:
        return Framework.MINDSPORE if self.source is Framework.TORCH else Framework.TORCH

    def kwargs(self, framework: Framework) -> dict[str, Any]:
        return self.torch if framework is Framework.TORCH else self.mindspore

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "source": self.source.value,
            "torch": _jsonable(self.torch),
            "mindspore": _jsonable(self.mindspore),
            "pre_pad": self.pre_pad.to_json() if self.pre_pad else None,
            "post_crop": self.post_crop.to_json() if self.post_crop else None,
            "code": dict(self.code),
            "exact": self.exact,
            "note": self.note,
            "default_differences": list(self.default_differences),
            "length_multiple": self.length_multiple,
            "verified": self.verified,
            "verified_lengths": list(self.verified_lengths),
        }


def _jsonable(kwargs: dict[str, Any]) -> dict[str, Any]:
    # Tuples (LayerNorm's normalized_shape) become lists; everything else is already JSON.
    return {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}


def layers_document(specs: list[LayerSpec]) -> dict:
    """The `{"layers": [...]}` object that `--json` prints and `-o` writes."""
    return {"layers": [spec.to_json() for spec in specs]}


def write_layers_json(path: Path | str, specs: list[LayerSpec]) -> Path:
    """Write `{"layers": [...]}` to `path` atomically (no partial file on failure).

    Example:
        >>> from convmigrate.layers import translate_source
        >>> write_layers_json("conv.layers.json", translate_source("torch.nn.Conv1d(2, 4, 3)"))
        PosixPath('conv.layers.json')
    """
    path = Path(path)
    text = json.dumps(layers_document(specs), indent=2) + "\n"
    with atomic_output(path) as stream:
        stream.write(text.encode("utf-8"))
    return path


@dataclass(frozen=True)
class LayerRecord:
    """One layer read back from a layers JSON: what to translate again (name, kind, source kwargs)."""

    name: str
    kind: LayerKind
    source: Framework
    kwargs: dict[str, Any]


def read_layers_json(path: Path | str, default_source: Framework) -> list[LayerRecord]:
    """The layers of a layers JSON, each as its source framework's kwargs, ready to translate again.

    A layer without a "source" field is read from `default_source`'s kwargs.
    """
    path = Path(path)
    try:
        document = load_json(read_bounded(path), max_bytes=USER_FILE_MAX_BYTES)
    except OSError as exc:
        raise LayerTranslationError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except UntrustedTextError as exc:
        raise LayerTranslationError(f"{path}: not a layers JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("layers"), list):
        raise LayerTranslationError(f'{path}: a layers JSON is one object {{"layers": [...]}}')
    records = []
    for index, layer in enumerate(document["layers"]):
        where = f"{path}: layers[{index}]"
        if not isinstance(layer, dict):
            raise LayerTranslationError(f"{where} is not an object")
        kind = next((k for k in TRANSLATED_KINDS if k.value == layer.get("kind")), None)
        if kind is None:
            known = ", ".join(k.value for k in TRANSLATED_KINDS)
            raise LayerTranslationError(f"{where}: kind {layer.get('kind')!r} is not one of {known}")
        try:
            source = Framework(layer.get("source", default_source.value))
        except ValueError:
            raise LayerTranslationError(f"{where}: source must be 'torch' or 'mindspore'") from None
        kwargs = layer.get(source.value)
        if not isinstance(kwargs, dict):
            raise LayerTranslationError(f"{where}: has no {source.value!r} kwargs object")
        records.append(LayerRecord(str(layer.get("name", f"layers[{index}]")), kind, source, kwargs))
    return records
