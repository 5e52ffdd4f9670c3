"""The layer tables: constructor signatures, class names, parameter renames and padding rules.

Everything here is data. tests/test_layers_frameworks.py checks the signatures against
`inspect.signature` of the real classes (torch 2.13, MindSpore 2.10) and every padding rule by
running both layers. `device`/`dtype` (and MindSpore's `dtype`) are left out of the kwargs:
they choose where and how parameters are stored, not what the layer computes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from convmigrate.vocab import Framework, LayerKind


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Signature:
    """A constructor's parameters in order, with defaults; the first `positional` may be positional."""

    class_name: str
    params: tuple[tuple[str, Any], ...]
    positional: int

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.params)

    @property
    def defaults(self) -> dict[str, Any]:
        return dict(self.params)


_R = REQUIRED
# Keyword-only parameters (PyTorch's `*, bias` on the norm layers) sit after `positional`.
TORCH_SIGNATURES: dict[LayerKind, Signature] = {
    LayerKind.CONV1D: Signature("Conv1d", (
        ("in_channels", _R), ("out_channels", _R), ("kernel_size", _R), ("stride", 1), ("padding", 0),
        ("dilation", 1), ("groups", 1), ("bias", True), ("padding_mode", "zeros")), 9),
    LayerKind.CONV_TRANSPOSE1D: Signature("ConvTranspose1d", (
        ("in_channels", _R), ("out_channels", _R), ("kernel_size", _R), ("stride", 1), ("padding", 0),
        ("output_padding", 0), ("groups", 1), ("bias", True), ("dilation", 1), ("padding_mode", "zeros")), 10),
    LayerKind.BATCH_NORM1D: Signature("BatchNorm1d", (
        ("num_features", _R), ("eps", 1e-5), ("momentum", 0.1), ("affine", True),
        ("track_running_stats", True), ("bias", True)), 5),
    LayerKind.LAYER_NORM: Signature("LayerNorm", (
        ("normalized_shape", _R), ("eps", 1e-5), ("elementwise_affine", True), ("bias", True)), 4),
    LayerKind.GROUP_NORM: Signature("GroupNorm", (
        ("num_groups", _R), ("num_channels", _R), ("eps", 1e-5), ("affine", True), ("bias", True)), 4),
    LayerKind.INSTANCE_NORM1D: Signature("InstanceNorm1d", (
        ("num_features", _R), ("eps", 1e-5), ("momentum", 0.1), ("affine", False),
        ("track_running_stats", False), ("bias", True)), 5),
    LayerKind.EMBEDDING: Signature("Embedding", (
        ("num_embeddings", _R), ("embedding_dim", _R), ("padding_idx", None), ("max_norm", None),
        ("norm_type", 2.0), ("scale_grad_by_freq", False), ("sparse", False)), 7),
    LayerKind.PRELU: Signature("PReLU", (("num_parameters", 1), ("init", 0.25)), 2),
}

# MindSpore's nn layers (the Cell API; mint.nn follows PyTorch's signatures instead).
MINDSPORE_SIGNATURES: dict[LayerKind, Signature] = {
    LayerKind.CONV1D: Signature("Conv1d", (
        ("in_channels", _R), ("out_channels", _R), ("kernel_size", _R), ("stride", 1), ("pad_mode", "same"),
        ("padding", 0), ("dilation", 1), ("group", 1), ("has_bias", False), ("weight_init", None),
        ("bias_init", None)), 11),
    LayerKind.CONV_TRANSPOSE1D: Signature("Conv1dTranspose", (
        ("in_channels", _R), ("out_channels", _R), ("kernel_size", _R), ("stride", 1), ("pad_mode", "same"),
        ("padding", 0), ("dilation", 1), ("group", 1), ("has_bias", False), ("weight_init", None),
        ("bias_init", None)), 11),
    LayerKind.BATCH_NORM1D: Signature("BatchNorm1d", (
        ("num_features", _R), ("eps", 1e-5), ("momentum", 0.9), ("affine", True), ("gamma_init", "ones"),
        ("beta_init", "zeros"), ("moving_mean_init", "zeros"), ("moving_var_init", "ones"),
        ("use_batch_statistics", None), ("data_format", "NCHW")), 10),
    LayerKind.LAYER_NORM: Signature("LayerNorm", (
        ("normalized_shape", _R), ("begin_norm_axis", -1), ("begin_params_axis", -1), ("gamma_init", "ones"),
        ("beta_init", "zeros"), ("epsilon", 1e-7)), 6),
    LayerKind.GROUP_NORM: Signature("GroupNorm", (
        ("num_groups", _R), ("num_channels", _R), ("eps", 1e-5), ("affine", True), ("gamma_init", "ones"),
        ("beta_init", "zeros")), 6),
    LayerKind.INSTANCE_NORM1D: Signature("InstanceNorm1d", (
        ("num_features", _R), ("eps", 1e-5), ("momentum", 0.1), ("affine", True), ("gamma_init", "ones"),
        ("beta_init", "zeros")), 6),
    # MindSpore's positional order is (vocab_size, embedding_size, use_one_hot, embedding_table,
    # dtype, padding_idx): dtype is left out, so padding_idx is keyword-only here.
    LayerKind.EMBEDDING: Signature("Embedding", (
        ("vocab_size", _R), ("embedding_size", _R), ("use_one_hot", False), ("embedding_table", "normal"),
        ("padding_idx", None)), 4),
    LayerKind.PRELU: Signature("PReLU", (("channel", 1), ("w", 0.25)), 2),
}

