"""Tensors other than conv weights: bit-identical to the original, or zero when created."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from convmigrate.entries import Entry, TensorEntry, ValueEntry
from convmigrate.plan import Op, Step
from convmigrate.verify.results import TensorCheck


def same_bytes(a: TensorEntry, b: TensorEntry) -> bool:
    """Byte-for-byte equality, walking both chunk streams without copying either."""
    if a.nbytes != b.nbytes or a.dtype != b.dtype:
        return False
    chunks_b = b.chunks()
    piece_b = memoryview(b"")
    for piece_a in a.chunks():
        while len(piece_a):
            if not len(piece_b):
                piece_b = next(chunks_b, None)
                if piece_b is None:
                    return False
                continue
            n = min(len(piece_a), len(piece_b))
            if not np.array_equal(np.frombuffer(piece_a[:n], np.uint8), np.frombuffer(piece_b[:n], np.uint8)):
                return False
            piece_a, piece_b = piece_a[n:], piece_b[n:]
    return not len(piece_b) and next(chunks_b, None) is None


def check_tensor(step: Step, original: Mapping[str, Entry], converted: Mapping[str, Entry]) -> TensorCheck:
    target = str(step.target)
    got = converted.get(target)
    if got is None:
        return TensorCheck(", ".join(step.sources), target, False, "missing from the converted checkpoint")
    if step.op is Op.CREATE:
        ok = isinstance(got, TensorEntry) and not np.any(got.array())
        return TensorCheck("", target, ok, "" if ok else "a created parameter must be zero")
    source = original[step.sources[0]]
    if isinstance(source, ValueEntry) or isinstance(got, ValueEntry):
        ok = isinstance(source, ValueEntry) and isinstance(got, ValueEntry) and source.value == got.value
        return TensorCheck(source.name, target, ok, "" if ok else "value differs")
    if list(got.shape) != list(step.target_shape or source.shape):
        return TensorCheck(source.name, target, False, f"shape {got.shape}, planned {tuple(step.target_shape or ())}")
    ok = same_bytes(source, got)
    return TensorCheck(source.name, target, ok, "" if ok else f"bytes differ ({source.dtype.name} -> {got.dtype.name})")
