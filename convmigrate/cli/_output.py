"""Consoles and option types shared by every command."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

# Piped output (CI logs) gets 160 columns rather than rich's 80, so names stay on one line.
_LOG_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
console = Console(width=_LOG_WIDTH)
error_console = Console(stderr=True, width=_LOG_WIDTH)

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
NoFsyncOption = Annotated[
    bool,
    typer.Option(
        "--no-fsync",
        help="Rename the output into place without waiting for it to reach the disk, as cp and torch.save do: "
        "faster on big files; a power loss soon after may leave a damaged file.",
    ),
]
InputPath = Annotated[Path, typer.Argument(help="A checkpoint: .pt/.pth/.bin, .safetensors (or *.index.json), .ckpt.")]


def table(*headers: str) -> Table:
    """A plain table whose cells wrap instead of cutting names: logs must show whole names."""
    grid = Table(box=None, header_style="bold")
    for header in headers:
        grid.add_column(header, overflow="fold")
    return grid


# Tables longer than this are cut in normal runs (rich renders ~1 000 rows in seconds, and a CI
# log needs the shape of the result, not every tensor); --dry-run and --report keep everything.
MAX_TABLE_ROWS = 40


def print_capped(grid: Table, hidden: int, what: str) -> None:
    """Print `grid`, then say how many rows of `what` were left out of it."""
    if grid.row_count:
        console.print(grid)
    if hidden:
        console.print(f"... and {hidden} more {what}", highlight=False)
