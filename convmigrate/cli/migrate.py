"""`convmigrate torch2ms` and `convmigrate ms2torch`: the main job, as two thin commands.

Each command is its signature (what Typer needs to parse it) and one call of the Python API
with the same options by name; what is printed is rendered here from the returned result.
"""

from __future__ import annotations

from collections import Counter

from rich.text import Text

from convmigrate import api
from convmigrate.cli._errors import raise_failure, reported_errors
from convmigrate.cli._output import MAX_TABLE_ROWS, Output, console, line, print_capped, table, text
from convmigrate.cli._progress import byte_progress
from convmigrate.cli._summary import append_summary, migration_markdown
from convmigrate.cli._verification import render_verification
from convmigrate.cli.options import (
    AtolOption,
    Conv1dOption,
    CrcOption,
    DebugOption,
    DryRunOption,
    ExcludeOption,
    FoldOption,
    ForceOption,
    InputPath,
    JobsOption,
    JsonOption,
    JunitOption,
    KeepExtrasOption,
    LayersOption,
    LayoutOption,
    MaxShardSizeOption,
    MindSporeFormatOption,
    ModelOption,
    ModelReferenceOption,
    MsModelReferenceOption,
    NoFsyncOption,
    NoVerifyOption,
    OutputOption,
    QuietOption,
    ReferenceOption,
    ReportOption,
    RtolOption,
    RulesOption,
    SeedOption,
    SelectOption,
    StrictOption,
    TorchFormatOption,
    TrustPickleOption,
)
from convmigrate.migrate import MigrationResult
from convmigrate.plan import Op, Severity
from convmigrate.vocab import Layout


def _shape(shape: list[int] | None) -> str:
    return "-" if shape is None else str(tuple(shape)).replace(" ", "")


def render_plan(result: MigrationResult, full: bool) -> None:
    """The plan as a table (every step when `full`, else the first changes) and its problems."""
    plan = result.plan
    grid = table("source", "target", "op", "shape", "why")
    shown = [step for step in plan.steps if full or step.op is not Op.COPY]
    limit = len(shown) if full else MAX_TABLE_ROWS
    for step in shown[:limit]:
        shape = _shape(step.source_shape)
        if step.target_shape is not None and step.target_shape != step.source_shape:
            shape += f" -> {_shape(step.target_shape)}"
        sources = Text("\n").join(text(source) for source in step.sources) if step.sources else Text("-")
        grid.add_row(sources, text(step.target or "-"), step.op.value, shape,
                     text(f"{step.reason} [{step.confidence.value}]"))
    print_capped(grid, len(shown) - limit, "changed tensors (--dry-run lists every step, --report writes them)")
    for note in result.notes:
        console.print(line(("note: ", "cyan"), note))
    problems = plan.problems if full else plan.problems[:MAX_TABLE_ROWS]
    for problem in problems:
        style = "red" if problem.severity is Severity.ERROR or plan.strict else "yellow"
        console.print(line((f"{problem.severity.value}: ", style), problem.message))
    if len(problems) < len(plan.problems):
        codes = Counter(p.code for p in plan.problems[len(problems):])
        console.print(f"... and {len(plan.problems) - len(problems)} more problems "
                      f"({', '.join(f'{n} {code}' for code, n in codes.items())}; --report lists them)")


def _shards(shards: list) -> str:
    return f", {len(shards)} shards" if shards else ""


def render_summary(result: MigrationResult) -> None:
    counts = result.plan.counts()
    summary = table("input", "output", *counts)
    summary.add_row(
        text(f"{result.request.input} ({result.input_format.value})"),
        text(f"{result.output} ({result.output_format.value}{_shards(result.shards)})" if result.written
             else "(not written)"),
        *(str(v) for v in counts.values()),
    )
    console.print(summary)
    if result.layers_json is not None:
        console.print(text(f"layers: {result.layers_json} (check with: convmigrate verify ... "
                           f"--layers {result.layers_json})"))


def show_migration(result: MigrationResult, output: Output) -> None:
    """Tables for people, the report for --json, nothing for --quiet; then the CI step summary."""
    output.json(result.to_json)
    if output.human:
        render_plan(result, full=result.request.dry_run)
        if result.verification is not None:
            render_verification(result.verification)
        render_summary(result)
    append_summary(migration_markdown(result))
    raise_failure(result)


