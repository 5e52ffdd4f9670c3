"""A conv weight read a block at a time, so that checking a layer of any size holds a bounded
piece of it: a range of rows along its first axis, or, when one row alone is too big, a range
of its second axis within one row (contiguous bytes either way).

- `EntryWeight`: a weight in a checkpoint (TensorEntry.rows / TensorEntry.read): its stored
  values for the bit-for-bit comparison, float32 for the numerics.
- `FoldedWeight`: a weight norm's g * v / ||v||, computed a block at a time (the norms first,
  in one pass over v, when they run across blocks).
- `ArrayWeight`: a weight already in memory (tests).
- `RandomWeight`: seeded random values in any shape, generated a block at a time: the same
  values in the same order under the original's shape and the converted one's, as a reshape
  moves a weight (a layer configuration's numerics, verify.runner).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from convmigrate.entries import TensorEntry

# Stored bytes of weight one block reads from each side. A check holds a few blocks (both
# sides' stored and float32 values, the numerics' scratch) and one unit's outputs: ~60 MiB per
# verification thread, whatever the layer's size (tests/test_verify_blocks.py measures it).
BLOCK_BYTES = 8 << 20


class Block(NamedTuple):
    """Rows [row0, row1) of the first axis; within one row, [col0, col1) of the second (col1 < 0: all)."""

    row0: int
    row1: int
    col0: int = 0
    col1: int = -1

    @property
    def whole_rows(self) -> bool:
        return self.col1 < 0


def _columns(shape: tuple[int, ...], block: Block) -> tuple[int, int]:
    return (0, shape[1]) if block.whole_rows else (block.col0, block.col1)


def block_shape(shape: tuple[int, ...], block: Block) -> tuple[int, ...]:
    col0, col1 = _columns(shape, block)
    return (block.row1 - block.row0, col1 - col0, *shape[2:])


class ArrayWeight:
    """A weight in memory; `raw` is its stored values (None: computed, never bit-compared)."""

    def __init__(self, values: np.ndarray, raw: np.ndarray | None = None) -> None:
        self.shape = tuple(values.shape)
        self._values, self._raw = values, raw
        self.itemsize = max(values.itemsize, raw.itemsize if raw is not None else 0)
        self.moved = raw is not None

    def values(self, block: Block) -> np.ndarray:
        col0, col1 = _columns(self.shape, block)
        return self._values[block.row0 : block.row1, col0:col1]

    def raw(self, block: Block) -> np.ndarray | None:
        if self._raw is None:
            return None
        col0, col1 = _columns(self.shape, block)
        return self._raw[block.row0 : block.row1, col0:col1]


# RandomWeight draws its values this many at a time, each run from its own seed: any block's
# values are the same whichever shape (and so whichever blocks) reads them.
RANDOM_RUN = 1 << 16


class RandomValues:
    """The flat sequence of uniform values in [-1, 1) for one seed, generated a range at a time;
    the last range is kept, because the original's and the converted weight read the same block
    one after the other (at 700 MiB a second generation cost 0.7 s)."""

    def __init__(self, seed: tuple[int, ...]) -> None:
        self.seed = seed
        self.last: tuple[tuple[int, int], np.ndarray] | None = None

    def flat(self, start: int, stop: int) -> np.ndarray:
        """Values [start, stop) (float32, read-only: shared by both weights)."""
        if self.last is not None and self.last[0] == (start, stop):
            return self.last[1]
        out = np.empty(stop - start, dtype=np.float32)
        for run in range(start // RANDOM_RUN, -(-stop // RANDOM_RUN)):
            first, last = max(start, run * RANDOM_RUN), min(stop, (run + 1) * RANDOM_RUN)
            values = np.random.default_rng([*self.seed, run]).random(RANDOM_RUN, dtype=np.float32)
            out[first - start : last - start] = values[first - run * RANDOM_RUN : last - run * RANDOM_RUN]
        out *= 2
        out -= 1
        out.setflags(write=False)
        self.last = ((start, stop), out)
        return out


class RandomWeight:
    """`values` (a RandomValues) in `shape`: element i is the same for every shape reading them.

    Random weights prove a layer configuration whatever the real weights hold: a constant or
    zero-initialised layer would not show a misplaced axis."""

    moved = False
    itemsize = 4

    def __init__(self, shape: tuple[int, ...], values: RandomValues) -> None:
        self.shape, self.source = tuple(shape), values

    def values(self, block: Block) -> np.ndarray:
        start, stop = _flat_range(self.shape, block)
        return self.source.flat(start, stop).reshape(block_shape(self.shape, block))

    def raw(self, block: Block) -> None:
        return None  # not stored anywhere: compared by value only


def _flat_range(shape: tuple[int, ...], block: Block) -> tuple[int, int]:
    """The element range of `block` in a C-ordered array of `shape` (a block is contiguous)."""
    inner = math.prod(shape[2:])
    col0, col1 = _columns(shape, block)
    start = (block.row0 * shape[1] + col0) * inner
    return start, start + (block.row1 - block.row0 - 1) * shape[1] * inner + (col1 - col0) * inner


def scan(shape: tuple[int, ...], itemsize: int, budget: int | None = None) -> list[Block]:
    """Blocks of at most `budget` bytes (default BLOCK_BYTES) covering a weight in order: row
    ranges, or, when one row is bigger, each row's columns in ranges."""
    budget = budget or BLOCK_BYTES
    cell = math.prod(shape[2:]) * itemsize
    row_bytes = max(1, shape[1] * cell)
    if row_bytes <= budget:
        fit = budget // row_bytes
        return [Block(r, min(shape[0], r + fit)) for r in range(0, shape[0], fit)]
    width = max(1, budget // max(1, cell))
    return [Block(r, r + 1, c, min(shape[1], c + width)) for r in range(shape[0]) for c in range(0, shape[1], width)]


def read_block(entry: TensorEntry, block: Block) -> np.ndarray:
    """The entry's stored values in `block`: whole rows, or a piece of one row (contiguous bytes)."""
    if block.whole_rows:
        return entry.rows(block.row0, block.row1)
    shape = tuple(entry.shape)
    itemsize = entry.dtype.numpy.itemsize
    start, stop = _flat_range(shape, block)
    data = entry.read(start * itemsize, stop * itemsize)
    return np.frombuffer(data, dtype=entry.dtype.numpy).reshape(block_shape(shape, block))


def as_float32(entry: TensorEntry, raw: np.ndarray) -> np.ndarray:
    """Stored values as float32: themselves when they are float32 already."""
    return raw if raw.dtype == np.float32 else np.asarray(entry.dtype.to_float32(raw), dtype=np.float32)


@dataclass
class EntryWeight:
    """A moved weight in a checkpoint: blocks of its stored values and of their float32 values.

    The last block read is kept, so that the numerics and the byte comparison of one block
    read it once."""

    entry: TensorEntry
    _last: tuple[Block, np.ndarray] | None = field(default=None, repr=False)
    moved = True

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.entry.shape)

    @property
    def itemsize(self) -> int:
        return self.entry.dtype.numpy.itemsize

    def raw(self, block: Block) -> np.ndarray:
        if self._last is None or self._last[0] != block:
            self._last = (block, read_block(self.entry, block))
        return self._last[1]

    def values(self, block: Block) -> np.ndarray:
        return as_float32(self.entry, self.raw(block))


