"""`convmigrate layers SOURCE [--to ms|torch] [--json] [--report LAYERS.json]`: translate layer hyperparameters.

SOURCE is a constructor expression (parsed, never run), a PyTorch model factory
`package.module:callable` (imported and called: your own trusted code), or a layers JSON
written by this command. Every conv translation is verified before it is shown.
"""

from __future__ import annotations

from pathlib import Path

from rich.syntax import Syntax

from convmigrate.cli._errors import reported_errors
from convmigrate.cli._output import Output, console, line, table, text
from convmigrate.cli.options import DebugOption, JsonOption, LayerSource, QuietOption, ReportOption, ToOption
from convmigrate.formats.atomic import check_side_outputs
from convmigrate.layers import LayerSpec, layers_document, translate_source
from convmigrate.reports import write_report
from convmigrate.text import printable


def _render(specs: list[LayerSpec]) -> None:
    for spec in specs:
        verified = "" if spec.verified is None else f", verified max |diff| {spec.verified:.2g} at L={spec.verified_lengths}"
        console.print(line(text(spec.name, "bold"), f"  {spec.kind.value}  {spec.source.value} -> {spec.target.value}  ",
                           ("exact", "green") if spec.exact else ("not exact", "yellow"), verified))
        code = "\n".join(printable(code_line) for code_line in spec.code[spec.target.value].splitlines())
        console.print(Syntax(code, "python", theme="ansi_dark", word_wrap=True,
                             code_width=max(map(len, code.splitlines()), default=0) + 1))
        if spec.note:
            console.print(line(("  note: ", "dim"), spec.note))
        for difference in spec.default_differences:
            console.print(line(("  default differs: ", "yellow"), difference))
        console.print()
    if len(specs) > 1:
        grid = table("layer", "kind", "exact", "pre_pad", "post_crop")
        for spec in specs:
            pad = spec.pre_pad
            grid.add_row(
                text(spec.name), spec.kind.value, "yes" if spec.exact else "no",
                f"{pad.mode} {pad.left},{pad.right}" if pad else "",
                f"{spec.post_crop.left},{spec.post_crop.right}" if spec.post_crop else "",
            )
        console.print(grid)
    if not specs:
        console.print("no Conv1d, ConvTranspose1d or renamed norm/embedding layers found")


def layers_command(
    source: LayerSource,
    to: ToOption = None,
    as_json: JsonOption = False,
    report: ReportOption = None,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Translate layer hyperparameters between PyTorch and MindSpore, each translation verified.
    The report (--json, --report FILE) is the layers JSON that `verify --layers` reads.

    Examples:

    \b
      convmigrate layers "torch.nn.Conv1d(120, 240, 4, padding=1, padding_mode='reflect')"
      convmigrate layers "mindspore.nn.Conv1d(120, 240, 4, stride=2)"
      convmigrate layers "torch.nn.BatchNorm1d(64, momentum=0.2)" --to ms
      convmigrate layers mypackage.models:build_encoder --report encoder.layers.json   # runs your code
      convmigrate layers encoder.layers.json --to torch --json
    """
    out = Output(as_json, quiet)
    with reported_errors(debug, quiet):
        if report is not None:
            inputs = [Path(source)] if Path(source).suffix == ".json" else []
            check_side_outputs({"--report": report}, inputs, [])
        specs = translate_source(source, to.framework if to is not None else None)
        document = layers_document(specs)
        if report is not None:
            write_report(report, document)
        out.json(lambda: document)
        if out.human:
            _render(specs)
            if report is not None:
                console.print(text(f"wrote {report}"))
