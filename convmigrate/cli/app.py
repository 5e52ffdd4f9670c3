"""The `convmigrate` app: it only assembles the commands, one module each."""

from __future__ import annotations

from typing import Annotated

import typer

from convmigrate import __version__
from convmigrate.cli import compare, convert, inspect, layers, migrate, verify
from convmigrate.cli._malloc import keep_freed_buffers

app = typer.Typer(
    name="convmigrate",
    help="Move Conv1d-heavy model weights between PyTorch and MindSpore, and prove the port numerically. "
    "Exit codes: 0 success, 1 a check failed, 2 bad usage or an unreadable input.",
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
    pass


# One line each in the command list (the full help, with examples, is `convmigrate COMMAND --help`).
COMMANDS = {
    "inspect": (inspect.inspect_command, "Show a checkpoint's format, tensors, plain values and Conv1d candidates."),
    "convert": (convert.convert_command, "Rewrite a checkpoint in another file format, bit-exactly."),
    "torch2ms": (migrate.torch2ms_command, "PyTorch checkpoint -> MindSpore, Conv1d weights reshaped, verified."),
    "ms2torch": (migrate.ms2torch_command, "MindSpore checkpoint -> PyTorch, Conv1d weights reshaped, verified."),
    "verify": (verify.verify_command, "Prove that a converted checkpoint computes what the original did."),
    "layers": (layers.layers_command, "Translate layer hyperparameters between PyTorch and MindSpore, verified."),
    "compare": (compare.compare_command, "Run a PyTorch model and its MindSpore port side by side; name the first "
                "layer where they part."),
}
for name, (function, summary) in COMMANDS.items():
    app.command(name, short_help=summary)(function)


def main() -> None:
    keep_freed_buffers()
    app()
