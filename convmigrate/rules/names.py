"""Parameter-name rules: which layer a group of sibling parameters belongs to, and what its
parameters are called in the other framework.

Both are tables. A layer is a name prefix (`encoder.bn`); its parameters are the suffixes that
share it (`running_mean`, `weight`, ...). `KIND_RULES` recognise a layer kind from that set of
sibling suffixes (and the weight's rank); `PARAM_NAMES` then maps each suffix across frameworks.
The user's TOML rules (`rules/user.py`) extend both tables.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from convmigrate.rules.conv import bias_marks_transposed
from convmigrate.vocab import Framework, ParamFamily


@dataclass(frozen=True)
class ParamName:
    """One parameter of a layer kind, named in PyTorch and in MindSpore's `nn` layers.

    `mindspore` None: MindSpore has no such parameter (dropped torch->ms, created ms->torch).
    """

    torch: str
    mindspore: str | None


# Parameter family -> its parameters, named in each framework. The user's
# TOML rules add families of their own (keyed by plain strings).
PARAM_NAMES: dict[ParamFamily | str, tuple[ParamName, ...]] = {
    # torch.nn.BatchNorm1d/2d and InstanceNorm1d(track_running_stats=True)
    #   <-> mindspore.nn.BatchNorm1d / InstanceNorm1d
    ParamFamily.BATCH_NORM: (
        ParamName("weight", "gamma"),
        ParamName("bias", "beta"),
        ParamName("running_mean", "moving_mean"),
        ParamName("running_var", "moving_variance"),
        ParamName("num_batches_tracked", None),
    ),
    # torch.nn.LayerNorm / GroupNorm / affine InstanceNorm <-> mindspore.nn.LayerNorm / GroupNorm
    ParamFamily.NORM: (ParamName("weight", "gamma"), ParamName("bias", "beta")),
    # torch.nn.Embedding <-> mindspore.nn.Embedding
    ParamFamily.EMBEDDING: (ParamName("weight", "embedding_table"),),
    # torch.nn.PReLU <-> mindspore.nn.PReLU
    ParamFamily.PRELU: (ParamName("weight", "w"),),
    # torch.nn.Linear <-> mindspore.nn.Dense: same names
    ParamFamily.LINEAR: (ParamName("weight", "weight"), ParamName("bias", "bias")),
    # torch.nn.Conv1d / ConvTranspose1d <-> mindspore.nn.Conv1d / Conv1dTranspose: same names,
    # the weight gains or loses the unit axis (rules/conv.py)
    ParamFamily.CONV1D: (ParamName("weight", "weight"), ParamName("bias", "bias")),
    # torch.nn.Conv2d <-> mindspore.nn.Conv2d: same names and shapes
    ParamFamily.CONV2D: (ParamName("weight", "weight"), ParamName("bias", "bias")),
}

# Layer names that hint at a kind when the parameters alone cannot tell (a lone 2-D `weight` is
# a bias-free Linear or an Embedding; a lone 1-D `weight` a PReLU or a bias-free LayerNorm).
_EMBEDDING_HINT = r"(^|[._])(emb|embed|embeds|embedding|embeddings|wte|wpe|tok_embeddings|word_embeddings)$"
_NORM_HINT = r"(norm|^ln|[._]ln(_?\w*)?$|[._]bn\d*$|[._]gn$)"
_PRELU_HINT = r"(prelu|(^|[._])act(ivation)?\d*$)"


Shapes = Mapping[str, Sequence[int]]  # a layer's parameters: {suffix: shape}


# Shape tests the rules use: what the shapes alone can decide.
def same_shape(params: Shapes) -> bool:
    """A norm's weight and bias: one shape, of any rank (LayerNorm([1, n]) has two (1, n))."""
    return tuple(params["weight"]) == tuple(params["bias"])


def linear_bias(params: Shapes) -> bool:
    """A Linear's bias, if any, is 1-D with the weight's first dimension (its outputs)."""
    bias = params.get("bias")
    return bias is None or (len(bias) == 1 and len(params["weight"]) >= 1 and bias[0] == params["weight"][0])


def conv_bias(params: Shapes) -> bool:
    """A conv's bias, if any, is 1-D with its output channels: the weight's first dimension, or
    (a transposed conv, (C_in, C_out/groups, ...)) a multiple of its second."""
    bias, weight = params.get("bias"), params["weight"]
    if bias is None:
        return True
    if len(bias) != 1 or len(weight) < 2:
        return False
    return bias[0] == weight[0] or (weight[1] > 0 and bias[0] % weight[1] == 0)


def transposed_conv_bias(params: Shapes) -> bool:
    """A ConvTranspose1d's bias: sized like the weight's second axis (C_out), not its first."""
    return bias_marks_transposed(params["weight"], params.get("bias"))


