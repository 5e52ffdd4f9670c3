"""One place that turns library errors into one-line messages and exit codes.

Exit codes: 0 success; 1 the result failed a check; 2 bad usage or an unreadable input.
A traceback is shown only with --debug.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer

from convmigrate.cli._output import error_console
from convmigrate.errors import ConvmigrateError


@contextlib.contextmanager
def reported_errors(debug: bool) -> Iterator[None]:
    """Run a command body; show its errors as one line on stderr and exit with their code."""
    try:
        yield
    except ConvmigrateError as exc:
        if debug:
            error_console.print_exception()
        error_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=exc.exit_code) from None
    except KeyboardInterrupt:
        error_console.print("interrupted; no output was written", markup=False)
        raise typer.Exit(code=130) from None
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - the one catch-all: an unexpected failure is one line too
        if debug:
            error_console.print_exception()
            raise typer.Exit(code=2) from None
        error_console.print(
            f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for a traceback)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=2) from None
