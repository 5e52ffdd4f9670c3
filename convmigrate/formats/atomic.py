"""Atomic output files: write to a temporary file beside the target, then rename.

A failed or interrupted write leaves no partial output and leaves any previous file at the
target path intact. The input is never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from convmigrate.errors import OutputExistsError, UsageError, WriteError


def check_output_path(output: Path, inputs: Sequence[Path], force: bool) -> None:
    """Refuse an output that is an input, sits in a missing folder, or exists without --force."""
    output = Path(output)
    for source in inputs:
        if Path(source).exists() and output.exists() and os.path.samefile(source, output):
            raise UsageError(f"{output}: output is the input file; choose another output path")
        if output.resolve() == Path(source).resolve():
            raise UsageError(f"{output}: output is the input file; choose another output path")
    if not output.parent.is_dir():
        raise UsageError(f"{output}: folder {output.parent} does not exist; create it first")
    if output.is_dir():
        raise UsageError(f"{output}: is a directory; give a file path for the output")
    if output.exists() and not force:
        raise OutputExistsError(f"{output}: already exists; pass --force to replace it")


class _Fsync:
    """os.fsync(fd) on a background thread; `wait` joins it and raises what it raised."""

    def __init__(self, fd: int) -> None:
        self.error: OSError | None = None
        self.thread = threading.Thread(target=self._run, args=(fd,), name="convmigrate-fsync", daemon=True)
        self.thread.start()

    def _run(self, fd: int) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            self.error = exc

    def wait(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


@contextlib.contextmanager
def atomic_output(output: Path, check: Callable[[Path], bool] | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes `output` only when the block finishes without error.

    `check(temporary_path)`, if given, reads the complete new file before it takes the
    output's name; when it returns False the new file is discarded and the previous one kept.
    """
    output = Path(output)
    try:
        handle, temp_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent)
    except OSError as exc:
        raise WriteError(f"{output}: cannot create a file in {output.parent} ({exc.strerror})") from exc
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            # The disk write (fsync, ~1 s per GB here) runs while `check` reads the new file
            # from the page cache; both finish before the file may take the output's name.
            syncing = _Fsync(stream.fileno())
            try:
                kept = check is None or check(temp)
            finally:
                syncing.wait()
        if not kept:
            temp.unlink()
            return
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # mkstemp's 0600 is for the temporary file only
        os.replace(temp, output)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise WriteError(f"{output}: write failed ({exc.strerror or exc}); nothing was changed") from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
