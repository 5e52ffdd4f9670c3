"""`convmigrate verify ORIGINAL CONVERTED`: prove a converted checkpoint computes what the original did."""

from __future__ import annotations

from convmigrate import api
from convmigrate.cli._errors import raise_failure, reported_errors
from convmigrate.cli._output import Output, console, line
from convmigrate.cli._summary import append_summary, verify_markdown
from convmigrate.cli._verification import render_verification
from convmigrate.cli.options import (
    AtolOption,
    Conv1dOption,
    ConvertedPath,
    DebugOption,
    ExcludeOption,
    JsonOption,
    JunitOption,
    LayersOption,
    OriginalPath,
    QuietOption,
    ReportOption,
    RtolOption,
    RulesOption,
    SeedOption,
    SelectOption,
    TrustPickleOption,
)


def verify_command(
    original: OriginalPath,
    converted: ConvertedPath,
    layers: LayersOption = None,
    rtol: RtolOption = None,
    atol: AtolOption = None,
    seed: SeedOption = 0,
    rules: RulesOption = None,
    conv1d: Conv1dOption = None,
    exclude: ExcludeOption = None,
    as_json: JsonOption = False,
    report: ReportOption = None,
    junit: JunitOption = None,
    quiet: QuietOption = False,
    trust_pickle: TrustPickleOption = False,
    select: SelectOption = None,
    debug: DebugOption = False,
) -> None:
    """Prove that CONVERTED computes what ORIGINAL did: every Conv1d run under both frameworks'
    semantics, every other tensor compared bit for bit. Exit 1 names each failing layer.

    Examples:

    \b
      convmigrate verify model.pt model.ckpt
      convmigrate verify model.pt model.ckpt --layers model.layers.json   # real stride, padding, groups
      convmigrate verify model.pt model.ckpt --rtol 1e-4 --atol 1e-5
      convmigrate verify model.pt model.ckpt -q --junit verify.xml        # a CI step
      convmigrate verify model.pt model.ckpt --json > verify.json
    """
    out = Output(as_json, quiet)
    with reported_errors(debug, quiet, summary="verify"):
        result = api.verify(original, converted, layers=layers, rules=rules, conv1d=conv1d or (),
                            exclude=exclude or (), rtol=rtol, atol=atol, seed=seed, trust_pickle=trust_pickle, select=select,
                            report=report, junit=junit, check=False)
        out.json(result.to_json)
        if out.human:
            render_verification(result.verification)
            for problem in result.plan.problems:
                console.print(line((f"{problem.code}: ", "yellow"), problem.message))
        append_summary(verify_markdown(result))
        raise_failure(result)
        if out.human:
            console.print(f"verified: {len(result.verification.layers)} conv layers match, "
                          f"{len(result.verification.tensors)} other tensors bit-identical, "
                          f"{len(result.verification.dropped)} dropped on purpose")
