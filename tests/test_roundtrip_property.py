"""Property (issue 7): random state dicts of every dtype survive PyTorch -> MindSpore -> PyTorch,
and MindSpore -> PyTorch -> MindSpore, bit for bit: same names, same order, same shapes, same bytes.

Each state dict mixes Conv1d layers (reshaped to MindSpore's (C_out, C_in, 1, K) and back), norm
layers (weight/bias <-> gamma/beta), Linear layers, and free tensors of any of the 13 dtypes with
0-d and zero-size shapes and unicode, many-dotted names. The order survives too, unless a
safetensors file was on the way (it lays tensors out by dtype, then name). Both legs run `run_migration`, the
library behind `torch2ms`/`ms2torch`, with verification on, in every output format. The
PyTorch side is written by `torch.save`; the MindSpore side by our .ckpt writer (checked against
MindSpore's own files in test_ckpt_format.py), so this runs without MindSpore.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convmigrate.entries import TensorEntry
from convmigrate.formats import open_checkpoint, write_checkpoint
from convmigrate.migrate import MigrationRequest, run_migration
from convmigrate.plan import Direction
from convmigrate.vocab import DTYPES, Format

EXAMPLES = 200
FLOATS = ["float16", "bfloat16", "float32", "float64"]
# Name pieces: any printable text without dots (the dots are ours), including non-ASCII.
SEGMENT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FFF, blacklist_characters="."), min_size=1, max_size=5)


def random_bytes(draw: st.DrawFn, dtype: str, shape: tuple[int, ...]) -> bytes:
    size = math.prod(shape) * DTYPES[dtype].itemsize
    if dtype == "bool":
        return bytes(draw(st.lists(st.integers(0, 1), min_size=size, max_size=size)))
    if dtype in FLOATS:  # finite values, so the conv verification compares numbers
        values = np.frombuffer(draw(st.binary(min_size=size, max_size=size)), np.uint8).copy()
        array = values.view(DTYPES[dtype].numpy)
        floats = DTYPES[dtype].to_float32(array) if dtype == "bfloat16" else array
        with np.errstate(invalid="ignore", over="ignore"):
            bad = ~np.isfinite(floats) | (np.abs(floats.astype(np.float64)) > 1e4)
        if bad.any():
            array[bad] = np.zeros(1, DTYPES[dtype].numpy)[0]
        return array.tobytes()
    return draw(st.binary(min_size=size, max_size=size))


@st.composite
def tensor(draw: st.DrawFn, dtypes: list[str] | None = None, shape: tuple[int, ...] | None = None) -> tuple[str, tuple[int, ...], bytes]:
    dtype = draw(st.sampled_from(dtypes or sorted(DTYPES)))
    if shape is None:
        shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
    return dtype, shape, random_bytes(draw, dtype, shape)


@st.composite
def state_dicts(draw: st.DrawFn, framework: str) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    """{name: (dtype, shape, bytes)} in `framework`'s naming ("torch" or "mindspore")."""
    out: dict[str, tuple[str, tuple[int, ...], bytes]] = {}
    for index in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["free", "free", "conv", "norm", "linear"]))
        prefix = f"L{index}." + ".".join(draw(st.lists(SEGMENT, min_size=0, max_size=3)))
        prefix = prefix.rstrip(".")
        if kind == "free":  # a leaf no rule knows: 't' + text, so never weight/bias/gamma/...
            out[f"{prefix}.t{draw(SEGMENT)}"] = draw(tensor())
        elif kind == "conv":
            c_out, c_in, k = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
            dtype = draw(st.sampled_from(FLOATS))
            shape = (c_out, c_in, k) if framework == "torch" else (c_out, c_in, 1, k)
            out[f"{prefix}.weight"] = draw(tensor([dtype], shape))
            if draw(st.booleans()):
                out[f"{prefix}.bias"] = draw(tensor([dtype], (c_out,)))
        elif kind == "norm":
            channels = draw(st.integers(1, 4))
            dtype = draw(st.sampled_from(FLOATS))
            names = ("weight", "bias") if framework == "torch" else ("gamma", "beta")
            for name in names:
                out[f"{prefix}.{name}"] = draw(tensor([dtype], (channels,)))
        else:
            rows, cols = draw(st.integers(1, 3)), draw(st.integers(1, 3))
            dtype = draw(st.sampled_from(FLOATS))
            out[f"{prefix}.weight"] = draw(tensor([dtype], (rows, cols)))
            out[f"{prefix}.bias"] = draw(tensor([dtype], (rows,)))
    return out


