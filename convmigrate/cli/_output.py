"""Consoles and option types shared by every command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
error_console = Console(stderr=True)

DebugOption = Annotated[bool, typer.Option("--debug", help="Show a traceback on errors.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Replace an existing output file.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors (for CI).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
TrustPickleOption = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Allow a torch.save file whose loading runs arbitrary pickle code. Only for files you trust.",
    ),
]
InputPath = Annotated[Path, typer.Argument(help="A checkpoint: .pt/.pth/.bin, .safetensors (or *.index.json), .ckpt.")]
