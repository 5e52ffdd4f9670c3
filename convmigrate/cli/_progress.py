"""A rich progress bar over tensor bytes, shown only for long runs on a terminal."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from convmigrate.cli._output import error_console

# Below this many bytes a bar would only flicker.
MIN_BYTES_FOR_BAR = 64 * 1024 * 1024


@contextlib.contextmanager
def byte_progress(total: int, label: str, quiet: bool) -> Iterator[Callable[[int], None]]:
    """Yield a callback(n_bytes) that advances a progress bar on stderr (or does nothing)."""
    if quiet or total < MIN_BYTES_FOR_BAR or not error_console.is_terminal:
        yield lambda _n: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=error_console, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)
