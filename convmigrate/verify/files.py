"""`verify ORIGINAL CONVERTED`: prove two existing checkpoint files, paired by the migration's plan.

The converted file serves as the plan's reference (its names and shapes), so the pairing is the
one a migration would have made; every pair is then proved by `verify_migration`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from convmigrate import __version__
from convmigrate.errors import CheckFailedError
from convmigrate.formats import open_checkpoint
from convmigrate.plan import Plan, PlanOptions, build_plan, source_infos
from convmigrate.rules.user import load_rules
from convmigrate.verify.conv import setups_from_layers
from convmigrate.verify.results import Verification
from convmigrate.verify.runner import direction_between, verify_migration
from convmigrate.vocab import Format, ProblemCode


@dataclass
class VerifyRequest:
    original: Path
    converted: Path
    layers: Path | None = None  # a layers JSON: verify each conv with its real hyperparameters
    rules: Path | None = None
    conv1d: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    rtol: float | None = None
    atol: float | None = None
    seed: int = 0
    trust_pickle: bool = False
    select: str | None = None  # the original's state dict, in a torch file that holds several

    @property
    def inputs(self) -> list[Path]:
        """Every file this run reads (no report may overwrite one)."""
        return [p for p in (self.original, self.converted, self.layers, self.rules) if p is not None]


# Plan problems that fail a verification: two tensors for one name, a --conv1d that names no conv.
_FAILING_CODES = (ProblemCode.DUPLICATE, ProblemCode.PATTERN)


@dataclass
class VerifyResult:
    request: VerifyRequest
    plan: Plan
    verification: Verification
    original_format: Format
    converted_format: Format

    def failures(self) -> list[str]:
        """Failed tensors (each with its layer), and names the plan cannot place."""
        mismatched = [p.name for p in self.plan.problems if p.code in _FAILING_CODES]
        return self.verification.failures() + mismatched

    @property
    def ok(self) -> bool:
        return not self.failures()

    def error(self) -> CheckFailedError | None:
        """The error this result fails with (exit 1), or None."""
        failures = self.failures()
        if not failures:
            return None
        more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
        return CheckFailedError(f"verification failed for {', '.join(failures[:5])}{more}")

    def to_json(self) -> dict:
        """The report: what `verify --json` prints and `--report` writes."""
        return {
            "convmigrate": __version__,
            "command": "verify",
            "original": {"path": str(self.request.original), "format": self.original_format.value},
            "converted": {"path": str(self.request.converted), "format": self.converted_format.value},
            "direction": self.plan.direction.value,
            "verification": self.verification.to_json(),
            "problems": [p.to_json() for p in self.plan.problems],
            "failures": self.failures(),
            "ok": self.ok,
            "exit_code": 0 if self.ok else CheckFailedError.exit_code,
        }


def verify_files(request: VerifyRequest) -> VerifyResult:
    """Pair ORIGINAL and CONVERTED by the migration's own plan (the converted file as the
    reference) and prove every pair: convs numerically and bit for bit, the rest bit for bit.
    Every tensor of both files is accounted for: missing, extra and renamed ones fail."""
    user_rules = load_rules(request.rules)
    with open_checkpoint(request.original, trust_pickle=request.trust_pickle, select=request.select) as original, \
            open_checkpoint(request.converted, trust_pickle=request.trust_pickle) as converted:
        direction = direction_between(original, converted)
        options = PlanOptions(
            direction=direction,
            rules=user_rules.names,
            reference={e.name: e.shape for e in converted.tensors()},
            conv1d_patterns=[*request.conv1d, *user_rules.conv1d],
            exclude_patterns=[*request.exclude, *user_rules.exclude],
            fold_weight_norm=True,  # unless the converted file keeps the pair (the reference decides)
            reference_is_output=True,
        )
        plan = build_plan(source_infos(original.entries), options)
        layers = setups_from_layers(request.layers, direction) if request.layers else None
        verification = verify_migration(plan, original, converted, layers=layers,
                                        tolerance=(request.rtol, request.atol), seed=request.seed)
        return VerifyResult(request, plan, verification, original.format, converted.format)
