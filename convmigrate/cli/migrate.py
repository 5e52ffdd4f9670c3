"""`convmigrate torch2ms` and `convmigrate ms2torch`: the main job, as two thin commands."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from convmigrate import __version__
from convmigrate.cli._errors import reported_errors
from convmigrate.cli._output import (
    MAX_TABLE_ROWS,
    DebugOption,
    ForceOption,
    InputPath,
    NoFsyncOption,
    QuietOption,
    TrustPickleOption,
    console,
    print_capped,
    table,
)
from convmigrate.cli._progress import byte_progress
from convmigrate.cli._verification import (
    AtolOption,
    JunitOption,
    LayersOption,
    RtolOption,
    SeedOption,
    dump_json,
    render_verification,
    write_junit,
)
from convmigrate.errors import CheckFailedError
from convmigrate.migrate import MigrationRequest, MigrationResult, run_migration
from convmigrate.plan import Direction, Op, Severity
from convmigrate.vocab import Layout

OutputOption = Annotated[Path | None, typer.Option("--output", "-o", help="Output file (default: beside the input, target extension).")]
ReferenceOption = Annotated[Path | None, typer.Option("--reference", help="A checkpoint of the target model: exact names and shapes.")]
RulesOption = Annotated[Path | None, typer.Option("--rules", help="A TOML file of extra name rules (see README).")]
Conv1dOption = Annotated[list[str] | None, typer.Option("--conv1d", help="Glob of Conv1d weight names (repeatable).")]
ExcludeOption = Annotated[list[str] | None, typer.Option("--exclude", help="Glob of names to leave untouched (repeatable).")]
FoldOption = Annotated[bool, typer.Option("--fold-weight-norm", help="Fold weight_g/weight_v (or parametrizations) into one weight.")]
KeepExtrasOption = Annotated[bool, typer.Option("--keep-extras", help="Keep optimizer state, counters and plain values.")]
StrictOption = Annotated[bool, typer.Option("--strict", help="Fail on every guess and every reference mismatch.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print the plan; write nothing.")]
ReportOption = Annotated[Path | None, typer.Option("--report", help="Write the plan and outcome as JSON (schema in README).")]
NoVerifyOption = Annotated[bool, typer.Option("--no-verify", help="Skip the numerical verification of the output.")]


def _problem_style(severity: Severity, strict: bool) -> str:
    return "red" if severity is Severity.ERROR or strict else "yellow"


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
        grid.add_row("\n".join(step.sources) or "-", step.target or "-", step.op.value, shape,
                     escape(f"{step.reason} [{step.confidence.value}]"))
    print_capped(grid, len(shown) - limit, "changed tensors (--dry-run lists every step, --report writes them)")
    for note in result.notes:
        console.print(f"[cyan]note:[/] {note}", highlight=False)
    problems = plan.problems if full else plan.problems[:MAX_TABLE_ROWS]
    for problem in problems:
        style = _problem_style(problem.severity, plan.strict)
        console.print(f"[{style}]{problem.severity.value}:[/] {problem.message}", highlight=False)
    if len(problems) < len(plan.problems):
        codes = Counter(p.code for p in plan.problems[len(problems):])
        console.print(f"... and {len(plan.problems) - len(problems)} more problems "
                      f"({', '.join(f'{n} {code}' for code, n in codes.items())}; --report lists them)", highlight=False)


def render_summary(result: MigrationResult) -> None:
    counts = result.plan.counts()
    summary = table("input", "output", *counts)
    summary.add_row(
        f"{result.request.input} ({result.input_format.value})",
        f"{result.output} ({result.output_format.value})" if result.written else "(not written)",
        *(str(v) for v in counts.values()),
    )
    console.print(summary)
    if result.layers_json is not None:
        console.print(f"layers: {result.layers_json} (check with: convmigrate verify ... --layers {result.layers_json})", highlight=False)


def report_json(result: MigrationResult, exit_code: int) -> dict:
    return {
        "convmigrate": __version__,
        "command": result.plan.direction.value,
        "input": {"path": str(result.request.input), "format": result.input_format.value},
        "output": {"path": str(result.output), "format": result.output_format.value, "written": result.written},
        "reference": str(result.request.reference) if result.request.reference else None,
        "dry_run": result.request.dry_run,
        "notes": result.notes,
        "plan": result.plan.to_json(),
        "verification": result.verification.to_json() if result.verification else None,
        "layers_json": str(result.layers_json) if result.layers_json else None,
        "ok": exit_code == 0,
        "exit_code": exit_code,
    }


def _run(direction: Direction, request: MigrationRequest, report: Path | None, junit: Path | None,
         quiet: bool, debug: bool) -> None:
    with reported_errors(debug):
        result = run_migration(request, progress=lambda total: byte_progress(total, direction.value, quiet))
        failures = [p.name for p in result.plan.failures()]
        failed_layers = result.verification.failures() if result.verification else []
        exit_code = CheckFailedError.exit_code if failures or failed_layers else 0
        if not quiet or failures:
            render_plan(result, full=request.dry_run)
        if result.verification is not None and (not quiet or failed_layers):
            render_verification(result.verification)
        if not quiet:
            render_summary(result)
        if report is not None:
            dump_json(report, report_json(result, exit_code))
        if junit is not None and result.verification is not None:
            write_junit(junit, result.verification, direction.value)
        if failures:
            raise CheckFailedError(f"{len(failures)} problem(s) fail this migration ({_names(failures)}); nothing was written")
        if failed_layers:
            raise CheckFailedError(f"verification failed for {_names(failed_layers)}; no output was kept")


def _migrate(direction: Direction, input_path: Path, conv1d: list[str] | None, exclude: list[str] | None,
             no_verify: bool, no_fsync: bool, report: Path | None, junit: Path | None, quiet: bool, debug: bool,
             **fields: object) -> None:
    """Both commands: every other option is a MigrationRequest field of the same name."""
    request = MigrationRequest(input=input_path, direction=direction, conv1d=conv1d or [], exclude=exclude or [],
                               verify=not no_verify, fsync=not no_fsync, **fields)  # type: ignore[arg-type]
    _run(direction, request, report, junit, quiet, debug)


def _names(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def torch2ms_command(
    input_path: InputPath,
    output: OutputOption = None,
    output_format: Annotated[str | None, typer.Option("--format", "-f", help="ckpt | safetensors (MindSpore flavour); default: from -o's extension, else ckpt.")] = None,
    layout: Annotated[Layout, typer.Option("--layout", help="nn: mindspore.nn layers; mint: mindspore.mint.nn (PyTorch names and shapes).")] = Layout.NN,
    reference: ReferenceOption = None,
    rules: RulesOption = None,
    conv1d: Conv1dOption = None,
    exclude: ExcludeOption = None,
    fold_weight_norm: FoldOption = False,
    keep_extras: KeepExtrasOption = False,
    crc: Annotated[bool, typer.Option("--crc", help="Append MindSpore's CRC32 tail to a .ckpt.")] = False,
    model: Annotated[str | None, typer.Option("--model", help="package.module:callable building the PyTorch model (trusted code): exact layer kinds, real conv hyperparameters, a layers JSON beside the output.")] = None,
    strict: StrictOption = False,
    dry_run: DryRunOption = False,
    report: ReportOption = None,
    no_verify: NoVerifyOption = False,
    layers: LayersOption = None,
    rtol: RtolOption = None,
    atol: AtolOption = None,
    seed: SeedOption = 0,
    junit: JunitOption = None,
    quiet: QuietOption = False,
    force: ForceOption = False,
    no_fsync: NoFsyncOption = False,
    trust_pickle: TrustPickleOption = False,
    debug: DebugOption = False,
) -> None:
    """PyTorch checkpoint -> MindSpore (.ckpt or safetensors), Conv1d weights reshaped, names mapped."""
    _migrate(Direction.TORCH_TO_MS, **locals())


def ms2torch_command(
    input_path: InputPath,
    output: OutputOption = None,
    output_format: Annotated[str | None, typer.Option("--format", "-f", help="pt | safetensors; default: from -o's extension, else pt.")] = None,
    reference: ReferenceOption = None,
    rules: RulesOption = None,
    conv1d: Conv1dOption = None,
    exclude: ExcludeOption = None,
    fold_weight_norm: FoldOption = False,
    keep_extras: KeepExtrasOption = False,
    strict: StrictOption = False,
    dry_run: DryRunOption = False,
    report: ReportOption = None,
    no_verify: NoVerifyOption = False,
    layers: LayersOption = None,
    rtol: RtolOption = None,
    atol: AtolOption = None,
    seed: SeedOption = 0,
    junit: JunitOption = None,
    quiet: QuietOption = False,
    force: ForceOption = False,
    no_fsync: NoFsyncOption = False,
    trust_pickle: TrustPickleOption = False,
    debug: DebugOption = False,
) -> None:
    """MindSpore checkpoint -> PyTorch (.pt or safetensors), Conv1d weights reshaped, names mapped."""
    _migrate(Direction.MS_TO_TORCH, **locals())
