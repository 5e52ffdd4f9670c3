"""The `convmigrate` app: it only assembles the commands, one module each."""

from __future__ import annotations

from typing import Annotated

import typer

from convmigrate import __version__
from convmigrate.cli import convert, inspect, layers, migrate, verify

app = typer.Typer(
    name="convmigrate",
    help="Move Conv1d-heavy model weights between PyTorch and MindSpore, and prove the port numerically.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"convmigrate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """convmigrate: PyTorch <-> MindSpore checkpoints, Conv1d-aware, numerically verified."""


app.command("inspect")(inspect.inspect_command)
app.command("convert")(convert.convert_command)
app.command("torch2ms")(migrate.torch2ms_command)
app.command("ms2torch")(migrate.ms2torch_command)
app.command("verify")(verify.verify_command)
app.command("layers")(layers.layers_command)


def main() -> None:
    app()
