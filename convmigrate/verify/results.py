"""What a verification found: per conv layer, per other tensor, and the whole."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LayerCheck:
    name: str
    kind: str
    weight: str  # the original's weight name (or its g/v names joined)
    target: str
    max_abs: float
    max_rel: float
    passed: bool
    detail: str = ""


@dataclass
class TensorCheck:
    source: str
    target: str
    passed: bool
    detail: str = ""


@dataclass
class Verification:
    layers: list[LayerCheck] = field(default_factory=list)
    tensors: list[TensorCheck] = field(default_factory=list)
    seed: int = 0

    def failures(self) -> list[str]:
        failed = [c.name for c in self.layers if not c.passed]
        return failed + [c.target for c in self.tensors if not c.passed]

    @property
    def passed(self) -> bool:
        return not self.failures()

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
        }
