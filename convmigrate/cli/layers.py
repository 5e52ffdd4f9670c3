"""`convmigrate layers SOURCE [--to ms|torch] [--json] [-o LAYERS.json]`: translate layer hyperparameters.

SOURCE is a constructor expression (parsed, never run), a PyTorch model factory
`package.module:callable` (imported and called: your own trusted code), or a layers JSON
written by this command. Every conv translation is verified before it is shown.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from convmigrate.cli._errors import reported_errors
from convmigrate.cli._output import DebugOption, ForceOption, JsonOption, console
from convmigrate.formats.atomic import check_output_path
from convmigrate.layers import LayerSpec, layers_document, translate_source, write_layers_json
from convmigrate.vocab import Framework


class Target(str, enum.Enum):
    """--to: the framework to translate into."""

    MS = "ms"
    TORCH = "torch"

    @property
    def framework(self) -> Framework:
        return Framework.MINDSPORE if self is Target.MS else Framework.TORCH


SourceArgument = Annotated[
    str,
    typer.Argument(
        help="A constructor expression such as \"torch.nn.Conv1d(120, 240, 4, padding=1)\", a PyTorch model factory "
        "package.module:callable (imported and run: trusted code only), or a layers JSON.",
        show_default=False,
    ),
]
ToOption = Annotated[
    Target | None,
    typer.Option("--to", help="Target framework. Default: the other one (nn.Conv1d alone: ms).", case_sensitive=False),
]
LayersOutput = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Also write the layers JSON here.", dir_okay=False),
]


def _render(specs: list[LayerSpec]) -> None:
    for spec in specs:
        status = "[green]exact[/]" if spec.exact else "[yellow]not exact[/]"
        verified = "" if spec.verified is None else f", verified max |diff| {spec.verified:.2g} at L={spec.verified_lengths}"
        console.print(
            f"[bold]{spec.name}[/]  {spec.kind.value}  {spec.source.value} -> {spec.target.value}  {status}{verified}",
            highlight=False,
        )
        console.print(Syntax(spec.code[spec.target.value], "python", theme="ansi_dark", word_wrap=True))
        if spec.note:
            console.print(Text("  note: ", style="dim") + Text(spec.note))
        for difference in spec.default_differences:
            console.print(Text("  default differs: ", style="yellow") + Text(difference))
        console.print()
    if len(specs) > 1:
        table = Table("layer", "kind", "exact", "pre_pad", "post_crop", box=None, header_style="bold")
        for spec in specs:
            pad = spec.pre_pad
            table.add_row(
                spec.name, spec.kind.value, "yes" if spec.exact else "no",
                f"{pad.mode} {pad.left},{pad.right}" if pad else "",
                f"{spec.post_crop.left},{spec.post_crop.right}" if spec.post_crop else "",
            )
        console.print(table)
    if not specs:
        console.print("no Conv1d, ConvTranspose1d or renamed norm/embedding layers found")


def layers_command(
    source: SourceArgument,
    to: ToOption = None,
    as_json: JsonOption = False,
    output: LayersOutput = None,
    force: ForceOption = False,
    debug: DebugOption = False,
) -> None:
    """Translate layer hyperparameters between PyTorch and MindSpore, each translation verified."""
    with reported_errors(debug):
        if output is not None:
            inputs = [Path(source)] if Path(source).suffix == ".json" else []
            check_output_path(output, inputs, force)
        specs = translate_source(source, to.framework if to is not None else None)
        if output is not None:
            write_layers_json(output, specs)
        if as_json:
            typer.echo(json.dumps(layers_document(specs), indent=2))
        else:
            _render(specs)
            if output is not None:
                console.print(f"wrote {output}", highlight=False)
