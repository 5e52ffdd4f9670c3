"""What every command prints, and how: the consoles, safe text, tables, and the one output switch.

Anything a file names (tensor names, values, notes, reasons, paths, error messages) is shown
through `text()`: escaped by `convmigrate.text.printable` (control characters, invalid Unicode)
and rendered as plain text, never as rich markup. Styles come only from this code.

A terminal wraps tables at its width. A log (a pipe, a file, a CI step) never wraps: a name
stays whole on its line however long it is, so that it can be searched for and copied.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console, ConsoleDimensions
from rich.table import Table
from rich.text import Text

from convmigrate.reports import report_text
from convmigrate.text import printable

# How wide a line in a log may grow before rich folds it (a table row of several long names).
LOG_WIDTH = 1 << 16


class _Console(Console):
    """A rich console that is only as wide as its terminal, and as wide as needed in a log."""

    @property
    def size(self) -> ConsoleDimensions:
        if self.is_terminal:
            return super().size
        return ConsoleDimensions(LOG_WIDTH, 25)


console = _Console(highlight=False)
error_console = _Console(stderr=True, highlight=False)


def text(value: object, style: str = "") -> Text:
    """`value` as plain text (never markup), with control characters and invalid Unicode escaped."""
    return Text(printable(value), style=style)


def line(*parts: str | Text | tuple[str, str]) -> Text:
    """One output line from pieces: a str is data (escaped), (str, style) is this code's own label."""
    pieces = []
    for part in parts:
        if isinstance(part, tuple):
            pieces.append(Text(part[0], style=part[1]))
        elif isinstance(part, Text):
            pieces.append(part)
        else:
            pieces.append(text(part))
    return Text.assemble(*pieces)


def table(*headers: str) -> Table:
    """A plain table; its cells fold on a terminal only (a log is wide enough for whole names)."""
    grid = Table(box=None, header_style="bold")
    for header in headers:
        grid.add_column(header, overflow="fold")
    return grid


# Tables longer than this are cut in normal runs (rich renders ~1 000 rows in seconds, and a CI
# log needs the shape of the result, not every tensor); --dry-run, --json and --report keep everything.
MAX_TABLE_ROWS = 40


def print_capped(grid: Table, hidden: int, what: str) -> None:
    """Print `grid`, then say how many rows of `what` were left out of it (if any)."""
    if grid.row_count:
        console.print(grid)
    if hidden > 0:
        console.print(f"... and {hidden} more {what}")


@dataclass
class Output:
    """One command's output switch: tables for people, one JSON object (--json), or nothing but
    the error (--quiet). `--report FILE` is written by the library, the same object as --json."""

    as_json: bool = False
    quiet: bool = False

    @property
    def human(self) -> bool:
        """Whether tables and progress are shown."""
        return not (self.as_json or self.quiet)

    def json(self, document: Callable[[], dict]) -> None:
        """Print the report that `document()` builds, under --json only: a plan of thousands of
        steps takes most of a second to turn into JSON, which a --quiet run must not pay."""
        if self.as_json:
            sys.stdout.write(report_text(document()))  # the --report file's text, byte for byte
            sys.stdout.flush()
