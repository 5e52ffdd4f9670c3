"""The one in-memory model of a checkpoint, shared by every format.

A checkpoint is an ordered list of named entries. A `TensorEntry` is a lazy handle: name, dtype,
shape and a way to reach its raw bytes (little-endian, C order) that readers implement with
memory maps, so nothing is read until a writer asks for it, one tensor at a time. A `ValueEntry`
is a plain Python value (MindSpore `str` entries, scalars kept in torch checkpoints).

Reshaping a contiguous tensor changes its shape record, not its bytes: `with_shape` shares the
byte source of the original.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from convmigrate.errors import WriteError
from convmigrate.vocab import DType, Format

# A byte source yields the tensor's raw bytes as one or more consecutive buffers. Most readers
# yield one memory-mapped buffer; a MindSpore tensor split over several values yields each part.
ChunkSource = Callable[[], Iterable[memoryview]]

# Writers copy in pieces of this size so a huge tensor never needs a second copy in memory.
COPY_PIECE_BYTES = 16 * 1024 * 1024
# Gives a consumed buffer's memory-mapped pages back (formats/pages.py); the bytes stay readable.
PageRelease = Callable[[memoryview], None]
# (open file descriptor, offset) of a buffer that is a slice of a memory-mapped file, else None.
Locate = Callable[[memoryview], tuple[int, int] | None]


@dataclass(frozen=True)
class TensorEntry:
    """A named tensor whose bytes are read only when asked for.

    Example:
        >>> entry = TensorEntry.from_array("conv.weight", np.zeros((8, 4, 3), np.float32))
        >>> entry.with_shape((8, 4, 1, 3)).shape
        (8, 4, 1, 3)
    """

    name: str
    dtype: DType
    shape: tuple[int, ...]
    source: ChunkSource = field(repr=False, compare=False)
    # Readers that memory-map set this, so streaming a tensor leaves no pages resident.
    release: PageRelease | None = field(default=None, repr=False, compare=False)
    # Readers that memory-map set this too: where a chunk lies in its file, so a writer can
    # have the kernel copy it (formats/bytecopy.py). Reshaped and renamed entries keep it.
    locate: Locate | None = field(default=None, repr=False, compare=False)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def chunks(self) -> Iterator[memoryview]:
        """The raw bytes in order, as buffers of at most COPY_PIECE_BYTES, never copied.

        Each piece's mapped pages are given back once the consumer asks for the next one
        (still readable after that: they are mapped again from the page cache).
        """
        for buffer in self.source():
            view = memoryview(buffer).cast("B")
            for start in range(0, len(view), COPY_PIECE_BYTES):
                piece = view[start : start + COPY_PIECE_BYTES]
                yield piece
                if self.release is not None:
                    self.release(piece)

    def checked_chunks(self, on_bytes: Callable[[int], None] | None = None) -> Iterator[memoryview]:
        """`chunks()`, each reported to `on_bytes`; the source must give exactly `nbytes`.

        Writers stream through this, so a reader bug that yields too few or too many bytes is
        a WriteError naming the tensor, never a shifted file.
        """
        written = 0
        for chunk in self.chunks():
            written += len(chunk)
            if written > self.nbytes:
                break
            if on_bytes is not None:
                on_bytes(len(chunk))
            yield chunk
        if written != self.nbytes:
            raise WriteError(f"{self.name}: source gave {written} bytes, {self.dtype.name} {list(self.shape)} needs {self.nbytes}")

    def release_pages(self) -> None:
        """Give back the mapped pages of this tensor (after `array()` was used and dropped)."""
        if self.release is not None:
            for buffer in self.source():
                self.release(memoryview(buffer).cast("B"))

    def raw_bytes(self) -> bytes:
        """All bytes as one `bytes` object (a copy: for small tensors and tests)."""
        return b"".join(bytes(c) for c in self.chunks())

    def array(self) -> np.ndarray:
        """The tensor as a NumPy array of `dtype.numpy` (bfloat16 as its uint16 bits).

        Zero-copy when the source is one buffer (a read-only view of the memory map).
        """
        buffers = list(self.source())
        if len(buffers) == 1:
            flat = np.frombuffer(buffers[0], dtype=self.dtype.numpy, count=self.numel)
        else:
            flat = np.frombuffer(b"".join(bytes(b) for b in buffers), dtype=self.dtype.numpy)
        return flat.reshape(self.shape)

    def sha256(self) -> str:
        """Hex SHA-256 of the raw little-endian C-order bytes: equal across formats."""
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.hexdigest()

    def with_shape(self, shape: Sequence[int]) -> TensorEntry:
        """The same bytes under another shape with the same number of elements (no copy)."""
        shape = tuple(int(s) for s in shape)
        if math.prod(shape) != self.numel:
            raise ValueError(f"{self.name}: cannot view {self.shape} as {shape}")
        return replace(self, shape=shape)

    def renamed(self, name: str) -> TensorEntry:
        return replace(self, name=name)

    @classmethod
    def from_array(cls, name: str, array: np.ndarray, dtype: DType | None = None) -> TensorEntry:
        """Wrap an in-memory array (used for computed tensors, e.g. folded weight norm)."""
        from convmigrate.vocab import DTYPES

        if dtype is None:
            matches = [d for d in DTYPES.values() if d.numpy == array.dtype.newbyteorder("<")]
            if array.dtype == np.uint16:
                matches = [DTYPES["uint16"]]
            if not matches:
                raise ValueError(f"{name}: no dtype for NumPy {array.dtype}")
            dtype = matches[0]
        data = np.asarray(array, dtype=dtype.numpy, order="C")  # ascontiguousarray would make 0-d 1-d
        # Flatten first: memoryview cannot cast a view with a zero in its shape, e.g. (0, 3).
        return cls(name, dtype, tuple(data.shape), lambda: (memoryview(data.reshape(-1)).cast("B"),))


@dataclass(frozen=True)
class ValueEntry:
    """A named plain value: a str, int, float or bool stored beside the tensors."""

    name: str
    value: str | int | float | bool


Entry = TensorEntry | ValueEntry


@dataclass
class Checkpoint:
    """An opened checkpoint: format, ordered entries (lazy), metadata and reader notes.

    `notes` records what the reader decided on the user's behalf (e.g. "state dict found under
    'model'"), so the CLI can report it. `close` releases memory maps and open files.
    """

    format: Format
    entries: list[Entry]
    metadata: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def tensors(self) -> list[TensorEntry]:
        return [e for e in self.entries if isinstance(e, TensorEntry)]

    def add_closer(self, close: Callable[[], None]) -> None:
        """Run `close` when the checkpoint is closed (last added, first run): maps, files."""
        self._closers.append(close)

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
