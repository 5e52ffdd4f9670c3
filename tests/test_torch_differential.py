"""torch.load(weights_only=True) is the oracle for torch.save files (issue 12, differential).

On exotic but valid files (views, strides, storage offsets, shared storages, every dtype,
parameters beside tensors, nested containers; zip and legacy), where torch reads a file, the
inert reader must give the same object: the same containers and plain values, and at each
tensor's place a record whose bytes, shape and dtype are torch's. The comparison walks both
trees; the checkpoint level (the state dict, as every command reads it) is compared too.

Where torch refuses a file, convmigrate is deliberately laxer (config objects, whole models,
any global: read as inert placeholders) or stricter (limits); the README's limits table says
which and why. Complex numbers and bytearrays, which weights_only builds, stay placeholders.
"""

from __future__ import annotations

import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensor_cases import torch_bytes

from convmigrate.formats import open_checkpoint
from convmigrate.formats.pickle_reader import TensorRecord, load_pickle
from convmigrate.formats.torch_legacy import read_legacy_contents
from convmigrate.vocab import DTYPES

TORCH_DTYPES = {name: getattr(torch, name) for name in DTYPES}


def same_tree(ours: object, theirs: object, records: dict[str, bytes], where: str = "") -> None:
    """Assert that the inert reader's object is torch's, tensor bytes included."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, TensorRecord), where
        assert (ours.dtype.name, ours.shape) == (str(theirs.dtype).removeprefix("torch."), tuple(theirs.shape)), where
        first, stop = ours.byte_span()
        assert bytes(ours.own_bytes(memoryview(records[ours.storage.key])[first:stop])) == torch_bytes(theirs), where
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict) and list(ours) == list(theirs), where
        for key in theirs:
            same_tree(ours[key], theirs[key], records, f"{where}[{key!r}]")
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs) if not isinstance(theirs, torch.Size) else type(ours) is tuple, where
        assert len(ours) == len(theirs), where
        for index, (a, b) in enumerate(zip(ours, theirs)):
            same_tree(a, b, records, f"{where}[{index}]")
    else:
        assert type(ours) is type(theirs) and ours == theirs, where


def compare(path: Path, legacy: bool) -> None:
    theirs = torch.load(path, weights_only=True)
    if legacy:
        ours, located = read_legacy_contents(path)
        raw = path.read_bytes()
        records = {key: raw[start : start + size] for key, (start, size) in located.items()}
    else:
        with zipfile.ZipFile(path) as archive:
            prefix = next(n for n in archive.namelist() if n.endswith("data.pkl"))[: -len("data.pkl")]
            ours = load_pickle(archive.read(f"{prefix}data.pkl"))
            records = {n[len(prefix) + 5 :]: archive.read(n) for n in archive.namelist() if n.startswith(f"{prefix}data/")}
    same_tree(ours, theirs, records)


def views() -> dict[str, object]:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    shared = torch.arange(10, dtype=torch.int16)
    return {
        "base": base, "transposed": base.t(), "rows": base[1:3], "columns": base[:, 2:5], "strided": base.reshape(-1)[3::5],
        "expanded": torch.tensor([1.0, 2.0]).expand(3, 2), "scalar_view": base[2, 3], "bf16_slice": torch.arange(10, dtype=torch.bfloat16)[4:7],
        "tied_a": shared[:6], "tied_b": shared[4:], "negated": torch.arange(6, dtype=torch.float32)._neg_view(),
        "parameter": torch.nn.Parameter(torch.ones(2, 3)), "empty_view": base[4:, :],
        "nested": {"list": [shared, (base[0], {"deep": base.t()[1]})], "size": torch.Size([2, 3]), "set": {1, 2}, "none": None},
        "values": [1, 2.5, "x", True, b"raw"],
    }


def every_dtype() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    out = {}
    for name, dtype in TORCH_DTYPES.items():
        values = torch.randn(3, 4) * 50 if DTYPES[name].is_floating else torch.arange(-6, 6).reshape(3, 4)
        out[name] = (values > 0) if name == "bool" else values.to(dtype)
        out[f"{name}_view"] = out[name].t()[1:]
    return out


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("content", ["views", "every_dtype"])
def test_exotic_files_read_as_torch_reads_them(tmp_path: Path, legacy: bool, content: str) -> None:
    state = views() if content == "views" else every_dtype()
    if legacy:  # uint16/32/64 have no legacy storage class: torch.save cannot write them there
        state = {k: v for k, v in state.items() if not (isinstance(v, torch.Tensor) and v.dtype in (torch.uint16, torch.uint32, torch.uint64))}
    path = tmp_path / "exotic.pt"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    compare(path, legacy)
    # What every command reads: the state dict's tensors, bit for bit, in the file's order.
    with open_checkpoint(path) as checkpoint:
        expected = [(k, v) for k, v in torch.load(path, weights_only=True).items() if isinstance(v, torch.Tensor)]
        assert [e.name for e in checkpoint.tensors()] == [k for k, _ in expected]
        for entry, (_, tensor) in zip(checkpoint.tensors(), expected):
            assert entry.raw_bytes() == torch_bytes(tensor), entry.name


@st.composite
def tensors(draw: st.DrawFn, base: torch.Tensor) -> torch.Tensor:
    """A view of `base`: sliced, strided, transposed, expanded or itself."""
    view = base
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["slice", "step", "transpose", "expand", "select"]))
        if kind == "slice" and view.dim() and view.shape[0]:
            start = draw(st.integers(0, view.shape[0] - 1))
            view = view[start : draw(st.integers(start, view.shape[0]))]
        elif kind == "step" and view.dim() and view.shape[-1]:
            view = view[..., :: draw(st.integers(1, 3))]
        elif kind == "transpose" and view.dim() >= 2:
            view = view.transpose(0, view.dim() - 1)
        elif kind == "expand" and view.dim() and view.shape[0] == 1:
            view = view.expand(draw(st.integers(0, 3)), *view.shape[1:])
        elif kind == "select" and view.dim() and view.shape[0]:
            view = view[draw(st.integers(0, view.shape[0] - 1))]
    return view


@st.composite
def checkpoints(draw: st.DrawFn) -> dict:
    bases = []
    for _ in range(draw(st.integers(1, 3))):
        dtype = draw(st.sampled_from([d for d in TORCH_DTYPES.values() if d not in (torch.uint16, torch.uint32, torch.uint64)]))
        shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
        values = torch.from_numpy(np.random.default_rng(draw(st.integers(0, 99))).standard_normal(shape).astype(np.float32) * 9)
        bases.append((values > 0) if dtype is torch.bool else values.to(dtype))
    leaves = st.one_of(st.sampled_from(bases).flatmap(tensors), st.integers(-5, 5), st.text(max_size=3), st.none())
    tree = st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple)), max_leaves=8)
    return draw(st.dictionaries(st.text(min_size=1, max_size=6), tree, min_size=1, max_size=5))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=checkpoints(), legacy=st.booleans())
def test_random_trees_of_views_read_as_torch_reads_them(tmp_path: Path, state: dict, legacy: bool) -> None:
    path = tmp_path / "random.pt"
    torch.save(OrderedDict(state), path, _use_new_zipfile_serialization=not legacy)
    compare(path, legacy)


# --------------------------------------------------------------------------- the deviations
def _config_objects(path: Path) -> None:
    import argparse

    torch.save({"w": torch.ones(3), "args": argparse.Namespace(lr=0.1)}, path)


def _complex_and_bytearray(path: Path) -> None:
    torch.save({"w": torch.ones(3), "c": 1 + 2j, "b": bytearray(b"raw")}, path)


def _views_of_one_storage(path: Path) -> None:
    base = torch.zeros(1 << 18)  # 1 MiB, viewed whole by 100 tensors: 100 MiB written out
    torch.save({f"v{i}": base[:] for i in range(100)}, path)


def _deep_tuple(path: Path) -> None:
    import sys

    deep: tuple = ()
    for _ in range(1200):  # torch.load reads it (its unpickler keeps no recursion); we stop at 1000
        deep = (deep,)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)  # Python's pickler recurses once per level
    try:
        torch.save({"w": torch.ones(3), "deep": deep}, path)
    finally:
        sys.setrecursionlimit(limit)


def _quantized(path: Path) -> None:
    torch.save({"q": torch.quantize_per_tensor(torch.ones(4), 0.1, 0, torch.qint8)}, path)


# Each torch.save row of DEVIATIONS: a file torch.load(weights_only=True) reads one way and we
# another (None: torch refuses it), and what convmigrate's reading gives.
TORCH_DEVIATIONS = {
    "a global outside torch's allow-list (omegaconf, argparse, a whole model, os.system)":
        (_config_objects, False, "'args' (argparse.Namespace)"),
    "complex(...) or bytearray(...) values": (_complex_and_bytearray, True, "'c' (__builtin__.complex), 'b' (__builtin__.bytearray)"),
    "many tensors viewing one storage, beyond TORCH_OUTPUT_MAX_RATIO x the file":
        (_views_of_one_storage, True, "error: its tensors would take more than"),
    "nesting, a memo or an object count beyond the PICKLE_* limits":
        (_deep_tuple, True, "error: the pickle nests tuples deeper than 1000 levels"),
    "a quantized, sparse, nested or meta tensor in the state dict": (_quantized, True, "error: tensor 'q' is a quantized tensor"),
}


def test_every_torch_deviation_has_a_file_that_shows_it() -> None:
    from convmigrate.limits import DEVIATIONS

    assert {d.case for d in DEVIATIONS if d.format == "torch.save"} == set(TORCH_DEVIATIONS)


@pytest.mark.parametrize("case", list(TORCH_DEVIATIONS))
def test_torch_deviation(tmp_path: Path, case: str) -> None:
    from convmigrate.errors import ConvmigrateError

    build, torch_reads, ours = TORCH_DEVIATIONS[case]
    path = tmp_path / "deviation.pt"
    build(path)
    try:
        torch.load(path, weights_only=True)
        read_by_torch = True
    except Exception:  # noqa: BLE001 - weights_only's refusal (UnpicklingError)
        read_by_torch = False
    assert read_by_torch == torch_reads
    try:
        with open_checkpoint(path) as checkpoint:
            said = " ".join(checkpoint.notes)
    except ConvmigrateError as error:
        said = f"error: {getattr(error, 'problem', error)}"
    assert ours in said, said