def torch2ms_command(
    input_path: InputPath,
    output: OutputOption = None,
    output_format: MindSporeFormatOption = None,
    layout: LayoutOption = Layout.NN,
    reference: ReferenceOption = None,
    rules: RulesOption = None,
    conv1d: Conv1dOption = None,
    exclude: ExcludeOption = None,
    fold_weight_norm: FoldOption = False,
    keep_extras: KeepExtrasOption = False,
    crc: CrcOption = False,
    model: ModelOption = None,
    ms_model: MsModelReferenceOption = None,
    strict: StrictOption = False,
    dry_run: DryRunOption = False,
    no_verify: NoVerifyOption = False,
    layers: LayersOption = None,
    rtol: RtolOption = None,
    atol: AtolOption = None,
    seed: SeedOption = 0,
    as_json: JsonOption = False,
    report: ReportOption = None,
    junit: JunitOption = None,
    quiet: QuietOption = False,
    max_shard_size: MaxShardSizeOption = None,
    jobs: JobsOption = None,
    force: ForceOption = False,
    no_fsync: NoFsyncOption = False,
    trust_pickle: TrustPickleOption = False,
    select: SelectOption = None,
    debug: DebugOption = False,
) -> None:
    """PyTorch checkpoint -> MindSpore (.ckpt or safetensors), Conv1d weights reshaped, names mapped,
    the output verified before it takes its name.

    Examples:

    \b
      convmigrate torch2ms model.pt                     # -> model.ckpt, verified
      convmigrate torch2ms model.pt -o model.safetensors --fold-weight-norm
      convmigrate torch2ms model.pt --reference fresh_ms_net.ckpt --strict
      convmigrate torch2ms model.pt --ms-model msport:build   # the MindSpore network is the reference
      convmigrate torch2ms model.pt --dry-run           # the plan only
      convmigrate torch2ms model.pt -q --report r.json --junit r.xml   # a CI step
      convmigrate torch2ms hf/model.safetensors.index.json -o ms/model.safetensors.index.json --jobs 2
                                                        # sharded in, sharded out (same shards)
      convmigrate torch2ms big.pt -o ms/model.ckpt.index.json --max-shard-size 2GB   # .ckpt shards
    """
    out = Output(as_json, quiet)
    with reported_errors(debug, quiet, summary="torch2ms"):
        show_migration(api.torch2ms(
            input_path, output, format=output_format, layout=layout, reference=reference, rules=rules,
            conv1d=conv1d or (), exclude=exclude or (), fold_weight_norm=fold_weight_norm, keep_extras=keep_extras,
            crc=crc, model=model, ms_model=ms_model, strict=strict, dry_run=dry_run, verify=not no_verify, layers=layers, rtol=rtol,
            atol=atol, seed=seed, force=force, fsync=not no_fsync, trust_pickle=trust_pickle, select=select,
            max_shard_size=max_shard_size, jobs=jobs, report=report, junit=junit, check=False,
            progress=lambda total: byte_progress(total, "torch2ms", not out.human),
        ), out)


def ms2torch_command(
    input_path: InputPath,
    output: OutputOption = None,
    output_format: TorchFormatOption = None,
    reference: ReferenceOption = None,
    rules: RulesOption = None,
    conv1d: Conv1dOption = None,
    exclude: ExcludeOption = None,
    fold_weight_norm: FoldOption = False,
    keep_extras: KeepExtrasOption = False,
    model: ModelReferenceOption = None,
    strict: StrictOption = False,
    dry_run: DryRunOption = False,
    no_verify: NoVerifyOption = False,
    layers: LayersOption = None,
    rtol: RtolOption = None,
    atol: AtolOption = None,
    seed: SeedOption = 0,
    as_json: JsonOption = False,
    report: ReportOption = None,
    junit: JunitOption = None,
    quiet: QuietOption = False,
    max_shard_size: MaxShardSizeOption = None,
    jobs: JobsOption = None,
    force: ForceOption = False,
    no_fsync: NoFsyncOption = False,
    trust_pickle: TrustPickleOption = False,
    select: SelectOption = None,
    debug: DebugOption = False,
) -> None:
    """MindSpore checkpoint -> PyTorch (.pt or safetensors), Conv1d weights reshaped, names mapped,
    the output verified before it takes its name.

    Examples:

    \b
      convmigrate ms2torch model.ckpt                   # -> model.pt, verified
      convmigrate ms2torch model.ckpt -o model.safetensors
      convmigrate ms2torch model.ckpt --reference fresh_torch_net.pt --strict
      convmigrate ms2torch model.ckpt --model mymodel:build   # the PyTorch model is the reference
      convmigrate ms2torch model.ckpt --keep-extras     # keep epoch_num, step_num, ...
      convmigrate ms2torch model.ckpt --json > report.json
      convmigrate ms2torch ms/model.safetensors.index.json -o pt/model.safetensors.index.json
    """
    out = Output(as_json, quiet)
    with reported_errors(debug, quiet, summary="ms2torch"):
        show_migration(api.ms2torch(
            input_path, output, format=output_format, reference=reference, rules=rules, conv1d=conv1d or (),
            exclude=exclude or (), fold_weight_norm=fold_weight_norm, keep_extras=keep_extras, model=model, strict=strict,
            dry_run=dry_run, verify=not no_verify, layers=layers, rtol=rtol, atol=atol, seed=seed, force=force,
            fsync=not no_fsync, trust_pickle=trust_pickle, select=select, max_shard_size=max_shard_size, jobs=jobs, report=report,
            junit=junit, check=False, progress=lambda total: byte_progress(total, "ms2torch", not out.human),
        ), out)