def mindspore_conv1d_transpose_shapes(params: Shapes) -> bool:
    """MindSpore's nn.Conv1dTranspose weight (C_in, C_out/group, 1, K) with its bias of C_out."""
    return params["weight"][2] == 1 and transposed_conv_bias(params)


def mindspore_conv1d_shapes(params: Shapes) -> bool:
    """MindSpore's nn.Conv1d weight (C_out, C_in/group, 1, K) and a conv's bias."""
    return params["weight"][2] == 1 and conv_bias(params)


def mindspore_conv2d_shapes(params: Shapes) -> bool:
    """A 4-D weight whose kernel is not (1, K): only a Conv2d has it."""
    return params["weight"][2] != 1 and conv_bias(params)


@dataclass(frozen=True)
class KindRule:
    """Recognise a layer's parameter family from its sibling suffixes, as one framework names them.

    `required` must all be present; every present suffix must be in `required | optional`;
    `weight_ndim` (if set) is the rank of the layer's main parameter; `shapes` a test of the
    parameters' shapes (bias rank and size, a norm's equal shapes); `name_hint` a regex on the
    layer's name. `certain` False marks a guess the user should confirm (a report, or --strict).
    """

    kind: ParamFamily | str
    framework: Framework
    required: frozenset[str]
    optional: frozenset[str] = frozenset()
    weight_ndim: int | None = None
    shapes: Callable[[Shapes], bool] | None = None
    name_hint: str | None = None
    certain: bool = True
    why: str = ""

    def matches(self, layer: str, params: Shapes) -> bool:
        present = set(params)
        if not self.required <= present or not present <= self.required | self.optional:
            return False
        if self.weight_ndim is not None:
            main = "weight" if "weight" in self.required else sorted(self.required)[0]
            if len(params[main]) != self.weight_ndim:
                return False
        if self.shapes is not None and not self.shapes(params):
            return False
        return self.name_hint is None or re.search(self.name_hint, layer, re.IGNORECASE) is not None


def _rule(kind: ParamFamily | str, framework: Framework, required: Iterable[str], optional: Iterable[str] = (), **kw) -> KindRule:
    return KindRule(kind, framework, frozenset(required), frozenset(optional), **kw)


T, M = Framework.TORCH, Framework.MINDSPORE
# First match wins, so the more specific rules come first.
KIND_RULES: tuple[KindRule, ...] = (
    # PyTorch side
    _rule(ParamFamily.BATCH_NORM, T, {"running_mean", "running_var"}, {"weight", "bias", "num_batches_tracked"},
          why="has running_mean/running_var"),
    # LayerNorm / GroupNorm / affine InstanceNorm, any normalized shape: LayerNorm([1, n]) is no Linear
    _rule(ParamFamily.NORM, T, {"weight", "bias"}, shapes=same_shape, why="weight and bias of one shape"),
    _rule(ParamFamily.CONV1D, T, {"weight", "bias"}, weight_ndim=3, shapes=transposed_conv_bias,
          why="a ConvTranspose1d: 3-D weight, bias sized like its second axis"),
    _rule(ParamFamily.CONV1D, T, {"weight"}, {"bias"}, weight_ndim=3, shapes=conv_bias, why="3-D weight"),
    # nn.Conv2d / ConvTranspose2d: MindSpore's nn.Conv2d has the same names and shapes
    _rule(ParamFamily.CONV2D, T, {"weight"}, {"bias"}, weight_ndim=4, shapes=conv_bias,
          why="4-D weight: same names and shapes in MindSpore"),
    _rule(ParamFamily.LINEAR, T, {"weight", "bias"}, weight_ndim=2, shapes=linear_bias,
          why="2-D weight, 1-D bias of its first dimension"),
    _rule(ParamFamily.EMBEDDING, T, {"weight"}, weight_ndim=2, name_hint=_EMBEDDING_HINT, certain=False,
          why="lone 2-D weight in a layer named like an embedding"),
    _rule(ParamFamily.PRELU, T, {"weight"}, weight_ndim=1, name_hint=_PRELU_HINT, certain=False,
          why="lone 1-D weight in a layer named like a PReLU"),
    _rule(ParamFamily.NORM, T, {"weight"}, name_hint=_NORM_HINT, certain=False,
          why="lone weight in a layer named like a norm (a bias-free LayerNorm)"),
    _rule(ParamFamily.LINEAR, T, {"weight"}, weight_ndim=2, certain=False,
          why="lone 2-D weight: a bias-free Linear (an Embedding would need --rules or --reference)"),
    # MindSpore side
    _rule(ParamFamily.BATCH_NORM, M, {"moving_mean", "moving_variance"}, {"gamma", "beta"}, why="has moving_mean/moving_variance"),
    _rule(ParamFamily.NORM, M, {"gamma"}, {"beta"}, why="has gamma"),
    _rule(ParamFamily.EMBEDDING, M, {"embedding_table"}, why="has embedding_table"),
    _rule(ParamFamily.PRELU, M, {"w"}, why="has w"),
    _rule(ParamFamily.CONV2D, M, {"weight"}, {"bias"}, weight_ndim=4, shapes=mindspore_conv2d_shapes,
          why="4-D weight without a unit third axis: a Conv2d"),
    _rule(ParamFamily.CONV1D, M, {"weight", "bias"}, weight_ndim=4, shapes=mindspore_conv1d_transpose_shapes,
          certain=False, why="a ConvTranspose1d: 4-D weight with a unit third axis, bias sized like its second axis "
          "(a transposed Conv2d with a (1, K) kernel looks the same)"),
    _rule(ParamFamily.CONV1D, M, {"weight"}, {"bias"}, weight_ndim=4, shapes=mindspore_conv1d_shapes,
          certain=False, why="4-D weight with a unit third axis (a Conv2d with a (1, K) kernel looks the same)"),
    _rule(ParamFamily.LINEAR, M, {"weight"}, {"bias"}, weight_ndim=2, shapes=linear_bias,
          why="2-D weight, 1-D bias (if any) of its first dimension"),
)


