"""torch2ms / ms2torch: reader -> plan -> writer, one tensor at a time.

`run_migration` opens the input lazily, builds the plan from names and shapes alone, and, unless
the plan fails or this is a dry run, writes the target entries: a reshape is a new shape record
over the same memory-mapped bytes, a rename a new name, a fold the only computed tensor.
"""

from __future__ import annotations

import contextlib
import glob
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from convmigrate import __version__
from convmigrate.entries import Checkpoint, Entry, TensorEntry, ValueEntry
from convmigrate.errors import CheckFailedError, UsageError
from convmigrate.formats import default_output, format_for_output, open_checkpoint, write_checkpoint
from convmigrate.formats.atomic import check_output_path, check_side_outputs
from convmigrate.formats.bytecopy import observed_copies
from convmigrate.formats.shards import INDEX_SUFFIX, is_sharded, sharded_output
from convmigrate.plan import Direction, Op, Plan, PlanOptions, Step, build_plan, source_infos
from convmigrate.rules.user import load_rules
from convmigrate.transforms import fold_weight_norm
from convmigrate.verify import BackgroundVerification, Verification, setup_from_spec, setups_from_layers
from convmigrate.verify.conv import ConvSetup
from convmigrate.vocab import Format, Layout


@dataclass
class MigrationRequest:
    """Everything a torch2ms / ms2torch run is asked to do (the CLI's options, by name)."""

    input: Path
    direction: Direction
    output: Path | None = None  # None: beside the input, with the output format's extension
    output_format: str | Format | None = None  # None: from the output's extension, else the target's default
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
    select: str | None = None  # the input's state dict, in a torch file that holds several
    crc: bool = False
    verify: bool = True  # prove the output before it takes the output's name
    fsync: bool = True  # put the output on disk before it takes the output's name
    layers: Path | None = None  # a layers JSON: verify each conv with its real hyperparameters
    # "package.module:callable" building the PyTorch model (trusted code). torch2ms: its modules
    # decide layer kinds; ms2torch: it is the exact reference (every target name and shape).
    model: str | None = None
    ms_model: str | None = None  # torch2ms: builds the MindSpore network, the exact reference
    # A network's names and shapes read already (compare builds the networks once): exact reference.
    reference_network: Mapping[str, tuple[int, ...]] | None = None
    rtol: float | None = None
    atol: float | None = None
    seed: int = 0
    # Files the caller writes after the run ({"--report": path}): checked with the output before
    # anything is written, so that a bad report path never fails a run whose output is already written.
    side_outputs: Mapping[str, Path] = field(default_factory=dict)
    max_shard_size: str | int | None = None  # a sharded output, split anew ("5GB", as transformers spells it)
    jobs: int | None = None  # shards written at once (None: one per core)

    def reference_label(self) -> str | None:
        """What gave the target's names and shapes: a checkpoint, or the target network itself."""
        if self.reference is not None:
            return str(self.reference)
        if self.direction is Direction.TORCH_TO_MS and self.ms_model:
            return f"{self.ms_model} (the MindSpore network)"
        if self.direction is Direction.MS_TO_TORCH and self.model:
            return f"{self.model} (the PyTorch model)"
        return None

    @property
    def inputs(self) -> list[Path]:
        """Every file this run reads (never overwritten)."""
        return [p for p in (self.input, self.reference, self.rules, self.layers) if p is not None]

    def planned_output(self) -> tuple[Path, Format]:
        """Where the output goes (a sharded model: its index) and in which format, before anything is read."""
        target = self.direction.source.other
        sharded = sharded_output(self.input, self.output, self.output_format, target, self.max_shard_size)
        if sharded is not None:
            return sharded
        fmt = format_for_output(self.output, self.output_format, target)
        return (self.output or default_output(self.input, fmt)), fmt


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
    shards: list[Path] = field(default_factory=list)  # a sharded output's shard files (output is its index)

    def failures(self) -> list[str]:
        """The names that fail this run: plan problems (errors, or every warning under --strict),
        then failed layers and tensors of the verification."""
        failed = [p.name for p in self.plan.failures()]
        return failed + (self.verification.failures() if self.verification is not None else [])

    @property
    def ok(self) -> bool:
        return not self.failures()

    def error(self) -> CheckFailedError | None:
        """The error this result fails with (exit 1), or None."""
        if self.plan.failures():
            names = [p.name for p in self.plan.failures()]
            return CheckFailedError(f"{len(names)} problem(s) fail this migration ({_some(names)}); nothing was written")
        if self.verification is not None and not self.verification.passed:
            return CheckFailedError(f"verification failed for {_some(self.verification.failures())}; "
                                    "no output was kept")
        return None

    def to_json(self) -> dict:
        """The report: what `--json` prints and `--report` writes (schema in the README)."""
        return {
            "convmigrate": __version__,
            "command": self.plan.direction.value,
            "input": {"path": str(self.request.input), "format": self.input_format.value},
            "output": {"path": str(self.output), "format": self.output_format.value, "written": self.written,
                       **({"shards": [str(p) for p in self.shards]} if self.shards else {})},
            "reference": self.request.reference_label(),
            "dry_run": self.request.dry_run,
            "notes": self.notes,
            "plan": self.plan.to_json(),
            "verification": self.verification.to_json() if self.verification else None,
            "layers_json": str(self.layers_json) if self.layers_json else None,
            "failures": self.failures(),
            "ok": self.ok,
            "exit_code": 0 if self.ok else CheckFailedError.exit_code,
        }


