"""Moved tensor bytes compared with the original's while the output is still being written.

A migration's writer copies most tensor bytes file to file and reports each range it copied
and where it put it (formats/bytecopy.observed_copies; a small tensor, written through the
buffered stream, once a flush has put it in the file). A thread here reads that range back
from the output file (the writer's own descriptor, from the page cache) and the same range of
the original through the original checkpoint's entry, and compares them while the writer goes
on with the next tensor: on two cores the comparison no longer waits for the write to end.

The writer's word is never taken for where a tensor lies: once the output is complete,
verification parses it with the format's reader and asks `proven(name, entry)` whether the
bytes the reader serves for that tensor are exactly the ranges compared here, at the offsets
the reader finds, in this same file (device and inode). Only then is the comparison not run
again; a tensor any of whose bytes were not compared this way is compared as before. A range
found different is a failure of that tensor either way.

This rests on the writers only appending: bytes once written are never written again, so what
was compared is what the file holds at the end (tests/test_written_bytes.py holds every
writer to it: a stream that refuses any seek but to where it is).
"""

from __future__ import annotations

import os
import queue
import threading
from collections import defaultdict
from collections.abc import Mapping

import numpy as np

from convmigrate.entries import TensorEntry
from convmigrate.verify.tensors import same_array_bytes

PIECE_BYTES = 1 << 20  # compared this much at a time: both pieces stay in the CPU's cache


class WrittenBytes:
    """Compares each range the writer reports (`observe`, on the writer's thread) on a thread of
    its own; `finish` waits for the last one; `proven` answers for a tensor of the output."""

    def __init__(self, originals: Mapping[str, TensorEntry]) -> None:
        self.originals = originals  # the output's tensor name -> the original whose bytes it must hold
        self.pending: queue.SimpleQueue[tuple[str, int, int, int, int] | None] = queue.SimpleQueue()
        # name -> (start, stop, offset in the output, equal) for every range compared
        self.compared: defaultdict[str, list[tuple[int, int, int, bool]]] = defaultdict(list)
        self.writer_fd: int | None = None  # the writer's descriptor of the output, as first reported
        self.fd: int | None = None  # our own descriptor of the output (a dup of the writer's)
        self.file: tuple[int, int] | None = None  # (device, inode) of the output written
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="convmigrate-verify-written", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def observe(self, entry: TensorEntry, start: int, stop: int, fd: int, offset: int) -> None:
        """formats/bytecopy's CopyObserver: queued, compared on the thread. The first report's
        file is the output: its descriptor is duplicated (ours to close, never another file's
        once the writer closes its own); a report through any other descriptor is left to the
        reader (the writer's stays open, so the same number is the same file, without an fstat
        per tensor on the writer's thread)."""
        if entry.name not in self.originals or self.failure is not None or self.fd == -1:
            return
        if self.writer_fd is None:
            status = os.fstat(fd)
            self.writer_fd, self.fd, self.file = fd, os.dup(fd), (status.st_dev, status.st_ino)
        elif fd != self.writer_fd:
            return
        self.pending.put((entry.name, start, stop, self.fd, offset))

    def finish(self) -> None:
        """Wait for every range reported so far (the writer is done); raise what a compare raised."""
        if self.thread.is_alive():
            self.pending.put(None)
            self.thread.join()
        if self.fd is not None and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1  # closed (and no other file is taken for it); its identity stays, for proven()
        if self.failure is not None:
            raise self.failure

    def _run(self) -> None:
        while (item := self.pending.get()) is not None:
            if self.failure is None:
                try:
                    self._compare(*item)
                except BaseException as exc:  # noqa: BLE001 - kept for finish(): a thread would print a traceback
                    self.failure = exc

    def _compare(self, name: str, start: int, stop: int, fd: int, offset: int) -> None:
        buffer = memoryview(bytearray(PIECE_BYTES))
        equal, position = True, offset
        for piece in self.originals[name].pieces(start, stop, PIECE_BYTES):
            count = len(piece)
            got = 0
            while got < count:
                read = os.preadv(fd, [buffer[got:count]], position + got)
                if read == 0:
                    break
                got += read
            if got < count or not same_array_bytes(np.frombuffer(piece, np.uint8), np.frombuffer(buffer[:count], np.uint8)):
                equal = False
                break
            position += count
        self.compared[name].append((start, stop, offset, equal))

    def proven(self, name: str, entry: TensorEntry) -> bool | None:
        """True: every byte the reader serves for `entry` (the output's tensor `name`) was compared
        equal at the very place the reader reads it; False: some of them differ; None: not all
        of them were compared here (the caller compares them itself)."""
        records = self.compared.get(name)
        extents = entry.extents(0, entry.nbytes) if records else None
        if not records or not extents or self.file is None:
            return None
        segments, position = [], 0
        for file, offset, length in extents:  # where the reader finds each range of the tensor
            identity = getattr(file, "identity", None)
            segments.append((position, position + length, offset,
                             (identity.device, identity.inode) if identity is not None else None))
            position += length
        mapped = []
        for start, stop, offset, equal in sorted(records):
            if not any(first <= start and stop <= last and where + start - first == offset and file == self.file
                       for first, last, where, file in segments):
                return None  # compared somewhere the reader does not read this tensor from
            mapped.append((start, stop, equal))
        if not all(equal for _, _, equal in mapped):
            return False
        covered = 0
        for start, stop, _ in mapped:
            if start != covered:
                return None
            covered = stop
        return True if covered == entry.nbytes else None
