"""The one in-memory model of a checkpoint, shared by every format.

A checkpoint is an ordered list of named entries. A `TensorEntry` is a lazy handle: name, dtype,
shape and a `ByteSource` that reaches its raw bytes (little-endian, C order) only when a writer
or a check asks, in bounded pieces, so a huge tensor never has to sit in memory whole. Readers
serve bytes from their open file (`formats/input_file.py`: pread in bounded blocks, a file that
changes while it is read is a one-line error); computed and in-memory tensors serve theirs from
memory (`MemoryBytes`). A `ValueEntry` is a plain Python value (MindSpore `str` entries, scalars
kept in torch checkpoints).

Reshaping a contiguous tensor changes its shape record, not its bytes: `with_shape` shares the
byte source of the original.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

from convmigrate.errors import WriteError
from convmigrate.vocab import DType, Format

if TYPE_CHECKING:
    from convmigrate.formats.input_file import InputFile

# Consumers get tensor bytes in pieces of at most this size: a streamed tensor never needs more
# memory than one piece. 4 MiB stays in the CPU cache between the read and the write that
# follows it (formats/bytecopy.py measured 16 MiB pieces at half the speed of 4 MiB ones).
COPY_PIECE_BYTES = 4 * 1024 * 1024

# An old-style source: a callable giving the bytes as consecutive buffers (tests, computed tensors).
ChunkSource = Callable[[], Iterable[memoryview]]
# Where a byte range of a tensor lies in an open input file: (file, offset, length).
Extent = tuple["InputFile", int, int]


class ByteSource(Protocol):
    """How a tensor's bytes are reached. Byte positions count from the tensor's first byte.

    A source may hold fewer or more bytes than its tensor needs only through a reader bug; the
    TensorEntry methods check the count and name the tensor.
    """

    def pieces(self, start: int, stop: int, piece_bytes: int) -> Iterator[memoryview]:
        """Bytes [start, stop) as consecutive buffers of at most `piece_bytes` (fewer at the end)."""
        ...

    def read(self, start: int, stop: int) -> memoryview:
        """Bytes [start, stop) as one buffer (fewer only if the source ends first)."""
        ...

    def extents(self, start: int, stop: int) -> list[Extent] | None:
        """Where bytes [start, stop) lie in open files, for kernel copies; None if not in a file."""
        ...


class MemoryBytes:
    """A source whose bytes are in memory: `produce()` gives them as buffers, sliced without copies.

    Example:
        >>> MemoryBytes(lambda: (memoryview(b"abcd"),)).read(1, 3).tobytes()
        b'bc'
    """

    def __init__(self, produce: ChunkSource) -> None:
        self.produce = produce

    def _views(self) -> Iterator[memoryview]:
        for buffer in self.produce():
            yield memoryview(buffer).cast("B")

    def pieces(self, start: int, stop: int, piece_bytes: int) -> Iterator[memoryview]:
        position = 0
        for view in self._views():
            end = position + len(view)
            first, last = max(start, position), min(stop, end)
            for at in range(first, last, piece_bytes):
                yield view[at - position : min(last, at + piece_bytes) - position]
            position = end
            if position >= stop:
                return

    def read(self, start: int, stop: int) -> memoryview:
        parts = list(self.pieces(start, stop, max(1, stop - start)))
        if len(parts) == 1:
            return parts[0]  # zero-copy: a slice of the one buffer
        return memoryview(b"".join(parts))

    def extents(self, start: int, stop: int) -> list[Extent] | None:
        return None


@dataclass(frozen=True)
class TensorEntry:
    """A named tensor whose bytes are read only when asked for, a bounded piece at a time.

    `source` is a ByteSource (readers: their file's spans; `from_array`: memory); a plain
    callable giving buffers is accepted too and wrapped in `MemoryBytes`.

    Example:
        >>> entry = TensorEntry.from_array("conv.weight", np.zeros((8, 4, 3), np.float32))
        >>> entry.with_shape((8, 4, 1, 3)).shape
        (8, 4, 1, 3)
        >>> entry.rows(2, 4).shape
        (2, 4, 3)
    """

    name: str
    dtype: DType
    shape: tuple[int, ...]
    source: ByteSource = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        # hasattr, not isinstance(ByteSource): a runtime Protocol check costs ~40 us per entry.
        if not hasattr(self.source, "pieces"):
            object.__setattr__(self, "source", MemoryBytes(self.source))

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def _wrong_size(self, given: int) -> WriteError:
        return WriteError(f"{self.name}: source gave {given} bytes, {self.dtype.name} {list(self.shape)} needs {self.nbytes}")

    def pieces(self, start: int, stop: int, piece_bytes: int = COPY_PIECE_BYTES) -> Iterator[memoryview]:
        """Bytes [start, stop) of the tensor in pieces of at most `piece_bytes`.

        A piece read from a file is a fresh buffer; one from memory is a view (no copy). A
        source that gives fewer bytes, or more than `nbytes` when the range reaches the end,
        is a WriteError naming the tensor: a reader bug never shifts an output.
        """
        if not 0 <= start <= stop <= self.nbytes:
            raise ValueError(f"{self.name}: bytes [{start}, {stop}) are outside its {self.nbytes}")
        given = start
        # Reaching the end, one byte more is asked for: a source that has it is too long.
        for piece in self.source.pieces(start, stop + (stop == self.nbytes), piece_bytes):
            if given + len(piece) > stop:
                rest = sum(len(p) for p in self.source.pieces(given + len(piece), 1 << 62, piece_bytes))
                raise self._wrong_size(given + len(piece) + rest)
            given += len(piece)
            yield piece
        if given != stop:
            raise self._wrong_size(given)

    def chunks(self, piece_bytes: int = COPY_PIECE_BYTES) -> Iterator[memoryview]:
        """All raw bytes in order, in pieces of at most `piece_bytes`; exactly `nbytes` or an error."""
        return self.pieces(0, self.nbytes, piece_bytes)

    def read(self, start: int, stop: int) -> memoryview:
        """Bytes [start, stop) as one buffer: for a bounded block of a big tensor."""
        if not 0 <= start <= stop <= self.nbytes:
            raise ValueError(f"{self.name}: bytes [{start}, {stop}) are outside its {self.nbytes}")
        data = self.source.read(start, stop)
        if len(data) != stop - start:
            raise self._wrong_size(start + len(data))
        return data

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) along the first axis as an array of `dtype.numpy` (read-only).

        Bounded-memory checks walk a big weight this way, a block of output channels at a time.
        """
        if not self.shape:
            raise ValueError(f"{self.name}: a scalar has no rows")
        row_bytes = self.nbytes // self.shape[0] if self.shape[0] else 0
        start, stop = max(0, start), min(self.shape[0], stop)
        stop = max(start, stop)
        flat = np.frombuffer(self.read(start * row_bytes, stop * row_bytes), dtype=self.dtype.numpy)
        return flat.reshape((stop - start, *self.shape[1:]))

    def extents(self, start: int, stop: int) -> list[Extent] | None:
        """Where bytes [start, stop) lie in open input files (kernel copies), or None."""
        return self.source.extents(start, stop)

    def raw_bytes(self) -> bytes:
        """All bytes as one `bytes` object (a copy: for small tensors and tests)."""
        return b"".join(bytes(c) for c in self.chunks())

    def array(self) -> np.ndarray:
        """The whole tensor as a NumPy array of `dtype.numpy` (bfloat16 as its uint16 bits).

        Read from the file into memory (zero-copy only for in-memory sources): for small
        tensors; a streaming path reads a big one by `rows` or `chunks`.
        """
        return np.frombuffer(self.read(0, self.nbytes), dtype=self.dtype.numpy).reshape(self.shape)

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
        return cls(name, dtype, tuple(data.shape), MemoryBytes(lambda: (memoryview(data.reshape(-1)).cast("B"),)))


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
