"""Tensor bytes from a reader's file into a writer's file, in the kernel where it can.

A migration moves most bytes unchanged: a reshape is a new shape record over the same bytes.
Readers say where a tensor's bytes lie in their open file (`TensorEntry.extents`), and the
bytes go file to file instead of through this process, the faster of two ways measured here
for a 2 GiB copy:

- `os.copy_file_range` (the kernel copies, as `cp` does: 0.68 s) when the source and target
  offsets agree within a page; when they do not (a .ckpt puts each tensor's content right
  after its protobuf header, anywhere in a page) the kernel took 1.56 s,
- so then `pread` into one 4 MiB buffer and `write` from it (0.69 s; a 16 MiB buffer no longer
  fits the cache: 1.4-1.6 s; write(2) straight from a memory map: 1.98 s).

Computed tensors, small ranges, streams that are not regular files, and kernels or
filesystems that refuse take the plain write of `TensorEntry.pieces`. Writers that need a
CRC-32 of the bytes (the zip records of a .pt, MindSpore's CRC tail) get it computed on a
second thread (zlib releases the GIL): from the bounce buffer the bytes already passed
through, while the next block is read and written (two buffers take turns), or, when the
kernel copies them and they never enter this process, from its own pread of the same bytes.
Reading them a second time cost ms2torch 0.6 s of CPU per GiB (its .pt records are 64-aligned
and its .ckpt contents are not: every byte bounces). A source file that ends early or changes
during a copy is the reader's "changed while it was read" error, never a short output.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import stat
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from typing import BinaryIO

from convmigrate.entries import Extent, TensorEntry
from convmigrate.formats.input_file import InputFile

# Chunks below this go through the stream's buffer: a kernel copy costs a flush and two
# system calls, which a small tensor does not repay.
KERNEL_COPY_MIN_BYTES = 1024 * 1024

# The bounce buffer for copies whose offsets disagree within a page (see above).
BOUNCE_BYTES = 4 * 1024 * 1024
# One copy_file_range call moves at most this much, so progress is reported as the copy goes.
KERNEL_STEP_BYTES = 64 * 1024 * 1024
PAGE = mmap.PAGESIZE

# errno values meaning "this kernel or filesystem pair cannot copy_file_range": write instead.
_UNSUPPORTED = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF}

_crc_thread: ThreadPoolExecutor | None = None


def _crc_worker() -> ThreadPoolExecutor:
    global _crc_thread
    if _crc_thread is None:
        _crc_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="convmigrate-crc")
    return _crc_thread


def _forget_crc_thread() -> None:
    """In a forked child (a shard job) the parent's CRC thread does not run: start a new one."""
    global _crc_thread
    _crc_thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_crc_thread)


# Told of every range of tensor bytes put in a file output (copied file to file as soon as it
# is copied; a small tensor written through the buffered stream once a flush has put it in the
# file), as (entry, start, stop, fd, offset): bytes [start, stop) of `entry` now lie at
# `offset` of the file open as `fd` (open for reading too: see formats/atomic.py). A
# migration's verification compares them with the original while the rest is written
# (verify/written.py).
CopyObserver = Callable[[TensorEntry, int, int, int, int], None]
_copy_observer: ContextVar[CopyObserver | None] = ContextVar("convmigrate_copy_observer", default=None)