class FoldedWeight:
    """g * v / ||v|| (in float64, rounded once to float32), one block at a time.

    The norm runs over every axis where g has size 1 (torch's norm_except_dim). When it runs
    along the first axis, or along the second and blocks split rows, the norms are summed in
    one pass over v's blocks first; they have g's shape, which is small."""

    moved = False

    def __init__(self, g: TensorEntry, v: TensorEntry) -> None:
        self.g_entry, self.v_entry = g, v
        self.shape = tuple(v.shape)
        self.itemsize = v.dtype.numpy.itemsize
        self.g = np.asarray(g.dtype.to_float32(g.array()), dtype=np.float64)
        self.same_rank = self.g.ndim == len(self.shape)  # else g broadcasts as it is, the norm runs over all
        self.axes = tuple(a for a in range(len(self.shape)) if not self.same_rank or self.g.shape[a] == 1)
        self.squares: np.ndarray | None = None
        blocks = scan(self.shape, self.itemsize)
        if 0 in self.axes or (1 in self.axes and not blocks[0].whole_rows):
            self.squares = np.zeros(self._kept_shape(), dtype=np.float64)
            for block in blocks:
                v64 = self._v(block)
                self._region(self.squares, block)[...] += np.sum(v64 * v64, axis=self.axes, keepdims=True)

    def _kept_shape(self) -> tuple[int, ...]:
        return tuple(1 if a in self.axes else n for a, n in enumerate(self.shape))

    def _region(self, kept: np.ndarray, block: Block) -> np.ndarray:
        """The part of a kept-shape array (g's, or the norms') that `block` uses."""
        col0, col1 = _columns(self.shape, block)
        rows = slice(None) if kept.shape[0] == 1 else slice(block.row0, block.row1)
        cols = slice(None) if kept.shape[1] == 1 else slice(col0, col1)
        return kept[rows, cols]

    def _v(self, block: Block) -> np.ndarray:
        return self.v_entry.dtype.to_float32(read_block(self.v_entry, block)).astype(np.float64)

    def raw(self, block: Block) -> None:
        return None  # computed, not moved: compared by value only

    def values(self, block: Block) -> np.ndarray:
        v64 = self._v(block)
        if self.squares is None:
            squares = np.sum(v64 * v64, axis=self.axes, keepdims=True)
        else:
            squares = self._region(self.squares, block)
        g = self._region(self.g, block) if self.same_rank else self.g
        with np.errstate(divide="ignore", invalid="ignore"):
            return (g * v64 / np.sqrt(squares)).astype(np.float32)
