"""Whole checkpoint files as read-only memory maps, shared by every reader.

Readers hand out zero-copy slices of the map; `map_closer` releases it when the Checkpoint
closes (or leaves it to the last slice still held by a caller).
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from pathlib import Path

from convmigrate.errors import UnreadableCheckpointError


def map_file(path: Path) -> tuple[mmap.mmap | None, int]:
    """A read-only map of the whole file (None for an empty file, which cannot be mapped)."""
    try:
        with open(path, "rb") as stream:
            size = stream.seek(0, 2)
            return (mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) if size else None), size
    except OSError as exc:
        raise UnreadableCheckpointError(path, f"cannot be read ({exc.strerror})") from exc


def map_closer(mapped: mmap.mmap, data: memoryview) -> Callable[[], None]:
    def close() -> None:
        try:
            data.release()  # fails while a caller still holds a slice of it
            mapped.close()
        except BufferError:
            pass  # a caller still holds a tensor view; the map goes when the last view does

    return close
