"""torch2ms / ms2torch: reader -> plan -> writer, one tensor at a time.

`run_migration` opens the input lazily, builds the plan from names and shapes alone, and, unless
the plan fails or this is a dry run, writes the target entries: a reshape is a new shape record
over the same memory-mapped bytes, a rename a new name, a fold the only computed tensor.
"""

from __future__ import annotations

import contextlib
import glob
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convmigrate.entries import Checkpoint, Entry, TensorEntry, ValueEntry
from convmigrate.errors import UsageError
from convmigrate.formats import default_output, format_for_output, open_checkpoint, write_checkpoint
from convmigrate.formats.atomic import check_output_path
from convmigrate.plan import Direction, Op, Plan, PlanOptions, SourceInfo, Step, build_plan
from convmigrate.rules.user import load_rules
from convmigrate.transforms import fold_weight_norm
from convmigrate.verify import (
    BackgroundVerification,
    ConvSetup,
    Verification,
    direction_between,
    setup_from_spec,
    setups_from_layers,
    verify_migration,
)
from convmigrate.vocab import Format, Framework, LayerKind, Layout, ParamFamily, ProblemCode


@dataclass
class MigrationRequest:
    input: Path
    direction: Direction
    output: Path | None = None
    output_format: str | None = None  # None: from the output's extension, else the target's default
    layout: Layout = Layout.NN
    reference: Path | None = None
    rules: Path | None = None
    conv1d: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    fold_weight_norm: bool = False
    keep_extras: bool = False
    strict: bool = False
    dry_run: bool = False
    force: bool = False
    trust_pickle: bool = False
    crc: bool = False
    verify: bool = True  # prove the output before it takes the output's name
    fsync: bool = True  # put the output on disk before it takes the output's name
    layers: Path | None = None  # a layers JSON: verify each conv with its real hyperparameters
    model: str | None = None  # torch2ms: "package.module:callable" building the PyTorch model (trusted code)
    rtol: float | None = None
    atol: float | None = None
    seed: int = 0


@dataclass
class MigrationResult:
    request: MigrationRequest
    input_format: Format
    output_format: Format
    output: Path
    plan: Plan
    written: bool
    notes: list[str] = field(default_factory=list)
    tensor_bytes: int = 0
    verification: Verification | None = None
    layers_json: Path | None = None  # written beside the output with --model


def source_infos(checkpoint: Checkpoint) -> list[SourceInfo]:
    return [
        SourceInfo(e.name, e.shape, e.dtype.name) if isinstance(e, TensorEntry) else SourceInfo(e.name, None, None)
        for e in checkpoint.entries
    ]


def reference_shapes(path: Path, trust_pickle: bool) -> dict[str, tuple[int, ...]]:
    with open_checkpoint(path, trust_pickle=trust_pickle) as reference:
        return {e.name: e.shape for e in reference.tensors()}


def _folded_entry(step: Step, by_name: dict[str, Entry]) -> TensorEntry:
    """The weight of a weight-normalised layer, computed when a writer asks for its bytes."""
    g, v = (by_name[n] for n in step.sources)
    assert isinstance(g, TensorEntry) and isinstance(v, TensorEntry)

    def compute() -> tuple[memoryview]:
        folded = fold_weight_norm(g.array(), v.array(), step.fold_dim, v.dtype)
        return (memoryview(np.asarray(folded, order="C")).cast("B"),)

    return TensorEntry(str(step.target), v.dtype, tuple(step.target_shape or v.shape), compute)


def target_entries(plan: Plan, checkpoint: Checkpoint) -> list[Entry]:
    """The output entries, lazily: no tensor bytes are touched here."""
    by_name = {e.name: e for e in checkpoint.entries}
    entries: list[Entry] = []
    for step in plan.written:
        if step.op is Op.CREATE:
            entries.append(TensorEntry.from_array(str(step.target), np.zeros(step.target_shape or (), np.int64)))
        elif step.op is Op.FOLD_WEIGHT_NORM:
            entries.append(_folded_entry(step, by_name))
        else:
            source = by_name[step.sources[0]]
            if isinstance(source, ValueEntry):
                entries.append(ValueEntry(str(step.target), source.value))
            else:
                entries.append(source.renamed(str(step.target)).with_shape(step.target_shape or source.shape))
    return entries