def _some(names: list[str]) -> str:
    """At most five names, then how many more."""
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def reference_shapes(path: Path, trust_pickle: bool) -> dict[str, tuple[int, ...]]:
    with open_checkpoint(path, trust_pickle=trust_pickle) as reference:
        return {e.name: e.shape for e in reference.tensors()}


def target_reference(request: MigrationRequest) -> tuple[dict[str, tuple[int, ...]] | None, bool]:
    """The target's names and shapes, and whether they are the target network itself (exact):
    `--reference` is a checkpoint of the target model; `--ms-model` (torch2ms) and `--model`
    (ms2torch) build the target network, whose every parameter must be filled."""
    from_network = request.ms_model if request.direction is Direction.TORCH_TO_MS else request.model
    if request.direction is Direction.MS_TO_TORCH and request.ms_model is not None:
        raise UsageError("--ms-model names the target MindSpore network: it applies to torch2ms (ms2torch takes --model)")
    if request.reference is not None and (from_network or request.reference_network is not None):
        option = "--ms-model" if request.direction is Direction.TORCH_TO_MS else "--model"
        raise UsageError(f"--reference and {option} both give the target's names and shapes: give one")
    if request.reference_network is not None:
        return dict(request.reference_network), True
    if from_network is not None:
        from convmigrate.compare.frameworks import (
            build_mindspore_network,
            build_torch_model,
            mindspore_slots,
            slot_shapes,
            torch_slots,
        )

        if request.direction is Direction.TORCH_TO_MS:
            return slot_shapes(mindspore_slots(build_mindspore_network(from_network, "--ms-model"))), True
        return slot_shapes(torch_slots(build_torch_model(from_network, "--model"))), True
    if request.reference is not None:
        return reference_shapes(request.reference, request.trust_pickle), False
    return None, False


def _folded_entry(step: Step, by_name: dict[str, Entry]) -> TensorEntry:
    """The weight of a weight-normalised layer, computed when a writer asks for its bytes."""
    g, v = (by_name[n] for n in step.sources)
    assert isinstance(g, TensorEntry) and isinstance(v, TensorEntry)

    def compute() -> tuple[memoryview]:
        folded = fold_weight_norm(g.array(), v.array(), step.fold_dim, v.dtype)
        # Flat first: memoryview cannot cast a view with a zero in its shape (a zero-element layer).
        return (memoryview(np.ascontiguousarray(folded).reshape(-1)).cast("B"),)

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


# Given the total tensor bytes to write, a context that yields a callback(bytes written).
ProgressFactory = Callable[[int], contextlib.AbstractContextManager[Callable[[int], None]]]


def no_progress(_total: int) -> contextlib.AbstractContextManager[Callable[[int], None]]:
    return contextlib.nullcontext(lambda _n: None)


