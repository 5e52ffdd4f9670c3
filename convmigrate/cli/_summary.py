"""The GitHub Actions step summary: when `GITHUB_STEP_SUMMARY` names a file, the migration and
verify commands append a Markdown section to it (verdict, per-layer table, problems).

Names from the checkpoint go into code spans after `text.printable`, with `|` escaped (GitHub
splits table cells at it even inside code), so a name can neither break the table nor add links
or HTML to the page.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from convmigrate.cli._output import error_console, text
from convmigrate.compare.results import CompareResult
from convmigrate.migrate import MigrationResult
from convmigrate.plan import Plan
from convmigrate.text import printable
from convmigrate.verify.files import VerifyResult
from convmigrate.verify.results import Verification

# GitHub refuses a step summary over 1 MiB; a few hundred rows say what a reviewer needs.
MAX_SUMMARY_ROWS = 200


def code(value: object) -> str:
    """`value` as one Markdown code span, safe in a table cell."""
    content = printable(value).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", content)), default=0) + 1)
    pad = " " if content.startswith("`") or content.endswith("`") or not content else ""
    return f"{fence}{pad}{content}{pad}{fence}"


def _verdict(ok: bool) -> str:
    return "✅ passed" if ok else "❌ failed"


def _verification_lines(verification: Verification) -> list[str]:
    layers = sorted(verification.layers, key=lambda c: c.passed)  # failures first
    lines = [
        f"{len(verification.layers)} conv layers checked numerically, "
        f"{sum(c.passed for c in verification.tensors)}/{len(verification.tensors)} other tensors bit-identical.",
        "",
    ]
    if layers:
        lines += ["| layer | kind | converted weight | max abs error | max rel error | result |",
                  "| --- | --- | --- | ---: | ---: | --- |"]
        for check in layers[:MAX_SUMMARY_ROWS]:
            result = "ok" if check.passed else f"**FAIL** {code(check.detail)}"
            lines.append(f"| {code(check.name)} | {check.kind} | {code(check.target)} | {check.max_abs:.3g} | "
                         f"{check.max_rel:.3g} | {result} |")
        if len(layers) > MAX_SUMMARY_ROWS:
            lines.append(f"\n... and {len(layers) - MAX_SUMMARY_ROWS} more layers, all passing (see the report).")
        lines.append("")
    failed = [c for c in verification.tensors if not c.passed]
    lines += [f"- **FAIL** {code(c.target)}: {code(c.detail)}" for c in failed[:MAX_SUMMARY_ROWS]]
    return lines


def _problem_lines(plan: Plan) -> list[str]:
    if not plan.problems:
        return []
    failing = {id(p) for p in plan.failures()}
    lines = ["**Problems**", ""]
    for problem in plan.problems[:MAX_SUMMARY_ROWS]:
        mark = "❌" if id(problem) in failing else "⚠️"
        lines.append(f"- {mark} {problem.severity.value} `{problem.code}` {code(problem.name)}: {code(problem.message)}")
    if len(plan.problems) > MAX_SUMMARY_ROWS:
        lines.append(f"- ... and {len(plan.problems) - MAX_SUMMARY_ROWS} more (see the report)")
    return [*lines, ""]


def migration_markdown(result: MigrationResult) -> str:
    counts = ", ".join(f"{n} {op}" for op, n in result.plan.counts().items() if n)
    written = "written" if result.written else "**not written**"
    lines = [
        f"### convmigrate {result.plan.direction.value}: {_verdict(result.ok)}",
        "",
        f"{code(result.request.input)} ({result.input_format.value}) → {code(result.output)} "
        f"({result.output_format.value}), {written}{' (dry run)' if result.request.dry_run else ''}. Plan: {counts}.",
        "",
    ]
    if result.verification is not None:
        lines += _verification_lines(result.verification)
    return "\n".join(lines + _problem_lines(result.plan)) + "\n"


def verify_markdown(result: VerifyResult) -> str:
    lines = [
        f"### convmigrate verify: {_verdict(result.ok)}",
        "",
        f"{code(result.request.original)} ({result.original_format.value}) against "
        f"{code(result.request.converted)} ({result.converted_format.value}).",
        "",
        *_verification_lines(result.verification),
    ]
    return "\n".join(lines + _problem_lines(result.plan)) + "\n"


def compare_markdown(result: CompareResult) -> str:
    """`compare`: the verdict, the outputs, and the layers up to the first that parts."""
    lines = [
        f"### convmigrate compare: {_verdict(result.ok)}",
        "",
        f"{code(result.weights)} ({result.weights_format}) in {code(result.torch_model)} and {code(result.ms_model)}: "
        f"{code(result.summary())}",
        "",
    ]
    if result.outputs:
        lines += ["| output | max abs error | max rel error | result |", "| --- | ---: | ---: | --- |"]
        lines += [f"| {code(o.name)} | {o.difference.max_abs:.3g} | {o.difference.max_rel:.3g} | "
                  f"{'ok' if o.difference.passed else '**FAIL** ' + code(o.difference.detail)} |" for o in result.outputs]
        lines.append("")
    first = result.first_divergence()
    shown = result.layers[: result.layers.index(first) + 1] if first is not None else result.layers
    if shown:
        lines += ["| layer (execution order) | torch / mindspore | max rel error | result |", "| --- | --- | ---: | --- |"]
        for layer in shown[-MAX_SUMMARY_ROWS:]:
            error = f"{layer.difference.max_rel:.3g}" if layer.difference is not None else "-"
            mark = " **<- first to part**" if layer is first else ""
            lines.append(f"| {code(layer.display_name)} | {code(layer.classes)} | {error} | {layer.status.value}{mark} |")
        lines.append("")
    if result.hint:
        lines += [f"Fix: {code(result.hint)}", ""]
    return "\n".join(lines) + "\n"


def error_markdown(command: str, message: str) -> str:
    return f"### convmigrate {command}: ❌ error\n\n{code(message)}\n"


def append_summary(markdown: str) -> None:
    """Append to the file GitHub Actions names in GITHUB_STEP_SUMMARY (nothing elsewhere)."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    try:
        with Path(target).open("a", encoding="utf-8") as stream:
            stream.write(markdown + "\n")
    except OSError as exc:  # a summary is a courtesy: it never fails the step
        error_console.print(text(f"warning: cannot append to GITHUB_STEP_SUMMARY {target} ({exc.strerror})"))
