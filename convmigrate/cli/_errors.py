"""One place that turns library errors and signals into one-line messages and exit codes.

Exit codes: 0 success; 1 the result failed a check; 2 bad usage or an unreadable input;
128 + N killed by signal N (130 SIGINT, 129 SIGHUP, 143 SIGTERM), with nothing left behind.
A traceback is shown only with --debug. Every message goes through `text.printable`: one line,
whatever the file or the path it names holds.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import typer

from convmigrate.cli._output import error_console, text
from convmigrate.cli._summary import append_summary, error_markdown
from convmigrate.errors import CheckFailedError, ConvmigrateError
from convmigrate.reports import Result

# Signals that end a run the way Ctrl-C does: the exception unwinds through the writers, which
# delete their temporary files (formats/atomic.py), so no `.partial` is left beside the output.
_CLEAN_EXIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwind like KeyboardInterrupt (a BaseException, not an Exception)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _signals_unwind() -> Iterator[None]:
    """While a command runs, SIGTERM and SIGHUP raise `Terminated` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_terminated) for sig in _CLEAN_EXIT_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def raise_failure(result: Result) -> None:
    """Raise the error a result fails with (exit 1), carrying the result for --quiet's names."""
    error = result.error()
    if error is not None:
        error.result = result
        raise error


def error_line(message: object) -> None:
    """`error: MESSAGE` on stderr, on one line."""
    error_console.print(text(f"error: {message}"), soft_wrap=True)


@contextlib.contextmanager
def reported_errors(debug: bool, quiet: bool = False, summary: str | None = None) -> Iterator[None]:
    """Run a command body; show its errors as one line on stderr and exit with their code.

    A failed check (exit 1) that carries its result is followed, under --quiet, by the failing
    names, one per line: the tables that name them are not printed then. `summary` (the command's
    name) adds any other error to the GitHub step summary (a failed check has added its result).
    """
    try:
        with _signals_unwind():
            yield
    except ConvmigrateError as exc:
        if debug:
            error_console.print_exception()
        error_line(exc)
        result = getattr(exc, "result", None) if isinstance(exc, CheckFailedError) else None
        if quiet and result is not None:
            for name in result.failures():
                error_console.print(text(f"  {name}"), soft_wrap=True)
        if summary is not None and result is None:
            append_summary(error_markdown(summary, str(exc)))
        raise typer.Exit(code=exc.exit_code) from None
    except KeyboardInterrupt:
        error_console.print("interrupted; no output was written")
        raise typer.Exit(code=130) from None
    except Terminated as exc:
        error_console.print(f"terminated by {signal.Signals(exc.signum).name}; no output was written")
        raise typer.Exit(code=128 + exc.signum) from None
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - the one catch-all: an unexpected failure is one line too
        if debug:
            error_console.print_exception()
            raise typer.Exit(code=2) from None
        message = f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for a traceback)"
        error_line(message)
        if summary is not None:
            append_summary(error_markdown(summary, message))
        raise typer.Exit(code=2) from None
