"""Whole checkpoint files as read-only memory maps, shared by every reader.

Readers hand out zero-copy slices of the map. The file also stays open while the checkpoint
is open, so a writer can ask the kernel to copy a slice's bytes file to file
(formats/bytecopy.py) instead of reading them through the map: `MappedFile.locate` says which
file and offset a slice came from.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convmigrate.errors import UnreadableCheckpointError


def address(buffer: memoryview | mmap.mmap) -> int:
    """The memory address of a buffer's first byte (0 for an empty one)."""
    return np.frombuffer(buffer, dtype=np.uint8).ctypes.data if len(buffer) else 0


@dataclass
class MappedFile:
    """A read-only map of a whole file (None when the file is empty) and the file, kept open."""

    data: mmap.mmap | None
    size: int
    fd: int  # -1 for an empty file
    base: int = 0
    closed: bool = False  # the checkpoint was closed: no slice, descriptor or read any more

    def locate(self, view: memoryview) -> tuple[int, int] | None:
        """(fd, offset) of a slice of this map; None once closed or for a buffer not ours."""
        if self.closed or self.fd < 0 or not len(view):
            return None
        start = address(view) - self.base
        if not 0 <= start <= self.size - len(view):
            return None
        return self.fd, start

    def read_at(self, offset: int, size: int) -> bytes:
        """Bytes [offset, offset + size) read with pread: unlike the map, nothing stays resident."""
        if self.closed:
            raise ValueError("the checkpoint was closed")
        if hasattr(os, "pread"):
            return os.pread(self.fd, size, offset)
        assert self.data is not None  # Windows has no pread: read through the map instead
        return bytes(self.data[offset : offset + size])

    def closer(self, view: memoryview | None = None) -> Callable[[], None]:
        """Closes the file, and the map unless a caller still holds a slice of it (or of `view`)."""

        def close() -> None:
            if not self.closed:
                self.closed = True  # first: locate() must never hand out a descriptor being closed
                if self.fd >= 0:
                    os.close(self.fd)
            if self.data is None:
                return
            try:
                if view is not None:
                    view.release()  # fails while a caller still holds a slice of it
                self.data.close()
            except BufferError:
                pass  # a caller still holds a tensor view; the map goes when the last view does

        return close


def map_file(path: Path) -> MappedFile:
    """A read-only map of the whole file, with its descriptor left open for kernel copies."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnreadableCheckpointError(path, f"cannot be read ({exc.strerror})") from exc
    try:
        status = os.fstat(fd)
        if stat.S_ISDIR(status.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        size = status.st_size
        if not size:
            os.close(fd)
            return MappedFile(None, 0, -1)
        data = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        os.close(fd)
        raise UnreadableCheckpointError(path, f"cannot be read ({exc.strerror})") from exc
    return MappedFile(data, size, fd, address(data))