def entries_of(state: dict[str, tuple[str, tuple[int, ...], bytes]]) -> list[TensorEntry]:
    def entry(name: str, dtype: str, shape: tuple[int, ...], data: bytes) -> TensorEntry:
        flat = np.frombuffer(data, np.uint8)
        return TensorEntry(name, DTYPES[dtype], shape, lambda: (memoryview(flat),))

    return [entry(name, *spec) for name, spec in state.items()]


def read_back(path: Path) -> list[tuple[str, str, tuple[int, ...], bytes]]:
    with open_checkpoint(path) as checkpoint:
        return [(e.name, e.dtype.name, e.shape, e.raw_bytes()) for e in checkpoint.tensors()]


def same(got: list, expected: list, ms_format: str, torch_format: str) -> bool:
    """Equal, in order unless safetensors (which lays tensors out by dtype, then name) was on the way."""
    if "safetensors" in (ms_format, torch_format):
        return sorted(got) == sorted(expected)
    return got == expected


def migrate(source: Path, output: Path, direction: Direction, fmt: str) -> None:
    result = run_migration(MigrationRequest(input=source, output=output, direction=direction, output_format=fmt))
    assert result.written and result.verification is not None and result.verification.passed, result.verification
    assert not result.plan.failures()


def fresh(base: Path) -> Path:
    folder = base / uuid.uuid4().hex
    folder.mkdir()
    return folder


SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(state=state_dicts("torch"), ms_format=st.sampled_from(["ckpt", "safetensors"]), torch_format=st.sampled_from(["pt", "safetensors"]))
def test_torch_to_mindspore_to_torch_is_bit_exact(tmp_path_factory, state, ms_format: str, torch_format: str) -> None:
    folder = fresh(tmp_path_factory.getbasetemp())
    source = folder / "model.pt"
    expected = [(name, dtype, shape, data) for name, (dtype, shape, data) in state.items()]
    torch.save({name: torch.frombuffer(bytearray(data), dtype=getattr(torch, dtype)).reshape(shape) if data else torch.empty(shape, dtype=getattr(torch, dtype))
                for name, dtype, shape, data in expected}, source)
    assert read_back(source) == expected
    migrate(source, folder / f"ms.{ms_format}", Direction.TORCH_TO_MS, ms_format)
    migrate(folder / f"ms.{ms_format}", folder / f"back.{torch_format}", Direction.MS_TO_TORCH, torch_format)
    assert same(read_back(folder / f"back.{torch_format}"), expected, ms_format, torch_format)


@SETTINGS
@given(state=state_dicts("mindspore"), ms_format=st.sampled_from(["ckpt", "safetensors"]), torch_format=st.sampled_from(["pt", "safetensors"]))
def test_mindspore_to_torch_to_mindspore_is_bit_exact(tmp_path_factory, state, ms_format: str, torch_format: str) -> None:
    folder = fresh(tmp_path_factory.getbasetemp())
    source = folder / "model.ckpt"
    write_checkpoint(source, entries_of(state), Format.CKPT)
    expected = [(name, dtype, shape, data) for name, (dtype, shape, data) in state.items()]
    assert read_back(source) == expected
    migrate(source, folder / f"torch.{torch_format}", Direction.MS_TO_TORCH, torch_format)
    migrate(folder / f"torch.{torch_format}", folder / f"back.{ms_format}", Direction.TORCH_TO_MS, ms_format)
    assert same(read_back(folder / f"back.{ms_format}"), expected, ms_format, torch_format)