def family_named(name: str) -> ParamFamily | str:
    """A family by its value ("Norm" -> ParamFamily.NORM); a name the user's rules define stays a str."""
    return next((family for family in ParamFamily if family.value == name), name)


def split_name(name: str) -> tuple[str, str]:
    """'encoder.bn.running_mean' -> ('encoder.bn', 'running_mean'); 'weight' -> ('', 'weight')."""
    layer, _, suffix = name.rpartition(".")
    return layer, suffix


def join_name(layer: str, suffix: str) -> str:
    return f"{layer}.{suffix}" if layer else suffix


@dataclass(frozen=True)
class FamilyGuess:
    kind: ParamFamily | str | None  # None: no rule matched; names are kept
    certain: bool
    why: str


@dataclass
class NameRules:
    """The compiled tables: built-in rules plus the user's, looked up per layer."""

    kind_rules: list[KindRule] = field(default_factory=lambda: list(KIND_RULES))
    param_names: dict[ParamFamily | str, tuple[ParamName, ...]] = field(default_factory=lambda: dict(PARAM_NAMES))
    # (layer-name glob, family, why) from the user's TOML or --model: decides before any built-in rule
    forced_kinds: list[tuple[str, ParamFamily | str, str]] = field(default_factory=list)
    # (torch prefix, mindspore prefix): module paths that differ between the two model codes
    prefixes: list[tuple[str, str]] = field(default_factory=list)
    # True when forced_kinds name every layer there is (torch2ms --model): no shape guessing
    exclusive: bool = False

    def map_prefix(self, name: str, source: Framework) -> str:
        """Apply the first user prefix rule whose source side starts `name`."""
        for torch_prefix, ms_prefix in self.prefixes:
            old, new = (torch_prefix, ms_prefix) if source is Framework.TORCH else (ms_prefix, torch_prefix)
            if name.startswith(old):
                return new + name[len(old):]
        return name

    def renames_anywhere(self, suffix: str, source: Framework) -> bool:
        """Whether some layer kind would rename `suffix`: an unknown layer with it is ambiguous."""
        return any(self.rename(kind, suffix, source) not in ((False, suffix), (True, suffix)) for kind in self.param_names)

    def classify(self, layer: str, params: Mapping[str, Sequence[int]], framework: Framework) -> FamilyGuess:
        """The kind of `layer` given its parameters {suffix: shape} in `framework`'s naming."""
        from fnmatch import fnmatchcase

        for pattern, kind, why in self.forced_kinds:
            if fnmatchcase(layer, pattern):
                return FamilyGuess(kind, True, why)
        if self.exclusive:
            return FamilyGuess(None, True, "not a module of the model that the migration renames")
        for rule in self.kind_rules:
            if rule.framework is framework and rule.matches(layer, params):
                return FamilyGuess(rule.kind, rule.certain, rule.why)
        return FamilyGuess(None, True, "no layer rule matches; names kept")

    def rename(self, kind: ParamFamily | str | None, suffix: str, source: Framework) -> tuple[bool, str | None]:
        """(known, target suffix) for `suffix` of a `kind` layer; target None: no counterpart."""
        if kind is None:
            return False, suffix
        for param in self.param_names.get(kind, ()):
            if source is Framework.TORCH and param.torch == suffix:
                return True, param.mindspore
            if source is Framework.MINDSPORE and param.mindspore == suffix:
                return True, param.torch
        return False, suffix

    def created_on_torch_side(self, kind: ParamFamily | str | None) -> list[str]:
        """Torch parameters with no MindSpore counterpart, which ms2torch must create."""
        return [p.torch for p in self.param_names.get(kind or "", ()) if p.mindspore is None]
