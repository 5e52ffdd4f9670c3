"""What a verification found: per conv layer, per other tensor, what was dropped, and the whole.

Every tensor of both files is accounted for: each check names its tensor and its layer, and a
failed one says why with a `ProblemCode` (missing, extra, renamed, dtype, shape, bytes, numerics).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from convmigrate.vocab import ProblemCode

ROOT_LAYER = "(root)"  # how a tensor without a prefix ("weight") names its layer
# What a layer's numerics ran on (LayerCheck.numerics).
OWN_WEIGHTS = "own weights"  # its own (a computed weight, or one whose bytes differ)
RANDOM_WEIGHTS = "random weights of its configuration"  # its bytes are the original's


@dataclass
class LayerCheck:
    """One conv layer, run under both frameworks' semantics (and its weight compared bit for bit)."""

    name: str  # the layer
    kind: str
    weight: str  # the original's weight name (or its g/v names joined)
    target: str
    max_abs: float
    max_rel: float
    passed: bool
    detail: str = ""
    code: ProblemCode | None = None  # why it failed
    # The converted weight's bytes are the original's (None: a computed weight, proven by the numerics alone).
    bit_exact: bool | None = None
    numerics: str = OWN_WEIGHTS  # or RANDOM_WEIGHTS: the numbers above are its configuration's

    @property
    def label(self) -> str:
        """The failing tensor and its layer, as the one-line error names them."""
        return f"{self.target} (layer {self.name})"


@dataclass
class TensorCheck:
    """One tensor compared bit for bit (or a computed one numerically), or one that has no pair."""

    source: str  # the original's tensor ("" for one the conversion creates, or an extra one)
    target: str  # the converted file's tensor ("" for an original tensor the conversion cannot place)
    passed: bool
    detail: str = ""
    layer: str = ""
    kind: str | None = None
    code: ProblemCode | None = None

    @property
    def label(self) -> str:
        return f"{self.target or self.source} (layer {self.layer or ROOT_LAYER})"


@dataclass
class Dropped:
    """An original tensor the conversion leaves out on purpose, and why (listed in the report)."""

    source: str
    layer: str
    kind: str | None
    reason: str


@dataclass
class Verification:
    layers: list[LayerCheck] = field(default_factory=list)
    tensors: list[TensorCheck] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    seed: int = 0

    def failed(self) -> list[LayerCheck | TensorCheck]:
        return [c for c in self.layers if not c.passed] + [c for c in self.tensors if not c.passed]

    def failures(self) -> list[str]:
        """Each failing tensor with its layer: "bn.moving_mean (layer bn)"."""
        return [check.label for check in self.failed()]

    @property
    def passed(self) -> bool:
        return not self.failed()

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "seed": self.seed,
            "layers": [vars(c) for c in self.layers],
            "tensors": {
                "compared": len(self.tensors),
                "identical": sum(c.passed for c in self.tensors),
                "failed": [vars(c) for c in self.tensors if not c.passed],
            },
            "dropped": [vars(d) for d in self.dropped],
        }
