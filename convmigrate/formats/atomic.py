"""Atomic output files: write to a temporary file beside the target, then rename.

A failed or interrupted write leaves no partial output and leaves any previous file at the
target path intact. The input is never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from convmigrate.errors import OutputExistsError, UsageError, WriteError


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def _check_can_create(path: Path, label: object) -> None:
    """Whether a file can be created beside `path`: try it (an unnamed temporary file), since
    permission bits do not tell (root, ACLs, a read-only mount)."""
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise WriteError(f"{label}: cannot create a file in {path.parent} ({exc.strerror})") from exc


def check_output_path(output: Path, inputs: Sequence[Path], force: bool) -> None:
    """Refuse an output that is an input, sits in a missing folder, exists without --force, or
    is anything but a regular file (--force never replaces a FIFO, a device or a directory)."""
    output = Path(output)
    for source in inputs:
        if _same_file(Path(source), output):
            raise UsageError(f"{output}: output is the input file; choose another output path")
    if not output.parent.is_dir():
        raise UsageError(f"{output}: folder {output.parent} does not exist; create it first")
    _check_can_create(output, output)
    if output.exists():
        mode = output.stat().st_mode
        if not stat.S_ISREG(mode):
            raise UsageError(f"{output}: is {_kind(mode)}; the output must be a regular file (--force replaces "
                             "regular files only)")
        if not force:
            raise OutputExistsError(f"{output}: already exists; pass --force to replace it")


def check_side_outputs(side_outputs: Mapping[str, Path], inputs: Sequence[Path], outputs: Sequence[Path]) -> None:
    """Check the files a run writes beside its output (`--report`, `--junit`), before anything is
    written: none may be an input or the output or another one, and each must be writable where it is.

    An existing regular file is replaced (a report is rewritten on every run); an existing FIFO or
    character device (`--report /dev/stderr`) is written into.
    """
    seen: list[tuple[str, Path]] = [("the output", Path(p)) for p in outputs]
    for flag, path in side_outputs.items():
        path = Path(path)
        for source in inputs:
            if _same_file(Path(source), path):
                raise UsageError(f"{flag} {path}: is an input of this run; choose another path")
        for what, other in seen:
            if _same_file(other, path):
                raise UsageError(f"{flag} {path}: is also {what}; choose another path")
        seen.append((flag, path))
        if path.exists():
            mode = path.stat().st_mode
            if stat.S_ISDIR(mode):
                raise UsageError(f"{flag} {path}: is a directory; give a file path")
            if not os.access(path, os.W_OK):
                raise UsageError(f"{flag} {path}: is not writable")
            if not stat.S_ISREG(mode):
                continue  # written into, not replaced: no folder access needed
        if not path.parent.is_dir():
            raise UsageError(f"{flag} {path}: folder {path.parent} does not exist; create it first")
        _check_can_create(path, f"{flag} {path}")


def write_small_file(path: Path, text: str) -> None:
    """Write a report: atomically over a regular file (never half a report), in place into a
    FIFO or a device (`--report /dev/stderr`)."""
    path = Path(path)
    if path.exists() and not path.is_file():
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(text)
        return
    with atomic_output(path, durable=False) as stream:
        stream.write(text.encode("utf-8"))


def _fdatasync(fd: int) -> None:
    """fdatasync, or fsync where there is none (macOS): the same, and a little more."""
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


class _Writeback:
    """Pushes the file to disk on a background thread while it is still being written.

    Linux starts writing dirty pages back only past a share of memory (here 2.4 GB), so a
    multi-GB output would reach the disk only in the final fsync, after all the writing: the
    two times would add up. Calling fdatasync over and over while the writer runs overlaps
    them (measured on a 2 GiB copy here: 2.1 s instead of 2.7-3.2 s to a durable file). `finish`
    asks the thread for the final fsync without waiting for it, `wait` joins it and raises an
    error of any call (Linux reports a write-back error only once), `abandon` stops it.
    """

    # Files written faster than this never see the loop: the final fsync alone is enough.
    FIRST_SYNC_AFTER_S = 0.1
    INTERVAL_S = 0.05

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.error: OSError | None = None
        self.abandoned = False
        self.finishing = threading.Event()
        self.thread = threading.Thread(target=self._run, name="convmigrate-writeback", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            if not self.finishing.wait(self.FIRST_SYNC_AFTER_S):
                while not self.finishing.is_set():
                    _fdatasync(self.fd)
                    self.finishing.wait(self.INTERVAL_S)
            if not self.abandoned:
                os.fsync(self.fd)
        except OSError as exc:
            self.error = exc

    def finish(self) -> None:
        """The file is complete: fsync it (on the thread, after any fdatasync under way)."""
        self.finishing.set()

    def abandon(self) -> None:
        """The write failed: stop without a final fsync."""
        self.abandoned = True
        self.finishing.set()
        self.thread.join()

    def wait(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


def staging_name(output: Path) -> Path:
    """A fresh temporary name beside `output`, for `stage_file`: chosen before the file exists, so
    that a caller holding the name can delete the file whatever interrupts it (a signal included)."""
    output = Path(output)
    return output.parent / f".{output.name}.{secrets.token_hex(6)}.partial"


def stage_file(output: Path, temp: Path | None = None) -> Path:
    """An empty temporary file beside `output` (mode 0600) for `staged_output` to fill and
    `commit_staged` to rename: a sharded output stages every shard before any takes its name.
    `temp` is its name if the caller chose it (`staging_name`), to delete it on any failure."""
    output = Path(output)
    temp = staging_name(output) if temp is None else temp
    try:
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600))
    except OSError as exc:
        raise WriteError(f"{output}: cannot create a file in {output.parent} ({exc.strerror})") from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


@contextlib.contextmanager
def staged_output(temp: Path, check: Callable[[Path], object] | None = None, durable: bool = True) -> Iterator[BinaryIO]:
    """Yield the staged file `temp` (from `stage_file`), emptied, for writing.

    When the block finishes without error the file is complete and flushed, `check(temp)` has
    read it (its answer is the caller's to act on), and with `durable` it is on disk. The file
    keeps its temporary name: `commit_staged` renames it, the caller deletes it on failure.
    OSErrors are raised as they come (the caller names the output in its WriteError).
    """
    # Open for reading too: a migration's verification reads back what was copied while the
    # rest is still being written (formats/bytecopy.observed_copies).
    fd = os.open(temp, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    try:
        # Emptied only when it is not empty already: on ext4 a truncation (O_TRUNC included,
        # even of an empty file) makes the close start writing the whole file back and wait
        # for that (auto_da_alloc): 0.8 s at 2 GiB, for nothing when no fsync was asked for.
        if os.fstat(fd).st_size:
            os.ftruncate(fd, 0)
        file = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise
    with file as stream:
        writeback = _Writeback(stream.fileno()) if durable else None
        try:
            yield stream
            stream.flush()
        except BaseException:
            if writeback is not None:
                writeback.abandon()
            raise
        # The rest of the disk write runs while `check` reads the new file from the page
        # cache; both finish before the file may take the output's name.
        if writeback is not None:
            writeback.finish()
        try:
            if check is not None:
                check(temp)
        finally:
            if writeback is not None:
                writeback.wait()


def commit_staged(temp: Path, output: Path) -> None:
    """Give a staged file its final name and the permissions a new file gets (mkstemp's 0600 is
    for the temporary file only)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)
    os.replace(temp, output)


@contextlib.contextmanager
def atomic_output(
    output: Path, check: Callable[[Path], bool] | None = None, durable: bool = True
) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes `output` only when the block finishes without error.

    `check(temporary_path)`, if given, reads the complete new file before it takes the
    output's name; when it returns False the new file is discarded and the previous one kept.
    `durable` (the default) puts the file on disk (fsync) before it takes the name, so a power
    loss cannot leave an empty or partial file there; without it the file may still be in
    the page cache when the name changes, as with cp or torch.save.
    """
    output = Path(output)
    temp = staging_name(output)  # known before the file exists: an exception anywhere below finds it
    verdicts: list[bool] = []
    try:
        stage_file(output, temp)
        with staged_output(temp, (lambda path: verdicts.append(check(path))) if check else None, durable) as stream:
            yield stream
        if verdicts and not verdicts[0]:
            temp.unlink()
            return
        commit_staged(temp, output)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise WriteError(f"{output}: write failed ({exc.strerror or exc}); nothing was changed") from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