SIGNATURES: dict[Framework, dict[LayerKind, Signature]] = {
    Framework.TORCH: TORCH_SIGNATURES,
    Framework.MINDSPORE: MINDSPORE_SIGNATURES,
}

# Module paths an expression may name its class through, per framework.
MODULE_PREFIXES: dict[Framework, tuple[str, ...]] = {
    Framework.TORCH: ("torch.nn", "nn", ""),
    Framework.MINDSPORE: ("mindspore.nn", "ms.nn", "nn", ""),
}


def kinds_by_class_name(framework: Framework) -> dict[str, LayerKind]:
    return {sig.class_name: kind for kind, sig in SIGNATURES[framework].items()}


# --- Parameter renames: (torch name, MindSpore name, torch value -> MindSpore value,
# MindSpore value -> torch value). None means the value crosses unchanged. Parameters with no
# counterpart are handled (and reported) by the layer's rule in translate.py.
def _one_minus(value: float | None) -> float | None:
    # BatchNorm momentum: torch weights the new batch statistic by m, MindSpore weights the old
    # running value by m (measured: test_batchnorm_momentum_is_one_minus).
    return None if value is None else round(1.0 - float(value), 12)


def _as_tuple(value: Any) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


Rename = tuple[str, str, Callable[[Any], Any] | None, Callable[[Any], Any] | None]

RENAMES: dict[LayerKind, tuple[Rename, ...]] = {
    LayerKind.CONV1D: (
        ("in_channels", "in_channels", None, None),
        ("out_channels", "out_channels", None, None),
        ("kernel_size", "kernel_size", None, None),
        ("stride", "stride", None, None),
        ("dilation", "dilation", None, None),
        ("groups", "group", None, None),
        ("bias", "has_bias", None, None),  # default True in torch, False in MindSpore
    ),
    LayerKind.BATCH_NORM1D: (
        ("num_features", "num_features", None, None),
        ("eps", "eps", None, None),
        ("momentum", "momentum", _one_minus, _one_minus),
        ("affine", "affine", None, None),
    ),
    LayerKind.LAYER_NORM: (
        ("normalized_shape", "normalized_shape", _as_tuple, list),
        ("eps", "epsilon", None, None),  # default 1e-5 in torch, 1e-7 in MindSpore
    ),
    LayerKind.GROUP_NORM: (
        ("num_groups", "num_groups", None, None),
        ("num_channels", "num_channels", None, None),
        ("eps", "eps", None, None),
        ("affine", "affine", None, None),
    ),
    LayerKind.INSTANCE_NORM1D: (
        ("num_features", "num_features", None, None),
        ("eps", "eps", None, None),
        # MindSpore's InstanceNorm op documents new = momentum * running + (1 - momentum) * current,
        # torch the opposite; not measurable on CPU (no InstanceNorm kernel) and never read by
        # MindSpore's forward, which always uses the instance statistics.
        ("momentum", "momentum", _one_minus, _one_minus),
        ("affine", "affine", None, None),  # default False in torch, True in MindSpore
    ),
    LayerKind.EMBEDDING: (
        ("num_embeddings", "vocab_size", None, None),
        ("embedding_dim", "embedding_size", None, None),
        ("padding_idx", "padding_idx", None, None),
    ),
    LayerKind.PRELU: (
        ("num_parameters", "channel", None, None),
        ("init", "w", None, None),
    ),
}
RENAMES[LayerKind.CONV_TRANSPOSE1D] = RENAMES[LayerKind.CONV1D]


# --- Conv1d padding. Each form reduces to the zeros/mode padding (left, right) of the input.
# PyTorch: padding int/tuple pads both sides; 'valid' none; 'same' pads d*(K-1) in total with
# the odd element on the RIGHT (measured: test_torch_same_pads_extra_on_the_right; the seed
# document says left, which is wrong). padding_mode picks the fill; it is ignored for 'valid'.
TORCH_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

# PyTorch padding_mode -> the pad mode of torch.nn.functional.pad / mindspore.ops.pad.
PAD_MODE_OF_PADDING_MODE: dict[str, str] = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "replicate",
    "circular": "circular",
}

# (torch padding form, padding_mode) -> how MindSpore nn.Conv1d reproduces it.
#   "pad":     pad_mode='pad', padding=p       (zeros on both sides, p > 0)
#   "valid":   pad_mode='valid'                 (no padding at all)
#   "same":    pad_mode='same'                  (stride 1 only, as torch requires; same split)
#   "pre_pad": ops.pad(x, (l, r), mode) + pad_mode='valid' (reflect/replicate/circular fills)
TORCH_TO_MS_CONV_RULES: dict[tuple[str, str], str] = {
    ("int", "zeros"): "pad",
    ("same", "zeros"): "same",
    **{("valid", mode): "valid" for mode in TORCH_PADDING_MODES},
    **{("int", mode): "pre_pad" for mode in TORCH_PADDING_MODES if mode != "zeros"},
    **{("same", mode): "pre_pad" for mode in TORCH_PADDING_MODES if mode != "zeros"},
}

# (MindSpore pad_mode, stride > 1) -> how torch.nn.Conv1d reproduces it.
#   "padding":  padding=p (int; 'same' when the split is uneven)   exact
#   "same_strided": the total pad depends on L mod stride: exact=False, pre_pad for L % s == 0
MS_TO_TORCH_CONV_RULES: dict[tuple[str, bool], str] = {
    ("pad", False): "padding",
    ("pad", True): "padding",
    ("valid", False): "padding",
    ("valid", True): "padding",
    ("same", False): "padding",
    ("same", True): "same_strided",
}
MS_PAD_MODES = ("same", "valid", "pad")
