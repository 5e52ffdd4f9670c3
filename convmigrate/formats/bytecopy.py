"""Tensor bytes from a reader's file into a writer's file, without passing them through a map.

A migration moves most bytes unchanged: a reshape is a new shape record over the same bytes.
Writing a memory-mapped slice with write(2) faults every page of it into this process first.
Readers tell where a chunk lies in its file (`TensorEntry.locate`), and the bytes go file to
file instead, the faster of two ways measured here for a 2 GiB copy:

- `os.copy_file_range` (the kernel copies, as `cp` does: 0.68 s) when the source and target
  offsets agree within a page; when they do not (a .ckpt puts each tensor's content right
  after its protobuf header, anywhere in a page) the kernel took 1.56 s,
- so then `pread` into one 4 MiB buffer and `write` from it (0.69 s; a 16 MiB buffer no longer
  fits the cache: 1.4-1.6 s; write(2) straight from the map: 1.98 s).

Computed tensors, small chunks, streams that are not regular files, and kernels or
filesystems that refuse take the plain write. Writers that need a CRC-32 of the bytes (the zip
records of a .pt, MindSpore's CRC tail) get it computed on a second thread from the map while
the bytes are copied: zlib releases the GIL.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from convmigrate.entries import Locate
from convmigrate.errors import WriteError

# Chunks below this go through the stream's buffer: a kernel copy costs a flush and two
# system calls, which a small tensor does not repay.
KERNEL_COPY_MIN_BYTES = 1024 * 1024

# The bounce buffer for copies whose offsets disagree within a page (see above).
BOUNCE_BYTES = 4 * 1024 * 1024
PAGE = mmap.PAGESIZE

# errno values meaning "this kernel or filesystem pair cannot copy_file_range": write instead.
_UNSUPPORTED = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF}

_crc_thread: ThreadPoolExecutor | None = None


def _crc_worker() -> ThreadPoolExecutor:
    global _crc_thread
    if _crc_thread is None:
        _crc_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="convmigrate-crc")
    return _crc_thread


def _regular_file_fd(stream: BinaryIO) -> int | None:
    """The stream's descriptor when it is a regular file the kernel can copy into."""
    if not hasattr(os, "copy_file_range"):
        return None
    try:
        fd = stream.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (AttributeError, OSError, ValueError):  # BytesIO and friends have no descriptor
        return None


class TensorBytesWriter:
    """Appends tensor chunks to `stream`: kernel copies for mapped slices, writes otherwise.

    Example:
        >>> out = TensorBytesWriter(stream)                                 # doctest: +SKIP
        >>> for chunk in entry.checked_chunks():                            # doctest: +SKIP
        ...     out.write(chunk, entry.locate)
    """

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.fd = _regular_file_fd(stream)
        self.bounce: memoryview | None = None  # allocated on first use

    def write(self, chunk: memoryview, locate: Locate | None, crc: int | None = None) -> int | None:
        """Append `chunk`; with `crc`, return the CRC-32 continued over it (else None)."""
        place = None
        if self.fd is not None and locate is not None and len(chunk) >= KERNEL_COPY_MIN_BYTES:
            place = locate(chunk)
        if place is None:
            self.stream.write(chunk)
            return None if crc is None else zlib.crc32(chunk, crc)
        checksum = _crc_worker().submit(zlib.crc32, chunk, crc) if crc is not None else None
        try:
            copied = self._file_copy(*place, len(chunk))
            if copied < len(chunk):
                self.stream.write(chunk[copied:])
        finally:
            result = checksum.result() if checksum is not None else None
        return result

    def _file_copy(self, source_fd: int, offset: int, length: int) -> int:
        """Copy file bytes [offset, offset + length) to the end of the stream; how many were."""
        assert self.fd is not None
        self.stream.flush()
        copied = 0
        try:
            if (os.lseek(self.fd, 0, os.SEEK_CUR) - offset) % PAGE or not hasattr(os, "preadv"):
                copied = self._bounce_copy(source_fd, offset, length)
            while copied < length:
                count = os.copy_file_range(source_fd, self.fd, length - copied, offset + copied)
                if count == 0:
                    raise WriteError(f"the input file changed while it was read: it ended {length - copied} bytes early")
                copied += count
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
            self.fd = None  # the same answer would come for every chunk: plain writes from now on
        finally:
            self.stream.seek(0, os.SEEK_CUR)  # the buffered stream learns the descriptor's new position
        return copied

    def _bounce_copy(self, source_fd: int, offset: int, length: int) -> int:
        """pread + write through one cache-sized buffer; all `length` bytes, or an error."""
        assert self.fd is not None
        if self.bounce is None:
            self.bounce = memoryview(bytearray(BOUNCE_BYTES))
        copied = 0
        while copied < length:
            count = os.preadv(source_fd, [self.bounce[: min(BOUNCE_BYTES, length - copied)]], offset + copied)
            if count == 0:
                raise WriteError(f"the input file changed while it was read: it ended {length - copied} bytes early")
            written = 0
            while written < count:
                written += os.write(self.fd, self.bounce[written:count])
            copied += count
        return copied


__all__ = ["TensorBytesWriter", "KERNEL_COPY_MIN_BYTES"]
