"""Keep memory-mapped reads from growing the process: give back pages already consumed.

Touching a page of a memory-mapped file makes it resident in this process (file-backed pages
count in RSS), so streaming a 2 GB checkpoint through a map would leave 2 GB resident by the
end. Our maps are read-only, so `madvise(MADV_DONTNEED)` on any part of them is invisible to
correctness: it only unmaps pages from this process; they stay in the page cache, and a later
read of the same bytes maps them again. That is what lets a reader hand out zero-copy slices
and still run in constant memory: `TensorEntry.chunks()` calls `PageReleaser.release` on each
piece after the writer has taken it (and verification after it has used a tensor).

Releases are gathered into runs of at least RELEASE_BYTES before the system call, so
thousands of small tensors cost thousands of additions, not thousands of madvise calls.
"""

from __future__ import annotations

import mmap
import threading

from convmigrate.formats.filemap import address

PAGE = mmap.PAGESIZE
FAULT_AROUND = 64 * 1024  # Linux's default fault_around_bytes
# Pending released bytes are given back once they add up to this much.
RELEASE_BYTES = 8 * 1024 * 1024


class PageReleaser:
    """Drops consumed ranges of one read-only map from this process's resident memory.

    Example:
        >>> releaser = PageReleaser.for_map(mapped)                         # doctest: +SKIP
        >>> releaser.release(memoryview(mapped)[0:4096])                    # doctest: +SKIP
    """

    def __init__(self, mapped: mmap.mmap) -> None:
        self.mapped = mapped
        self.base = address(mapped)
        self.size = len(mapped)
        self.start = self.stop = 0  # the pending run [start, stop) of map offsets
        self.lock = threading.Lock()  # verification releases from several threads

    @classmethod
    def for_map(cls, mapped: mmap.mmap | None) -> PageReleaser | None:
        """A releaser, or None where the platform has no madvise (the map still works)."""
        if mapped is None or not hasattr(mapped, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
            return None
        return cls(mapped)

    def release(self, view: memoryview) -> None:
        """Mark the bytes of `view` (a slice of this map) as consumed."""
        if not len(view):
            return
        start = address(view) - self.base
        stop = start + len(view)
        if not 0 <= start < stop <= self.size:
            return  # not ours (e.g. a copy): nothing to give back
        with self.lock:
            self._add(start, stop)

    def _add(self, start: int, stop: int) -> None:
        if self.stop - self.start and (start > self.stop + PAGE or stop < self.start - PAGE):
            self._flush()  # not adjacent to the pending run: give that back first
        if self.stop == self.start:
            self.start, self.stop = start, stop
        else:
            self.start, self.stop = min(self.start, start), max(self.stop, stop)
        if self.stop - self.start >= RELEASE_BYTES:
            self._flush()

    def release_all(self) -> None:
        """Give back every page of the map (after a scan of headers spread over the file)."""
        with self.lock:
            self.start, self.stop = 0, self.size
            self._flush()

    def flush(self) -> None:
        """Give back the pending run now (whole pages around it: the map is read-only)."""
        with self.lock:
            self._flush()

    def _flush(self) -> None:
        # The kernel maps up to FAULT_AROUND bytes around each faulting page: give back that
        # margin too, or the neighbours of every released range stay resident (+60 MiB over the
        # 4 000 tensors of a 2 GB verification). A neighbour still in use simply faults again.
        start = max(0, self.start - self.start % PAGE - FAULT_AROUND)
        stop = min(self.size, self.stop + -self.stop % PAGE + FAULT_AROUND)
        self.start = self.stop = 0
        if stop > start:
            try:
                self.mapped.madvise(mmap.MADV_DONTNEED, start, stop - start)
            except (OSError, ValueError):
                pass  # a closed map or a refusing kernel: the pages simply stay resident
