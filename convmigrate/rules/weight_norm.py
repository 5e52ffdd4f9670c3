"""Weight-normalised layers: find their (g, v) pairs by name and tell the normalised axis.

    torch.nn.utils.weight_norm                 <layer>.weight_g, <layer>.weight_v
    torch.nn.utils.parametrizations.weight_norm <layer>.parametrizations.weight.original0 (g),
                                               <layer>.parametrizations.weight.original1 (v)

g keeps the size of v on the normalised axis `dim` and is 1 elsewhere:
    dim=0: g (C_out, 1, 1), v (C_out, C_in/groups, K)
    dim=2: g (1, 1, K)      (wav2vec2's positional conv)
MindSpore's layers have no weight norm: the pair folds into one plain `weight`
(--fold-weight-norm), or is kept for a port that implements weight norm itself (MindOne's cells
do), each half reshaped as the layer's weight is (a Conv1d's unit axis: v (C_out, C_in/g, 1, K),
g (C_out, 1, 1, 1)).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from convmigrate.vocab import ParamFamily

# The MindSpore layer that a weight-normalised layer of each family becomes, for messages.
MINDSPORE_LAYERS: dict[ParamFamily | str, str] = {
    ParamFamily.CONV1D: "nn.Conv1d",
    ParamFamily.CONV2D: "nn.Conv2d",
    ParamFamily.LINEAR: "nn.Dense",
    ParamFamily.EMBEDDING: "nn.Embedding",
}

# (g suffix, v suffix) after "<layer>."; the folded parameter is "<layer>.weight".
WEIGHT_NORM_FORMS: tuple[tuple[str, str], ...] = (
    ("weight_g", "weight_v"),
    ("parametrizations.weight.original0", "parametrizations.weight.original1"),
)


@dataclass(frozen=True)
class WeightNormPair:
    layer: str
    g: str
    v: str

    @property
    def folded_name(self) -> str:
        return f"{self.layer}.weight" if self.layer else "weight"


def find_weight_norm_pairs(names: Iterable[str]) -> list[WeightNormPair]:
    """Every complete (g, v) pair among `names`, in the order the v names appear."""
    present = set(names)
    pairs = []
    for name in present:
        for g_suffix, v_suffix in WEIGHT_NORM_FORMS:
            if name == v_suffix or name.endswith("." + v_suffix):
                layer = name[: -len(v_suffix)].rstrip(".")
                g_name = f"{layer}.{g_suffix}" if layer else g_suffix
                if g_name in present:
                    pairs.append(WeightNormPair(layer, g_name, name))
    return sorted(pairs, key=lambda p: p.v)


def infer_dim(g_shape: Sequence[int], v_shape: Sequence[int]) -> int | None:
    """The axis weight norm kept, from g's shape; None means the norm over the whole tensor.

    Raises ValueError when g does not fit v.
    """
    if len(g_shape) == 0 or all(s == 1 for s in g_shape):
        # A whole-tensor norm, or a kept axis of size 1 (where both are the same thing).
        return None
    if len(g_shape) != len(v_shape):
        raise ValueError(f"weight norm g {tuple(g_shape)} does not fit v {tuple(v_shape)}")
    kept = [axis for axis, size in enumerate(g_shape) if size != 1]
    if len(kept) != 1 or g_shape[kept[0]] != v_shape[kept[0]]:
        raise ValueError(f"weight norm g {tuple(g_shape)} does not fit v {tuple(v_shape)}")
    return kept[0]
