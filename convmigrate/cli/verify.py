"""`convmigrate verify ORIGINAL CONVERTED`: prove a converted checkpoint computes what the original did."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from convmigrate import __version__
from convmigrate.cli._errors import reported_errors
from convmigrate.cli._output import DebugOption, QuietOption, TrustPickleOption, console
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
from convmigrate.cli.migrate import Conv1dOption, ExcludeOption, RulesOption
from convmigrate.errors import CheckFailedError
from convmigrate.migrate import VerifyRequest, run_verification


def verify_command(
    original: Annotated[Path, typer.Argument(help="The checkpoint before migration.")],
    converted: Annotated[Path, typer.Argument(help="The migrated checkpoint.")],
    layers: LayersOption = None,
    rtol: RtolOption = None,
    atol: AtolOption = None,
    seed: SeedOption = 0,
    rules: RulesOption = None,
    conv1d: Conv1dOption = None,
    exclude: ExcludeOption = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write the result as JSON.")] = None,
    junit: JunitOption = None,
    quiet: QuietOption = False,
    trust_pickle: TrustPickleOption = False,
    debug: DebugOption = False,
) -> None:
    """Run every Conv1d of ORIGINAL and CONVERTED under their frameworks' semantics and compare;
    compare every other tensor bit for bit. Exit 1 names each failing layer."""
    with reported_errors(debug):
        result = run_verification(VerifyRequest(
            original, converted, layers=layers, rules=rules, conv1d=conv1d or [], exclude=exclude or [],
            rtol=rtol, atol=atol, seed=seed, trust_pickle=trust_pickle,
        ))
        failures = result.failures()
        if not quiet or failures:
            render_verification(result.verification)
            for problem in result.plan.problems:
                console.print(f"[yellow]{problem.code}:[/] {problem.message}", highlight=False)
        if report is not None:
            dump_json(report, {
                "convmigrate": __version__,
                "command": "verify",
                "original": {"path": str(original), "format": result.original_format.value},
                "converted": {"path": str(converted), "format": result.converted_format.value},
                "direction": result.plan.direction.value,
                "verification": result.verification.to_json(),
                "problems": [p.to_json() for p in result.plan.problems],
                "ok": not failures,
            })
        if junit is not None:
            write_junit(junit, result.verification, "verify")
        if failures:
            raise CheckFailedError(f"verification failed for {', '.join(failures[:8])}" + (" ..." if len(failures) > 8 else ""))
        if not quiet:
            console.print(f"verified: {len(result.verification.layers)} conv layers match, "
                          f"{len(result.verification.tensors)} other tensors bit-identical", highlight=False)