@contextlib.contextmanager
def observed_copies(observer: CopyObserver) -> Iterator[None]:
    """Within the block, every TensorBytesWriter created in this context tells `observer` what
    it copied where (see CopyObserver)."""
    token = _copy_observer.set(observer)
    try:
        yield
    finally:
        _copy_observer.reset(token)


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
    """Appends tensor bytes to `stream`: kernel copies for file-backed ranges, writes otherwise.

    Example:
        >>> import io, zlib
        >>> import numpy as np
        >>> from convmigrate.entries import TensorEntry
        >>> stream = io.BytesIO()
        >>> out = TensorBytesWriter(stream)
        >>> crc = out.write_entry(TensorEntry.from_array("w", np.arange(4, dtype=np.uint8)), crc=0)
        >>> stream.getvalue() == bytes(range(4)), crc == zlib.crc32(bytes(range(4)))
        (True, True)
    """

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.fd = _regular_file_fd(stream)
        self.observer = _copy_observer.get()
        # Small tensors go through the buffered stream: (entry, start, stop, offset) of each,
        # told to the observer once a flush has put them in the file.
        self.unflushed: list[tuple[TensorEntry, int, int, int]] = []
        # Two bounce buffers (allocated on first use) take turns: the CRC thread reads the one
        # just written while the next block is read into the other.
        self.bounces: list[memoryview] = []
        self.in_crc: list[Future | None] = [None, None]  # the CRC step still reading each buffer
        self.turn = 0

    def write_entry(
        self,
        entry: TensorEntry,
        start: int = 0,
        stop: int | None = None,
        *,
        crc: int | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> int | None:
        """Append bytes [start, stop) of `entry` (default: all); with `crc`, return it continued."""
        stop = entry.nbytes if stop is None else stop
        extents = None
        if self.fd is not None and stop - start >= KERNEL_COPY_MIN_BYTES:
            extents = entry.extents(start, stop)
            # Only a source that holds exactly these bytes (and no more past the tensor's end) is
            # copied by the kernel; anything else is a reader bug that pieces() names.
            if extents is not None and (sum(length for _, _, length in extents) != stop - start
                                        or (stop == entry.nbytes and entry.extents(stop, stop + 1))):
                extents = None
        if not extents:
            offset = self.stream.tell() if self.observer is not None and self.fd is not None else None
            for piece in entry.pieces(start, stop):
                self.stream.write(piece)
                if crc is not None:
                    crc = zlib.crc32(piece, crc)
                if on_bytes is not None:
                    on_bytes(len(piece))
            if offset is not None and stop > start:
                self.unflushed.append((entry, start, stop, offset))
            return crc
        checksum = _RunningCrc(crc) if crc is not None else None
        try:
            position = start
            for file, offset, length in extents:
                fd = self.fd
                copied = self._file_copy(entry, position, (file, offset, length), on_bytes, checksum)
                if copied and self.observer is not None and fd is not None:
                    self.observer(entry, position, position + copied, fd, os.lseek(fd, 0, os.SEEK_CUR) - copied)
                if copied < length:  # the kernel refused: the rest by plain writes
                    for piece in entry.pieces(position + copied, stop):
                        self.stream.write(piece)
                        if checksum is not None:
                            checksum.add(piece).result()  # a rare path: no pile of pieces waiting
                        if on_bytes is not None:
                            on_bytes(len(piece))
                    break
                position += length
        finally:
            # Also after an error: the CRC thread is done with this entry's bytes and buffers.
            result = checksum.result() if checksum is not None else None
        return result

    def _file_copy(self, entry: TensorEntry, position: int, extent: Extent, on_bytes: Callable[[int], None] | None,
                   checksum: _RunningCrc | None) -> int:
        """Copy `extent` (bytes `position`... of `entry`) to the end of the stream; how many were.

        Fewer than the extent's length only when copy_file_range is refused (then nothing more
        is tried with it); a file that ends early is the source's "changed" error."""
        assert self.fd is not None
        source, offset, length = extent
        self.stream.flush()
        if self.unflushed:  # in the file now
            for written in self.unflushed:
                self.observer(*written[:3], self.fd, written[3])  # type: ignore[misc]
            self.unflushed.clear()
        copied = 0
        try:
            bounce = bool((os.lseek(self.fd, 0, os.SEEK_CUR) - offset) % PAGE)
            while copied < length:
                if bounce:
                    count = self._bounce(source, offset + copied, min(BOUNCE_BYTES, length - copied), checksum)
                else:
                    count = os.copy_file_range(source.fd, self.fd, min(KERNEL_STEP_BYTES, length - copied), offset + copied)
                    if count == 0:
                        raise source.changed(f"it ended at byte {offset + copied}, {source.identity.size} bytes were there when opened")
                    if checksum is not None:  # bytes this process never saw: the CRC thread reads them
                        checksum.add_range(entry, position + copied, position + copied + count)
                copied += count
                if on_bytes is not None:
                    on_bytes(count)
        except OSError as exc:
            if bounce or exc.errno not in _UNSUPPORTED:
                raise  # pread and write are what a plain write would do too: a real error
            self.fd = None  # the same answer would come for every chunk: plain writes from now on
        finally:
            self.stream.seek(0, os.SEEK_CUR)  # the buffered stream learns the descriptor's new position
        source.check_unchanged()
        return copied

    def _bounce(self, source: InputFile, offset: int, count: int, checksum: _RunningCrc | None) -> int:
        """pread `count` bytes into a cache-sized buffer, write them all, and hand the buffer
        to the CRC thread (the next block goes into the other buffer)."""
        assert self.fd is not None
        if not self.bounces:
            self.bounces = [memoryview(bytearray(BOUNCE_BYTES)) for _ in range(2)]
        turn, self.turn = self.turn, self.turn ^ 1
        if self.in_crc[turn] is not None:
            self.in_crc[turn].result()  # type: ignore[union-attr]  # the CRC thread is done reading it
            self.in_crc[turn] = None
        block = self.bounces[turn][:count]
        source.read_into(offset, block)
        written = 0
        while written < count:
            written += os.write(self.fd, block[written:count])
        if checksum is not None:
            self.in_crc[turn] = checksum.add(block)
        return count


class _RunningCrc:
    """A CRC-32 continued on the CRC thread, step by step in the order the bytes were written.

    The thread has one worker, so steps run in submission order; a step's buffer must not
    change until its future is done (`TensorBytesWriter._bounce` waits for it).
    """

    def __init__(self, value: int) -> None:
        self.value = value
        self.steps: list[Future] = []

    def _then(self, step: Callable[[], None]) -> Future:
        self.steps.append(_crc_worker().submit(step))
        return self.steps[-1]

    def add(self, data: memoryview) -> Future:
        """Continue with `data` (read on the thread: keep it unchanged until the future is done)."""
        def step() -> None:
            self.value = zlib.crc32(data, self.value)

        return self._then(step)

    def add_range(self, entry: TensorEntry, start: int, stop: int) -> Future:
        """Continue with bytes [start, stop) of `entry`, read by the thread itself."""
        def step() -> None:
            for piece in entry.pieces(start, stop, BOUNCE_BYTES):
                self.value = zlib.crc32(piece, self.value)

        return self._then(step)

    def result(self) -> int:
        """The CRC once every step has run (an error of a step is raised here)."""
        for step in self.steps:
            step.result()
        return self.value


__all__ = ["TensorBytesWriter", "KERNEL_COPY_MIN_BYTES"]
