"""Input files read with pread, in bounded blocks: bytes we can trust, or a one-line error.

Every reader opens its file here and serves tensor bytes as `FileSpans`. The readers used to
hand out zero-copy slices of a memory map, but a mapped file that shrinks while it is read
(a download still being written, a checkpoint replaced in place, a full disk) kills the process
with SIGBUS the first time a page past the new end is touched. Python cannot catch SIGBUS: the
user saw no message, and a half-written output stayed behind. Reading with pread (os.preadv into
our own buffer) turns the same event into a short read, which is checked: a short read, or a
file whose size, modification time or inode differs from when it was opened (checked after each
read of a tensor and after each kernel copy), is `UnreadableCheckpointError("... changed while
it was read ...")`; the output's temporary file is then removed like after any other error.

Pieces are read into fresh buffers of at most a few MiB, so streaming never holds more than one
piece per consumer and nothing stays resident afterwards (a map needed `madvise` to give pages
back). File-to-file copies still happen in the kernel: `FileSpans.extents` tells a writer where
the bytes lie (formats/bytecopy.py). Measured against the maps this replaces: see bench/run.py
and the commit that introduced this module.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from convmigrate.entries import Extent
from convmigrate.errors import UnreadableCheckpointError


@dataclass(frozen=True)
class Identity:
    """What must stay the same while a file is read (fstat of the open descriptor)."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, status: os.stat_result) -> Identity:
        return cls(status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def _pread_into(fd: int, out: memoryview, offset: int) -> int:
    """One pread into `out`: preadv where there is one (Linux, BSDs), else pread and a copy."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [out], offset)
    data = os.pread(fd, len(out), offset)
    out[: len(data)] = data
    return len(data)


class _Descriptor:
    """The open file behind an InputFile and its windows: closed once, by whoever owns it."""

    def __init__(self, fd: int) -> None:
        self.fd, self.closed = fd, False

    def close(self) -> None:
        if not self.closed:
            self.closed = True  # first: extents must never hand out a descriptor being closed
            os.close(self.fd)


class InputFile:
    """One open input file (or a window of one): reads at offsets, spans as tensor byte sources.

    Offsets count from the start of the window: a NeMo archive's torch checkpoint is read in
    place inside the tar as `file.window(member_offset, member_size)`.

    Example:
        >>> with open_input(Path("fixtures/tiny_tcn.pt")) as file:
        ...     file.read_at(0, 4), file.window(2, 6).read_at(0, 2)
        (b'PK\\x03\\x04', b'\\x03\\x04')
    """

    def __init__(self, path: Path, descriptor: _Descriptor, identity: Identity, base: int = 0, size: int | None = None) -> None:
        self.path, self.descriptor, self.identity = path, descriptor, identity
        self.base = base
        self.size = identity.size - base if size is None else size

    @property
    def fd(self) -> int:
        return self.descriptor.fd

    @property
    def closed(self) -> bool:
        return self.descriptor.closed

    def window(self, start: int, size: int) -> InputFile:
        """Bytes [start, start + size) of this file as a file of their own (closed with it)."""
        if start < 0 or size < 0 or start + size > self.size:
            raise ValueError(f"{self.path}: window [{start}, {start + size}) is outside its {self.size} bytes")
        return InputFile(self.path, self.descriptor, self.identity, self.base + start, size)

    # ----------------------------------------------------------------------- checks
    def changed(self, detail: str) -> UnreadableCheckpointError:
        """The one-line error for a file that changed under us (`detail` says how)."""
        return UnreadableCheckpointError(
            self.path, f"changed while it was read ({detail}); run again once the file is complete"
        )

    def check_unchanged(self) -> None:
        """Raise `changed` if the open file's size, times or inode differ from when it was opened."""
        if self.closed:
            raise ValueError(f"{self.path}: the checkpoint was closed")
        now = Identity.of(os.fstat(self.fd))
        if now != self.identity:
            if now.size != self.identity.size:
                raise self.changed(f"{self.identity.size} bytes when opened, {now.size} now")
            raise self.changed("it was modified in place")

    # ----------------------------------------------------------------------- reading
    def read_into(self, offset: int, out: memoryview) -> None:
        """Fill `out` with the bytes at `offset`: all of them, or `changed` (they were there at open)."""
        if self.closed:
            raise ValueError(f"{self.path}: the checkpoint was closed")
        if offset < 0 or offset + len(out) > self.size:
            raise ValueError(f"{self.path}: bytes [{offset}, {offset + len(out)}) are outside its {self.size}")
        done = 0
        while done < len(out):
            try:
                count = _pread_into(self.fd, out[done:], self.base + offset + done)
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:
                    raise UnreadableCheckpointError(self.path, f"cannot be read at byte {offset + done} (input/output error)") from exc
                raise
            if count == 0:
                self.check_unchanged()  # names the new size when that is what happened
                raise self.changed(f"it ended at byte {self.base + offset + done}, {self.identity.size} bytes were there when opened")
            done += count

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes at `offset`, fewer only at the end of the file as it was opened.

        Headers are read this way (nothing stays resident, unlike touching a map)."""
        size = max(0, min(size, self.size - offset))
        buffer = bytearray(size)
        if size:
            self.read_into(offset, memoryview(buffer))
        return bytes(buffer)

    def __getitem__(self, key: slice) -> bytes:
        """file[a:b] is read_at(a, b - a): readers can parse headers as if from bytes."""
        start, stop, step = key.indices(self.size)
        assert step == 1, "only contiguous slices"
        return self.read_at(start, max(0, stop - start))

    def __len__(self) -> int:
        return self.size

    def spans(self, spans: Sequence[tuple[int, int]]) -> FileSpans:
        """A TensorEntry byte source: the concatenation of these (offset, length) ranges."""
        for offset, length in spans:
            if offset < 0 or length < 0 or offset + length > self.size:
                raise ValueError(f"{self.path}: bytes [{offset}, {offset + length}) are outside its {self.size}")
        return FileSpans(self, tuple(spans))

    # ----------------------------------------------------------------------- closing
    def close(self) -> None:
        """Close the file (and every window of it)."""
        self.descriptor.close()

    def __enter__(self) -> InputFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileSpans:
    """A tensor's bytes as ranges of an input file, read with pread in bounded pieces."""

    def __init__(self, file: InputFile, spans: tuple[tuple[int, int], ...]) -> None:
        self.file, self.spans = file, spans
        self.size = sum(length for _, length in spans)

    def _ranges(self, start: int, stop: int) -> Iterator[tuple[int, int]]:
        """(file offset, length) of the parts of tensor bytes [start, stop), clipped to the source."""
        position = 0
        for offset, length in self.spans:
            first, last = max(start, position), min(stop, position + length)
            if first < last:
                yield offset + first - position, last - first
            position += length
            if position >= stop:
                break

    def pieces(self, start: int, stop: int, piece_bytes: int) -> Iterator[memoryview]:
        for offset, length in self._ranges(start, stop):
            for at in range(0, length, piece_bytes):
                count = min(piece_bytes, length - at)
                # A fresh buffer each time (np.empty: no zero fill): a consumer may keep a piece.
                piece = memoryview(np.empty(count, np.uint8))
                self.file.read_into(offset + at, piece)
                yield piece
        self.file.check_unchanged()

    def read(self, start: int, stop: int) -> memoryview:
        stop = min(stop, self.size)
        out = memoryview(np.empty(max(0, stop - start), np.uint8))
        at = 0
        for offset, length in self._ranges(start, stop):
            self.file.read_into(offset, out[at : at + length])
            at += length
        self.file.check_unchanged()
        return out

    def extents(self, start: int, stop: int) -> list[Extent] | None:
        if self.file.closed:
            return None
        return [(self.file, self.file.base + offset, length) for offset, length in self._ranges(start, stop)]


def open_input(path: Path) -> InputFile:
    """Open a checkpoint file for reading; its identity is taken now and checked on every read."""
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever (no effect on files)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnreadableCheckpointError(path, f"cannot be read ({exc.strerror})") from exc
    try:
        status = os.fstat(fd)
        if stat.S_ISDIR(status.st_mode):
            raise UnreadableCheckpointError(path, "is a directory; give a checkpoint file")
        if not stat.S_ISREG(status.st_mode):
            raise UnreadableCheckpointError(path, "is not a regular file (a pipe or a device); give a checkpoint file")
    except BaseException:
        os.close(fd)
        raise
    return InputFile(path, _Descriptor(fd), Identity.of(status))


def open_temporary(path: Path, handle: BinaryIO) -> InputFile:
    """A temporary file of ours as an InputFile whose errors name `path` (the archive it came from).

    The InputFile keeps its own descriptor (a dup): the caller may close `handle` at once."""
    fd = os.dup(handle.fileno())
    return InputFile(Path(path), _Descriptor(fd), Identity.of(os.fstat(fd)))


__all__ = ["InputFile", "FileSpans", "open_input", "open_temporary"]
