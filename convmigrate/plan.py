"""The migration plan: every decision, with its reason, made before anything is written.

`build_plan` looks only at names, shapes and dtypes (no bytes, no I/O) and returns a `Plan`: one
`Step` per output tensor (or per dropped input), plus `Problem`s the user must hear about. The
CLI prints it (`--dry-run`), serialises it (`--report`), and `migrate.py` executes it.

Authority, strongest first: a reference checkpoint (exact names and shapes), `--conv1d` and
`--exclude` patterns, the user's TOML rules, then the built-in rules (rules/names.py), whose
uncertain matches are reported as guesses (errors under `--strict`).
"""

from __future__ import annotations

import enum
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase

from convmigrate.entries import Entry, TensorEntry
from convmigrate.rules.conv import looks_like_conv1d, mindspore_to_torch_shape, torch_to_mindspore_shape
from convmigrate.rules.extras import is_training_extra
from convmigrate.rules.names import NameRules, join_name, split_name
from convmigrate.rules.weight_norm import MINDSPORE_LAYERS, WeightNormPair, find_weight_norm_pairs, infer_dim
from convmigrate.vocab import Framework, Layout, ParamFamily, ProblemCode


class Direction(str, enum.Enum):
    TORCH_TO_MS = "torch2ms"
    MS_TO_TORCH = "ms2torch"

    @property
    def source(self) -> Framework:
        return Framework.TORCH if self is Direction.TORCH_TO_MS else Framework.MINDSPORE


class Op(str, enum.Enum):
    COPY = "copy"  # same name, same shape, same bytes
    RENAME = "rename"  # new name, same shape and bytes
    RESHAPE = "reshape"  # unit axis inserted/removed (maybe renamed too): same bytes
    FOLD_WEIGHT_NORM = "fold_weight_norm"  # g, v -> weight (computed)
    CREATE = "create"  # a parameter the target needs and the source lacks (num_batches_tracked)
    DROP = "drop"  # not written


class Confidence(str, enum.Enum):
    REFERENCE = "reference"  # the reference checkpoint names it
    PATTERN = "pattern"  # --conv1d / --exclude
    RULE = "rule"  # a certain built-in or user rule
    GUESS = "guess"  # an uncertain rule: reported; an error under --strict


@dataclass(frozen=True)
class SourceInfo:
    """What the planner knows of an input entry: never its bytes."""

    name: str
    shape: tuple[int, ...] | None  # None: a plain value, not a tensor
    dtype: str | None


@dataclass
class Step:
    sources: list[str]
    target: str | None
    op: Op
    source_shape: list[int] | None
    target_shape: list[int] | None
    dtype: str | None
    layer_kind: ParamFamily | str | None  # the layer's parameter family (a str: one the user's rules define)
    confidence: Confidence
    reason: str
    fold_dim: int | None = None  # FOLD_WEIGHT_NORM only: the axis g keeps (None: whole tensor)
    layer: str = ""  # the layer the tensor belongs to, as the input names it ("" for the root)

    def to_json(self) -> dict:
        data = asdict(self)
        data["op"] = self.op.value
        data["confidence"] = self.confidence.value
        data["layer_kind"] = None if self.layer_kind is None else str(self.layer_kind)
        if self.op is not Op.FOLD_WEIGHT_NORM:
            del data["fold_dim"]
        return data


class Severity(str, enum.Enum):
    ERROR = "error"  # the run fails (exit 1)
    WARNING = "warning"  # reported; an error under --strict


@dataclass
class Problem:
    severity: Severity
    code: ProblemCode
    name: str
    message: str

    def to_json(self) -> dict:
        return {"severity": self.severity.value, "code": self.code.value, "name": self.name, "message": self.message}


@dataclass
class Plan:
    direction: Direction
    layout: Layout
    steps: list[Step] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    strict: bool = False

    @property
    def written(self) -> list[Step]:
        return [s for s in self.steps if s.op is not Op.DROP]

    def failures(self) -> list[Problem]:
        """Problems that fail the run: errors, and under --strict warnings too."""
        return [p for p in self.problems if p.severity is Severity.ERROR or self.strict]

    def counts(self) -> dict[str, int]:
        counts = {op.value: 0 for op in Op}
        for step in self.steps:
            counts[step.op.value] += 1
        return counts

    def to_json(self) -> dict:
        return {
            "direction": self.direction.value,
            "layout": self.layout.value,
            "strict": self.strict,
            "counts": self.counts(),
            "steps": [s.to_json() for s in self.steps],
            "problems": [p.to_json() for p in self.problems],
        }