@dataclass
class ModelLayers:
    """What `--model` tells: each module's kind and parameter family, and the translated, verified layer specs."""

    kinds: list[tuple[str, ParamFamily, LayerKind]]  # (module name, its parameters' family, its kind)
    specs: list  # list[layers.LayerSpec], translated PyTorch -> MindSpore and verified

    def conv_setups(self) -> dict[str, ConvSetup]:
        return {spec.name: setup_from_spec(spec) for spec in self.specs if spec.kind.is_conv}

    def notes(self) -> list[str]:
        return [f"{spec.name}: {difference}" for spec in self.specs for difference in spec.default_differences]


def model_layers(factory: str) -> ModelLayers:
    """Build the user's model and read every module the migration and verification care about."""
    import torch

    from convmigrate.layers import module_layers, translate_layer
    from convmigrate.layers.model import load_factory

    model = load_factory(factory)()
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"--model {factory}: returned {type(model).__name__}, not a torch.nn.Module")
    kinds: list[tuple[str, ParamFamily, LayerKind]] = []
    specs = []
    for name, kind, kwargs in module_layers(model):
        family = kind.family
        if kind is LayerKind.INSTANCE_NORM1D and kwargs.get("track_running_stats"):
            family = ParamFamily.BATCH_NORM  # its running statistics are named like BatchNorm's
        kinds.append((name, family, kind))
        specs.append(translate_layer(kind, Framework.TORCH, kwargs, name))
    kinds += [(name, LayerKind.LINEAR.family, LayerKind.LINEAR)
              for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    return ModelLayers(kinds, specs)


# Given the total tensor bytes to write, a context that yields a callback(bytes written).
ProgressFactory = Callable[[int], contextlib.AbstractContextManager[Callable[[int], None]]]


def _no_progress(_total: int) -> contextlib.AbstractContextManager[Callable[[int], None]]:
    return contextlib.nullcontext(lambda _n: None)


def run_migration(request: MigrationRequest, progress: ProgressFactory = _no_progress) -> MigrationResult:
    """Plan and (unless the plan fails or it is a dry run) write the migrated checkpoint."""
    if request.output is not None:  # before anything else: "the output is the input" is the first thing to hear
        check_output_path(request.output, [request.input], request.force)
    output_format = format_for_output(request.output, request.output_format, request.direction.source.other)
    user_rules = load_rules(request.rules)
    from_model = None
    if request.model is not None:
        if request.direction is not Direction.TORCH_TO_MS:
            raise UsageError("--model names a PyTorch model: it applies to torch2ms")
        from_model = model_layers(request.model)
        # The model's modules outrank every built-in rule, and only its convs are convs.
        user_rules.names.forced_kinds[:0] = [
            (glob.escape(name), family, f"--model: a {kind} module") for name, family, kind in from_model.kinds
        ]
        user_rules.names.exclusive = True
    reference = reference_shapes(request.reference, request.trust_pickle) if request.reference else None
    options = PlanOptions(
        direction=request.direction,
        layout=request.layout,
        rules=user_rules.names,
        reference=reference,
        conv1d_patterns=[*request.conv1d, *user_rules.conv1d],
        exclude_patterns=[*request.exclude, *user_rules.exclude],
        fold_weight_norm=request.fold_weight_norm,
        keep_extras=request.keep_extras,
        strict=request.strict,
    )
    with open_checkpoint(request.input, trust_pickle=request.trust_pickle) as checkpoint:
        output = request.output or default_output(request.input, output_format)
        plan = build_plan(source_infos(checkpoint), options)
        result = MigrationResult(request, checkpoint.format, output_format, output, plan, written=False,
                                 notes=list(checkpoint.notes) + (from_model.notes() if from_model else []))
        if request.dry_run or plan.failures():
            return result
        if request.output is None:
            check_output_path(output, [request.input], request.force)
        layers = setups_from_layers(request.layers, request.direction) if request.layers and request.verify else None
        if from_model is not None:
            layers = {**from_model.conv_setups(), **(layers or {})}
        entries = target_entries(plan, checkpoint)
        result.tensor_bytes = sum(e.nbytes for e in entries if isinstance(e, TensorEntry))
        metadata = {"converted_by": "convmigrate", "direction": request.direction.value}

        # The original's side of the verification runs while the output is being written.
        verification = BackgroundVerification(
            plan, checkpoint, layers=layers, tolerance=(request.rtol, request.atol), seed=request.seed
        ) if request.verify else None

        def verified(written: Path) -> bool:
            """Prove the complete temporary file before it may take the output's name."""
            assert verification is not None
            with open_checkpoint(written) as converted:
                result.verification = verification.finish(converted)
            return result.verification.passed

        # Written to a temporary file beside `output`, verified there, and only then renamed:
        # a result that fails verification (or a failed write) never takes the output's place.
        try:
            if verification is not None:
                verification.start()
            with progress(result.tensor_bytes) as on_bytes:
                write_checkpoint(output, entries, output_format, metadata=metadata, crc=request.crc,
                                 inputs=[request.input], force=request.force, on_bytes=on_bytes,
                                 check=verified if verification is not None else None, durable=request.fsync)
        finally:
            if verification is not None:
                verification.stop()
        result.written = result.verification is None or result.verification.passed
        if result.written and from_model is not None:
            from convmigrate.layers import write_layers_json

            result.layers_json = write_layers_json(layers_json_path(output), from_model.specs)
    return result


def layers_json_path(output: Path) -> Path:
    """model.ckpt -> model.layers.json, beside it."""
    return output.with_name(output.name.rsplit(".", 1)[0] + ".layers.json")


@dataclass
class VerifyRequest:
    original: Path
    converted: Path
    layers: Path | None = None
    rules: Path | None = None
    conv1d: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    rtol: float | None = None
    atol: float | None = None
    seed: int = 0
    trust_pickle: bool = False


# Plan problems that fail a verification: the converted file contradicts the plan.
_FAILING_CODES = (ProblemCode.SHAPE_MISMATCH, ProblemCode.DUPLICATE, ProblemCode.PATTERN)


@dataclass
class VerifyResult:
    plan: Plan
    verification: Verification
    original_format: Format
    converted_format: Format

    def failures(self) -> list[str]:
        """Failed layers and tensors, and names whose shapes disagree with the plan."""
        mismatched = [p.name for p in self.plan.problems if p.code in _FAILING_CODES]
        return self.verification.failures() + mismatched


def run_verification(request: VerifyRequest) -> VerifyResult:
    """Pair ORIGINAL and CONVERTED by the migration's own plan (the converted file as the
    reference) and prove every pair: convs numerically, the rest bit for bit."""
    user_rules = load_rules(request.rules)
    with open_checkpoint(request.original, trust_pickle=request.trust_pickle) as original, \
            open_checkpoint(request.converted, trust_pickle=request.trust_pickle) as converted:
        direction = direction_between(original, converted)
        options = PlanOptions(
            direction=direction,
            rules=user_rules.names,
            reference={e.name: e.shape for e in converted.tensors()},
            conv1d_patterns=[*request.conv1d, *user_rules.conv1d],
            exclude_patterns=[*request.exclude, *user_rules.exclude],
            fold_weight_norm=True,
            keep_extras=True,
        )
        plan = build_plan(source_infos(original), options)
        layers = setups_from_layers(request.layers, direction) if request.layers else None
        verification = verify_migration(plan, original, converted, layers=layers,
                                        tolerance=(request.rtol, request.atol), seed=request.seed)
        return VerifyResult(plan, verification, original.format, converted.format)
