"""Tensors other than conv weights: the original's bytes, bit for bit; a created one zero; a
computed one (a folded weight norm) equal to the original's g * v / ||v|| within rounding."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from convmigrate.entries import Entry, TensorEntry, ValueEntry
from convmigrate.plan import Op, Step
from convmigrate.verify.results import TensorCheck
from convmigrate.vocab import DTYPES, ProblemCode

COMPARE_BYTES = 1 << 20  # compared this much at a time: the temporary stays in the CPU's cache


def _equal(left: np.ndarray, right: np.ndarray) -> bool:
    """Two equal-length uint8 arrays hold the same bytes (NumPy: ~10x faster than memoryview ==)."""
    return all(np.array_equal(left[i : i + COMPARE_BYTES], right[i : i + COMPARE_BYTES])
               for i in range(0, len(left), COMPARE_BYTES))


def same_array_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """Two arrays already read hold the same bytes (the same dtype and size, bit for bit)."""
    if a.dtype != b.dtype or a.size != b.size:
        return False
    return _equal(np.ascontiguousarray(a).reshape(-1).view(np.uint8), np.ascontiguousarray(b).reshape(-1).view(np.uint8))


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
            if not _equal(np.frombuffer(piece_a[:n], np.uint8), np.frombuffer(piece_b[:n], np.uint8)):
                return False
            piece_a, piece_b = piece_a[n:], piece_b[n:]
    return not len(piece_b) and next(chunks_b, None) is None


def folded_weight(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    """g * v / ||v|| in float64, independent of the migration's own fold: the norm runs over
    every axis where g has size 1, which is what torch's norm_except_dim means."""
    axes = tuple(a for a in range(v.ndim) if g.ndim != v.ndim or g.shape[a] == 1)
    v64 = v.astype(np.float64)
    norm = np.sqrt(np.sum(v64 * v64, axis=axes, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        return g.astype(np.float64) * v64 / norm


def _check(step: Step, source: str, target: str, code: ProblemCode | None, detail: str = "") -> TensorCheck:
    return TensorCheck(source, target, code is None, detail, layer=step.layer, kind=step.layer_kind, code=code)


def _shape_problem(got: TensorEntry, step: Step, source: TensorEntry | None) -> str:
    planned = tuple(step.target_shape if step.target_shape is not None else (source.shape if source else ()))
    return "" if got.shape == planned else f"shape {got.shape}, the conversion gives {planned}"


def check_tensor(step: Step, original: Mapping[str, Entry], converted: Mapping[str, Entry],
                 same: Callable[[TensorEntry, TensorEntry], bool] = same_bytes) -> TensorCheck:
    """A copied, renamed or reshaped tensor (or a created one) against the original; `same`
    compares their bytes (verify.runner: or knows it from the comparison made while writing)."""
    target = str(step.target)
    sources = ", ".join(step.sources)
    got = converted.get(target)
    if got is None:
        return _check(step, sources, target, ProblemCode.MISSING, "missing from the converted checkpoint")
    if step.op is Op.CREATE:
        if not isinstance(got, TensorEntry) or got.dtype is not DTYPES["int64"]:
            return _check(step, "", target, ProblemCode.DTYPE, "a created counter must be an int64 tensor")
        if problem := _shape_problem(got, step, None):
            return _check(step, "", target, ProblemCode.SHAPE, problem)
        ok = not np.any(got.array())
        return _check(step, "", target, None if ok else ProblemCode.BYTES, "" if ok else "a created parameter must be zero")
    source = original[step.sources[0]]
    if isinstance(source, ValueEntry) or isinstance(got, ValueEntry):
        ok = isinstance(source, ValueEntry) and isinstance(got, ValueEntry) and source.value == got.value
        return _check(step, source.name, target, None if ok else ProblemCode.BYTES, "" if ok else "value differs")
    if got.dtype != source.dtype:
        return _check(step, source.name, target, ProblemCode.DTYPE, f"{got.dtype.name}, the original is {source.dtype.name}")
    if problem := _shape_problem(got, step, source):
        return _check(step, source.name, target, ProblemCode.SHAPE, problem)
    ok = same(source, got)
    return _check(step, source.name, target, None if ok else ProblemCode.BYTES, "" if ok else "bytes differ from the original's")


def check_folded(step: Step, original: Mapping[str, Entry], converted: Mapping[str, Entry],
                 tolerance: tuple[float, float]) -> TensorCheck:
    """A folded weight norm that is not a conv's (a Linear's): computed, so compared by value,
    element by element, with the original's g * v / ||v||."""
    target = str(step.target)
    g, v = (original[name] for name in step.sources)
    got = converted.get(target)
    sources = ", ".join(step.sources)
    if not isinstance(got, TensorEntry) or not isinstance(g, TensorEntry) or not isinstance(v, TensorEntry):
        return _check(step, sources, target, ProblemCode.MISSING, "missing from the converted checkpoint")
    if got.dtype != v.dtype:
        return _check(step, sources, target, ProblemCode.DTYPE, f"{got.dtype.name}, the original's v is {v.dtype.name}")
    if problem := _shape_problem(got, step, v):
        return _check(step, sources, target, ProblemCode.SHAPE, problem)
    expected = folded_weight(v.dtype.to_float32(g.array()), v.dtype.to_float32(v.array())).reshape(got.shape)
    actual = got.dtype.to_float32(got.array()).astype(np.float64)
    rtol, atol = tolerance
    error = np.abs(actual - expected)
    scale = float(np.max(np.abs(expected), initial=0.0))
    worst = float(np.max(error, initial=0.0))
    ok = bool(np.all(np.isfinite(error) | (np.isnan(actual) & np.isnan(expected)))) and worst <= atol + rtol * scale
    detail = "" if ok else f"values differ from g * v / ||v|| by {worst:.3g} (scale {scale:.3g})"
    return _check(step, sources, target, None if ok else ProblemCode.NUMERICS, detail)