def run_migration(request: MigrationRequest, progress: ProgressFactory = no_progress) -> MigrationResult:
    """Plan and (unless the plan fails or it is a dry run) write the migrated checkpoint.

    Every path this run writes is checked once, first, before anything is read or written: "the
    output is the input" or an unwritable report is the first thing to hear.
    """
    if request.output is not None and not request.dry_run:
        check_output_path(request.output, request.inputs, request.force)  # "the output is the input" first
    output, output_format = request.planned_output()
    if request.output is None and not request.dry_run:
        check_output_path(output, request.inputs, request.force)
    side_outputs = dict(request.side_outputs)
    if request.model is not None and request.direction is Direction.TORCH_TO_MS:
        side_outputs["the layers JSON"] = layers_json_path(output)
    check_side_outputs(side_outputs, request.inputs, [output])
    user_rules = load_rules(request.rules)
    reference, exact_reference = target_reference(request)
    from_model = None
    if request.model is not None and request.direction is Direction.TORCH_TO_MS:
        from convmigrate.layers.model import model_layers

        from_model = model_layers(request.model)
        # The model's modules outrank every built-in rule, and only its convs are convs.
        user_rules.names.forced_kinds[:0] = [
            (glob.escape(name), family, f"--model: a {kind} module") for name, family, kind in from_model.kinds
        ]
        user_rules.names.exclusive = True
    options = PlanOptions(
        direction=request.direction,
        layout=request.layout,
        rules=user_rules.names,
        reference=reference,
        exact_reference=exact_reference,
        conv1d_patterns=[*request.conv1d, *user_rules.conv1d],
        exclude_patterns=[*request.exclude, *user_rules.exclude],
        fold_weight_norm=request.fold_weight_norm,
        keep_extras=request.keep_extras,
        strict=request.strict,
    )
    with open_checkpoint(request.input, trust_pickle=request.trust_pickle, select=request.select) as checkpoint:
        plan = build_plan(source_infos(checkpoint.entries), options)
        result = MigrationResult(request, checkpoint.format, output_format, output, plan, written=False,
                                 notes=list(checkpoint.notes) + (from_model.notes() if from_model else []))
        if request.dry_run or plan.failures():
            return result
        layers = setups_from_layers(request.layers, request.direction) if request.layers and request.verify else None
        if from_model is not None:
            from_spec = {spec.name: setup_from_spec(spec) for spec in from_model.specs if spec.kind.is_conv}
            layers = {**from_spec, **(layers or {})}
        entries = target_entries(plan, checkpoint)
        result.tensor_bytes = sum(e.nbytes for e in entries if isinstance(e, TensorEntry))
        metadata = {"converted_by": "convmigrate", "direction": request.direction.value}
        if is_sharded(output):
            _write_shards(request, result, checkpoint, entries, metadata, layers, progress)
        else:
            _write_one(request, result, checkpoint, entries, metadata, layers, progress)
        if result.written and from_model is not None:
            from convmigrate.layers import write_layers_json

            result.layers_json = write_layers_json(layers_json_path(output), from_model.specs)
    return result


def _write_shards(request: MigrationRequest, result: MigrationResult, checkpoint: Checkpoint, entries: list[Entry],
                  metadata: dict[str, str], layers: Mapping[str, ConvSetup] | None, progress: ProgressFactory) -> None:
    """A sharded output: every shard written and verified by its own job (convmigrate/sharded.py)."""
    from convmigrate.sharded import JobSettings, write_sharded

    plan = result.plan
    settings = JobSettings(
        input=request.input, trust_pickle=request.trust_pickle, fmt=result.output_format, metadata=metadata,
        crc=request.crc, durable=request.fsync, verify=request.verify, layers=layers,
        tolerance=(request.rtol, request.atol), seed=request.seed, plan=replace(plan, steps=[], problems=[]),
    )
    done = write_sharded(result.output, checkpoint, entries, settings, steps=plan.steps, inputs=request.inputs,
                         max_shard_size=request.max_shard_size, jobs=request.jobs, force=request.force,
                         progress=progress)
    result.verification, result.written = done.verification, done.written
    result.shards = [shard.path for shard in done.shards] if done.written else []


def _write_one(request: MigrationRequest, result: MigrationResult, checkpoint: Checkpoint, entries: list[Entry],
               metadata: dict[str, str], layers: Mapping[str, ConvSetup] | None, progress: ProgressFactory) -> None:
    """One output file, verified on its temporary file before it takes its name."""
    plan, output = result.plan, result.output
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
        observing = observed_copies(verification.observe) if verification is not None else contextlib.nullcontext()
        with progress(result.tensor_bytes) as on_bytes, observing:
            write_checkpoint(output, entries, result.output_format, metadata=metadata, crc=request.crc, on_bytes=on_bytes,
                             check=verified if verification is not None else None, durable=request.fsync)
    finally:
        if verification is not None:
            verification.stop()
    result.written = result.verification is None or result.verification.passed


def layers_json_path(output: Path) -> Path:
    """model.ckpt -> model.layers.json, beside it (model.ckpt.index.json -> model.layers.json too)."""
    name = output.name.removesuffix(INDEX_SUFFIX)
    return output.with_name(name.rsplit(".", 1)[0] + ".layers.json")