@dataclass
class PlanOptions:
    direction: Direction
    layout: Layout = Layout.NN
    rules: NameRules = field(default_factory=NameRules)
    reference: Mapping[str, tuple[int, ...]] | None = None  # target name -> shape
    conv1d_patterns: Sequence[str] = ()
    exclude_patterns: Sequence[str] = ()
    fold_weight_norm: bool = False
    keep_extras: bool = False
    strict: bool = False
    # The reference is the converted file under verification, not a model to fit: a tensor it
    # lacks keeps its planned target (the verification reports it missing, and each of its own
    # tensors that nothing produces as extra), training state and parameters without a
    # counterpart are paired with it when it has them, and dropped (with their reason) when not.
    reference_is_output: bool = False
    # The reference is the target network itself (--ms-model, ms2torch --model): a parameter it
    # has that nothing fills, or a tensor it has no place for, fails the run.
    exact_reference: bool = False


def _matches(name: str, patterns: Sequence[str]) -> str | None:
    return next((p for p in patterns if fnmatchcase(name, p)), None)


class _Planner:
    """Builds a Plan in passes; each pass claims the sources it decides."""

    def __init__(self, sources: Sequence[SourceInfo], options: PlanOptions) -> None:
        self.options = options
        self.sources = {s.name: s for s in sources}
        self.order = [s.name for s in sources]
        self.plan = Plan(options.direction, options.layout, strict=options.strict)
        self.claimed: set[str] = set()
        self.direction = options.direction
        self.source_framework = options.direction.source
        self.folded: dict[str, tuple[WeightNormPair, int | None]] = {}  # folded weight -> (pair, dim)
        self.kept: dict[str, WeightNormPair] = {}  # g or v name of a pair kept as it is -> the pair
        self.virtual: dict[str, tuple[int, ...]] = {}  # each pair's plain weight name -> v's shape

    # -- helpers -----------------------------------------------------------------------------
    def problem(self, severity: Severity, code: ProblemCode, name: str, message: str) -> None:
        self.plan.problems.append(Problem(severity, code, name, message))

    def add(self, step: Step) -> None:
        self.plan.steps.append(step)
        self.claimed.update(step.sources)

    def converts_layout(self) -> bool:
        """Whether Conv1d weights change shape: only for MindSpore's nn layout."""
        return self.options.layout is Layout.NN

    def renames(self) -> bool:
        return self.options.layout is Layout.NN

    def conv_target_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.direction is Direction.TORCH_TO_MS:
            return torch_to_mindspore_shape(shape)
        return mindspore_to_torch_shape(shape)

    def mapped(self, name: str) -> str:
        return self.options.rules.map_prefix(name, self.source_framework)

    # -- passes ------------------------------------------------------------------------------
    def exclusions_and_extras(self) -> None:
        for name in self.order:
            info = self.sources[name]
            layer = split_name(name)[0]
            pattern = _matches(name, self.options.exclude_patterns)
            if pattern is not None:
                self.add(Step([name], name, Op.COPY, _list(info.shape), _list(info.shape), info.dtype, None,
                              Confidence.PATTERN, f"--exclude {pattern!r}: kept untouched", layer=layer))
            elif info.shape is None or is_training_extra(name):
                what = "plain value" if info.shape is None else "training state (optimizer slot or counter)"
                if self.options.keep_extras:
                    self.add(Step([name], name, Op.COPY, _list(info.shape), _list(info.shape), info.dtype, None,
                                  Confidence.RULE, f"{what}: kept (--keep-extras)", layer=layer))
                else:
                    self.add(Step([name], None, Op.DROP, _list(info.shape), None, info.dtype, None,
                                  Confidence.RULE, f"{what}: not a model parameter (pass --keep-extras to keep it)",
                                  layer=layer))

    def weight_norm(self) -> None:
        """Find weight-normalised layers: each pair is folded into one weight, or kept.

        Every pair's plain weight (`virtual`) stands in its layer's parameters, so the layer (and
        its bias) is classified as it would be without weight norm.
        """
        for pair in find_weight_norm_pairs(n for n in self.order if n not in self.claimed):
            g, v = self.sources[pair.g], self.sources[pair.v]
            self.virtual[pair.folded_name] = v.shape or ()
            self.claimed.update((pair.g, pair.v))
            if not self.folds(pair):
                self.kept[pair.g] = self.kept[pair.v] = pair
                continue
            try:
                dim = infer_dim(g.shape or (), v.shape or ())
            except ValueError as exc:
                self.problem(Severity.ERROR, ProblemCode.WEIGHT_NORM, pair.layer, f"{pair.layer}: {exc}")
                self.kept[pair.g] = self.kept[pair.v] = pair
                continue
            self.folded[pair.folded_name] = (pair, dim)

    def folds(self, pair: WeightNormPair) -> bool:
        """Fold a pair or keep it: a reference holding one form decides (either half: the pair, so
        that a missing half is reported as missing), else --fold-weight-norm."""
        reference = self.options.reference
        if reference is not None:
            kept_there = self.mapped(pair.g) in reference or self.mapped(pair.v) in reference
            folded_there = self.mapped(pair.folded_name) in reference
            if kept_there != folded_there:
                return folded_there
        return self.options.fold_weight_norm

    def layers(self) -> None:
        # Every unclaimed tensor (and each weight-normalised weight) belongs to the layer named by its prefix.
        params: dict[str, dict[str, tuple[int, ...]]] = defaultdict(dict)
        for name in self.order:
            if name not in self.claimed:
                layer, suffix = split_name(name)
                params[layer][suffix] = self.sources[name].shape or ()
        for weight_name, shape in self.virtual.items():
            layer, suffix = split_name(weight_name)
            params[layer][suffix] = shape
        # Emit in input order: a folded weight stands where its v stood.
        v_to_folded = {pair.v: name for name, (pair, _d) in self.folded.items()}
        warned: set[str] = set()
        for name in self.order:
            if name in v_to_folded:
                self.layer_param(v_to_folded[name], params)
            elif name in self.kept:
                self.kept_half(name, params, warned)
            elif name not in self.claimed:
                self.layer_param(name, params)
        if self.direction is Direction.MS_TO_TORCH and self.renames():
            self.created_params(params)

    def layer_param(self, name: str, params: Mapping[str, Mapping[str, tuple[int, ...]]]) -> None:
        layer, suffix = split_name(name)
        siblings = params[layer]
        shape = tuple(siblings[suffix])
        pair_dim = self.folded.get(name)
        sources = [pair_dim[0].g, pair_dim[0].v] if pair_dim else [name]
        dtype = self.sources[sources[-1]].dtype

        kind, confidence, why = self.classify(name, layer, siblings)
        target_suffix = suffix
        if self.renames():
            _, target_suffix = self.options.rules.rename(kind, suffix, self.source_framework)
        if target_suffix is None:
            self.add(Step(sources, None, Op.DROP, list(shape), None, dtype, kind, confidence,
                          f"{kind}: {suffix} has no counterpart in MindSpore", layer=layer))
            return
        target = self.mapped(join_name(layer, target_suffix))
        target_shape = shape
        op = Op.RENAME if target != name else Op.COPY
        is_conv = kind is ParamFamily.CONV1D and suffix == "weight"
        if is_conv and self.converts_layout():
            target_shape = self.conv_target_shape(shape)
            op = Op.RESHAPE
        if pair_dim:
            op = Op.FOLD_WEIGHT_NORM
        reason = f"{kind or 'unknown layer'} ({why})"
        if pair_dim:
            reason += f"; weight norm folded over all axes but {pair_dim[1]}" if pair_dim[1] is not None \
                else "; weight norm folded over the whole tensor"
        if kind is None and self.renames() and self.options.rules.renames_anywhere(suffix, self.source_framework):
            self.problem(Severity.WARNING, ProblemCode.AMBIGUOUS, name,
                         f"{name}: undecided: neither its shapes nor its name tell which layer this is, so its name "
                         "is kept; name the layer's kind with --rules or pass --reference")
        if confidence is Confidence.GUESS and (op is not Op.COPY or suffix == "weight"):
            self.problem(Severity.WARNING, ProblemCode.GUESS, name,
                         f"{name}: guessed {kind} ({why}); confirm with --reference, --conv1d or --rules")
        self.add(Step(sources, target, op, list(shape), list(target_shape), dtype, kind, confidence, reason,
                      fold_dim=pair_dim[1] if pair_dim else None, layer=layer))

    def kept_half(self, name: str, params: Mapping[str, Mapping[str, tuple[int, ...]]], warned: set[str]) -> None:
        """One half (g or v) of a weight-normalised layer kept as a pair: reshaped as the layer's
        weight is (a Conv1d's unit axis goes into both halves), its name kept."""
        pair = self.kept[name]
        info = self.sources[name]
        shape = tuple(info.shape or ())
        v_shape = tuple(self.sources[pair.v].shape or ())
        kind, confidence, why = self.classify(pair.folded_name, pair.layer, params[pair.layer])
        target, target_shape = self.mapped(name), shape
        if kind is ParamFamily.CONV1D and self.converts_layout() and len(shape) == len(v_shape) and self.fits_conv(shape):
            target_shape = self.conv_target_shape(shape)
        op = Op.RESHAPE if target_shape != shape else Op.RENAME if target != name else Op.COPY
        half = "v" if name == pair.v else "g"
        if pair.layer not in warned:
            warned.add(pair.layer)
            self.weight_norm_kept(pair, kind)
            if confidence is Confidence.GUESS:
                self.problem(Severity.WARNING, ProblemCode.GUESS, pair.v,
                             f"{pair.v}: guessed {kind} ({why}); confirm with --reference, --conv1d or --rules")
        self.add(Step([name], target, op, list(shape), list(target_shape), info.dtype, kind, confidence,
                      f"{kind or 'unknown layer'} ({why}); weight norm's {half} kept (--fold-weight-norm folds the pair)",
                      layer=pair.layer))

    def fits_conv(self, shape: tuple[int, ...]) -> bool:
        """Whether a kept half has the conv weight's layout: 3-D (PyTorch) or 4-D with a unit third axis."""
        if self.direction is Direction.TORCH_TO_MS:
            return len(shape) == 3
        return len(shape) == 4 and shape[2] == 1

    def weight_norm_kept(self, pair: WeightNormPair, kind: ParamFamily | str | None) -> None:
        """A pair kept into MindSpore is worth a warning: none of MindSpore's layers has weight norm."""
        if self.direction is not Direction.TORCH_TO_MS or self.options.reference_is_output:
            return  # (verifying: the converted file kept it, and only its bytes are in question)
        what = f"a weight-normalised {kind}" if kind is not None else "weight-normalised"
        target = MINDSPORE_LAYERS.get(kind or "", "layers")
        self.problem(Severity.WARNING, ProblemCode.WEIGHT_NORM, pair.layer,
                     f"{pair.layer} is {what} ({pair.g}, {pair.v}); MindSpore's {target} has no weight norm: "
                     "pass --fold-weight-norm to fold them into one weight (kept, the pair suits only a port "
                     "that implements weight norm itself)")

    def classify(self, name: str, layer: str, siblings: Mapping[str, tuple[int, ...]]) -> tuple[ParamFamily | str | None, Confidence, str]:
        pattern = _matches(name, self.options.conv1d_patterns)
        if pattern is not None:
            if looks_like_conv1d(name, siblings[split_name(name)[1]], self.source_framework):
                return ParamFamily.CONV1D, Confidence.PATTERN, f"--conv1d {pattern!r}"
            self.problem(Severity.ERROR, ProblemCode.PATTERN, name,
                         f"--conv1d {pattern!r} names {name} {tuple(siblings[split_name(name)[1]])}, "
                         "which is not a Conv1d weight in this layout; narrow the pattern")
        guess = self.options.rules.classify(layer, siblings, self.source_framework)
        return guess.kind, Confidence.RULE if guess.certain else Confidence.GUESS, guess.why

    def created_params(self, params: Mapping[str, Mapping[str, tuple[int, ...]]]) -> None:
        """ms2torch: parameters PyTorch has and MindSpore lacks (BatchNorm's num_batches_tracked)."""
        for layer, siblings in params.items():
            guess = self.options.rules.classify(layer, siblings, Framework.MINDSPORE)
            for suffix in self.options.rules.created_on_torch_side(guess.kind):
                self.add(Step([], join_name(layer, suffix), Op.CREATE, None, [], "int64", guess.kind,
                              Confidence.RULE, f"{guess.kind}: PyTorch keeps {suffix}; MindSpore has none, so it starts at 0",
                              layer=layer))

    # -- the reference -------------------------------------------------------------------------
    def apply_reference(self) -> None:
        reference = self.options.reference
        if reference is None:
            return
        schemes = self.layer_schemes(reference)
        produced: dict[str, Step] = {}
        for step in self.plan.steps:
            if step.op is Op.DROP:
                if self.options.reference_is_output:
                    self.follow_output(step, reference)
            else:
                self.resolve_against_reference(step, reference, schemes.get(step.layer))
            if step.op is Op.DROP or step.target is None:
                continue
            if step.target in produced:
                self.problem(Severity.ERROR, ProblemCode.DUPLICATE, step.target,
                             f"{step.target} would be written twice (from {produced[step.target].sources} and {step.sources})")
            produced[step.target] = step
        for name, shape in reference.items():
            if name in produced:
                continue
            layer, suffix = split_name(name)
            if suffix == "num_batches_tracked" and tuple(shape) == ():
                self.add(Step([], name, Op.CREATE, None, [], "int64", ParamFamily.BATCH_NORM, Confidence.REFERENCE,
                              "the reference has it and the source does not: it starts at 0", layer=layer))
            elif not self.options.reference_is_output:
                self.problem(self.reference_severity(), ProblemCode.MISSING, name,
                             f"{name} {tuple(shape)}: in the reference, not produced from the input")

    def reference_severity(self) -> Severity:
        return Severity.ERROR if self.options.exact_reference else Severity.WARNING

    def candidates(self, step: Step) -> dict[str, tuple[str, ParamFamily | str | None]]:
        """Every name the reference may give `step`'s tensor, by naming scheme: "planned" (the
        rules' target), "kept" (the source's own name: mindspore.mint keeps PyTorch's names),
        and each parameter family that would rename it. Scheme -> (name, family)."""
        names: dict[str, tuple[str, ParamFamily | str | None]] = {}
        if step.target:
            names["planned"] = (step.target, step.layer_kind)
        if step.op is Op.CREATE:
            return names
        source = step.sources[-1] if step.op is not Op.FOLD_WEIGHT_NORM else str(step.target)
        if step.op is not Op.FOLD_WEIGHT_NORM:
            names["kept"] = (self.mapped(source), step.layer_kind)
        layer, suffix = split_name(source)
        for family in self.options.rules.param_names:
            known, renamed = self.options.rules.rename(family, suffix, self.source_framework)
            if known and renamed:
                names.setdefault(str(family), (self.mapped(join_name(layer, renamed)), family))
        return names

    def layer_schemes(self, reference: Mapping[str, tuple[int, ...]]) -> dict[str, str]:
        """Each layer's naming scheme: the one under which the reference holds most of its tensors
        (the rules' own on a tie). One scheme per layer: a layer is named one way or another, so a
        tensor named the other way (bn.running_mean beside bn.moving_variance) is never paired."""
        counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for step in self.plan.steps:
            if step.op in (Op.DROP, Op.CREATE):
                continue
            for scheme, (name, _family) in self.candidates(step).items():
                counts[step.layer][scheme] += name in reference
        return {layer: max(found, key=lambda scheme: (found[scheme], scheme == "planned"))
                for layer, found in counts.items()}

    def resolve_against_reference(self, step: Step, reference: Mapping[str, tuple[int, ...]], scheme: str | None) -> None:
        if step.op is Op.CREATE:
            if step.target in reference:
                step.confidence, step.target_shape = Confidence.REFERENCE, list(reference[str(step.target)])
            return
        shape = tuple(step.source_shape) if step.source_shape is not None else None
        # The reference outranks every rule: guesses about this step no longer matter.
        self.plan.problems = [p for p in self.plan.problems
                              if not (p.code in (ProblemCode.GUESS, ProblemCode.AMBIGUOUS) and p.name in step.sources)]
        target, family = self.candidates(step).get(scheme or "planned", (None, None))
        if target is None or target not in reference:
            if not self.options.reference_is_output:
                self.problem(self.reference_severity(), ProblemCode.UNEXPECTED, step.sources[0] if step.sources else str(step.target),
                             f"{step.target}: not in the reference; not written")
                step.op, step.target, step.target_shape = Op.DROP, None, None
                step.reason += "; the reference has no such name"
            return  # the converted file lacks it: the verification reports it missing
        want = tuple(reference[target])
        fold = step.op is Op.FOLD_WEIGHT_NORM
        if shape is None or want == shape:
            step.op = Op.FOLD_WEIGHT_NORM if fold else (Op.COPY if target == step.sources[0] else Op.RENAME)
            step.target_shape = list(want)
        elif self.is_unit_axis_change(shape, want):
            step.op = Op.FOLD_WEIGHT_NORM if fold else Op.RESHAPE
            step.target_shape = list(want)
        elif not self.options.reference_is_output:
            # Another number of elements cannot be written in the reference's shape at all.
            severity = self.reference_severity() if math.prod(want) == math.prod(shape) else Severity.ERROR
            self.problem(severity, ProblemCode.SHAPE_MISMATCH, target,
                         f"{target}: the reference has {want}, the input gives {shape}")
            step.target_shape = list(want)
        # (verifying: the planned shape stays, and the verification reports the converted one)
        if family != step.layer_kind:
            step.layer_kind = family
            step.reason = f"{family or 'unknown layer'} (the reference names {target})"
        elif step.target != target or step.confidence is Confidence.GUESS:
            step.reason += f"; the reference names {target}"
        step.target = target
        step.confidence = Confidence.REFERENCE

    def follow_output(self, step: Step, reference: Mapping[str, tuple[int, ...]]) -> None:
        """Verifying: a tensor the conversion may drop (training state, a parameter without a
        counterpart) is paired with the converted file's tensor of its name, if it has one."""
        target = self.mapped(step.sources[0])
        if target not in reference:
            return
        step.op = Op.COPY if target == step.sources[0] else Op.RENAME
        step.target, step.target_shape = target, list(step.source_shape or [])
        step.confidence = Confidence.REFERENCE
        step.reason += "; the converted file keeps it"

    def settle_kinds(self) -> None:
        """A kind the reference decides replaces the guess for the whole layer: a MindSpore
        (C_out, C_in, 1, K) weight that the reference keeps 4-D is a Conv2d's, and so is its bias."""
        if self.options.reference is None or self.direction is not Direction.MS_TO_TORCH:
            return
        settled: dict[str, str] = {}
        for step in self.plan.steps:
            kept_4d = step.source_shape is not None and len(step.source_shape) == 4 and step.target_shape == step.source_shape
            if (step.layer_kind is ParamFamily.CONV1D and step.confidence is Confidence.REFERENCE and kept_4d
                    and step.op is not Op.DROP):
                kernel = tuple(step.source_shape[2:])  # type: ignore[index]
                settled[step.layer] = (f"the reference keeps the 4-D weight {tuple(step.source_shape)}: "  # type: ignore[arg-type]
                                       f"a Conv2d with a {kernel} kernel")
        for step in self.plan.steps:
            if step.layer in settled and step.layer_kind is ParamFamily.CONV1D:
                step.layer_kind = ParamFamily.CONV2D
                step.reason = f"{ParamFamily.CONV2D} ({settled[step.layer]})"

    def is_unit_axis_change(self, shape: tuple[int, ...], want: tuple[int, ...]) -> bool:
        if self.direction is Direction.TORCH_TO_MS:
            return len(shape) == 3 and torch_to_mindspore_shape(shape) == want
        return len(shape) == 4 and shape[2] == 1 and mindspore_to_torch_shape(shape) == want

    def build(self) -> Plan:
        self.exclusions_and_extras()
        self.weight_norm()
        self.layers()
        self.apply_reference()
        self.settle_kinds()
        self.place_created()
        self.plan.steps.sort(key=lambda s: s.op is Op.DROP)  # written steps first, input order kept
        return self.plan

    def place_created(self) -> None:
        """Put each created parameter right after its layer's others, where PyTorch keeps it."""
        steps = [s for s in self.plan.steps if s.op is not Op.CREATE]
        last_of_layer = {split_name(s.target)[0]: i for i, s in enumerate(steps) if s.target}
        after: defaultdict[int, list[Step]] = defaultdict(list)  # step index -> created steps to follow it
        for step in (s for s in self.plan.steps if s.op is Op.CREATE):
            after[last_of_layer.get(split_name(str(step.target))[0], len(steps) - 1)].append(step)
        placed = after[-1]  # with no other steps at all
        for index, step in enumerate(steps):
            placed += [step, *after[index]]
        self.plan.steps = placed


def _list(shape: tuple[int, ...] | None) -> list[int] | None:
    return list(shape) if shape is not None else None


def build_plan(sources: Sequence[SourceInfo], options: PlanOptions) -> Plan:
    """Decide, for every input entry, what the output holds and why. No bytes are read.

    Example:
        >>> plan = build_plan([SourceInfo("conv.weight", (8, 4, 3), "float32")],
        ...                   PlanOptions(Direction.TORCH_TO_MS))
        >>> plan.steps[0].op.value, plan.steps[0].target_shape
        ('reshape', [8, 4, 1, 3])
    """
    return _Planner(sources, options).build()


def source_infos(entries: Iterable[Entry]) -> list[SourceInfo]:
    """What the planner may know of a checkpoint's entries: names, shapes, dtypes (never bytes)."""
    return [SourceInfo(e.name, e.shape, e.dtype.name) if isinstance(e, TensorEntry) else SourceInfo(e.name, None, None)
            for e in entries]
