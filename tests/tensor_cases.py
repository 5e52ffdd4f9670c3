"""Test helpers shared by the format tests: random entries, and torch tensors' raw bytes."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from convmigrate.entries import Entry, TensorEntry, ValueEntry
from convmigrate.vocab import DTYPES, DType

SHAPES = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)  # incl. 0-d and zero-size
NAMES = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF, blacklist_characters="\\\""), min_size=1, max_size=12)


def entry_from_bytes(name: str, dtype: DType, shape: tuple[int, ...], data: bytes) -> TensorEntry:
    flat = np.frombuffer(data, dtype=np.uint8)  # 1-D: memoryview cannot cast zero-size N-d views
    return TensorEntry(name, dtype, shape, lambda: (memoryview(flat),))


@st.composite
def tensor_entries(draw: st.DrawFn, name: str) -> TensorEntry:
    dtype = draw(st.sampled_from(list(DTYPES.values())))
    shape = draw(SHAPES)
    size = math.prod(shape) * dtype.itemsize
    if dtype.name == "bool":  # only 0 and 1 are bools; any bit pattern is a valid number
        data = bytes(draw(st.lists(st.integers(0, 1), min_size=size, max_size=size)))
    else:
        data = draw(st.binary(min_size=size, max_size=size))
    return entry_from_bytes(name, dtype, shape, data)


PLAIN_VALUES = st.one_of(st.booleans(), st.integers(-(2**62), 2**62), st.floats(allow_nan=False), st.text(max_size=8))


@st.composite
def entry_lists(draw: st.DrawFn, values: bool = True) -> list[Entry]:
    names = draw(st.lists(NAMES, min_size=0, max_size=6, unique=True))
    entries: list[Entry] = []
    for name in names:
        if values and draw(st.integers(0, 4)) == 0:
            entries.append(ValueEntry(name, draw(PLAIN_VALUES)))
        else:
            entries.append(draw(tensor_entries(name)))
    return entries


def torch_bytes(tensor) -> bytes:  # a torch.Tensor; torch is imported by callers only
    """A torch tensor's logical C-order bytes, as torch itself gives them."""
    import torch

    # clone: dense strides even where contiguous() keeps odd ones (a size-1 axis); resolve_neg: a _neg_view's values
    dense = tensor.detach().resolve_neg().resolve_conj().clone(memory_format=torch.contiguous_format)
    return dense.reshape(-1).view(torch.uint8).numpy().tobytes()
