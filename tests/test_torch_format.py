"""torch.save reader and writer against the real torch 2.13: bytes, layout, pickle safety."""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from tensor_cases import entry_lists, torch_bytes

import convmigrate.formats.torch_file as torch_file
import convmigrate.formats.torch_load as torch_load
import convmigrate.formats.torch_write as torch_write
from convmigrate.entries import TensorEntry, ValueEntry
from convmigrate.errors import UnreadableCheckpointError
from convmigrate.formats import open_checkpoint, write_checkpoint
from convmigrate.formats.torch_write import write_torch
from convmigrate.vocab import DTYPES, Format


def _every_dtype() -> dict[str, torch.Tensor]:
    """One tensor per dtype we carry; 0-d and zero-size shapes among them."""
    torch.manual_seed(0)
    tensors = {}
    for name in DTYPES:
        dtype = getattr(torch, name)
        if name == "bool":
            tensors[name] = torch.tensor([[True, False, True], [False, False, True]])
        elif DTYPES[name].is_floating:
            tensors[name] = torch.randn(2, 3).to(dtype)
        else:
            tensors[name] = torch.arange(6, dtype=torch.int64).reshape(2, 3).to(dtype)
    tensors["scalar"] = torch.tensor(2.5)  # 0-d
    tensors["empty"] = torch.empty(0, 3)  # zero-size
    tensors["empty_bf16"] = torch.empty(2, 0, dtype=torch.bfloat16)
    return tensors


def _views() -> dict[str, torch.Tensor]:
    """Tensors whose bytes are not simply their storage: transposed, sliced, shared, expanded."""
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    return {
        "base": base,
        "transposed": base.t(),  # non-contiguous view of base's storage
        "rows": base[1:3],  # contiguous, offset into the shared storage
        "columns": base[:, 2:5],  # non-contiguous and offset
        "strided": base.reshape(-1)[3::5],  # step > 1
        "expanded": torch.tensor([1.0, 2.0]).expand(3, 2),  # stride 0
        "bf16_slice": torch.arange(10, dtype=torch.bfloat16)[4:7],
    }


# Every reading test runs on both readers: the torch-free one (every file, nothing run) and
# torch.load's (--trust-pickle: the file's code runs).
READERS = {"torch-free": torch_file.read_torch, "torch.load": torch_load.read_torch_load}  # --trust-pickle's


@pytest.fixture(params=list(READERS))
def read_torch(request: pytest.FixtureRequest):  # -> a reader function
    return READERS[request.param]


def _assert_entries_match(checkpoint, expected: dict[str, object]) -> None:
    got = {e.name: e for e in checkpoint.entries}
    assert list(got) == list(expected)
    for name, value in expected.items():
        if isinstance(value, torch.Tensor):
            entry = got[name]
            assert isinstance(entry, TensorEntry), name
            assert (entry.dtype.name, entry.shape) == (str(value.dtype).removeprefix("torch."), tuple(value.shape)), name
            assert entry.raw_bytes() == torch_bytes(value), name
            assert entry.nbytes == value.numel() * value.element_size(), name
        else:
            assert got[name] == ValueEntry(name, value), name


# --------------------------------------------------------------------------- reading real torch.save files


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_reads_every_dtype_byte_identically(tmp_path: Path, legacy: bool, read_torch) -> None:
    tensors = _every_dtype()
    if legacy:  # uint16/32/64 have no legacy typed storage: torch.save cannot write them there
        tensors = {k: v for k, v in tensors.items() if DTYPES.get(k) is None or DTYPES[k].torch_storage}
    path = tmp_path / "every.pt"
    torch.save(tensors, path, _use_new_zipfile_serialization=not legacy)
    loaded = torch.load(path, weights_only=True)
    with read_torch(path) as checkpoint:
        assert checkpoint.format is Format.TORCH
        assert any("legacy" in note for note in checkpoint.notes) == legacy
        _assert_entries_match(checkpoint, loaded)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_views_give_their_own_logical_bytes_not_the_storage(tmp_path: Path, legacy: bool, read_torch) -> None:
    path = tmp_path / "views.pt"
    torch.save(_views(), path, _use_new_zipfile_serialization=not legacy)
    with read_torch(path) as checkpoint:
        _assert_entries_match(checkpoint, _views())


def test_tensor_bytes_are_read_when_asked_and_not_after_close(tmp_path: Path, read_torch) -> None:
    path = tmp_path / "m.pt"
    torch.save({"w": torch.arange(1000, dtype=torch.float32)}, path)
    checkpoint = read_torch(path)
    first, second = checkpoint.tensors()[0].read(0, 4000), checkpoint.tensors()[0].read(0, 4000)
    # Each read is the caller's own buffer: keeping one ties up no file and no map.
    assert np.frombuffer(first, np.float32)[999] == 999.0 and bytes(first) == bytes(second)
    checkpoint.close()
    assert np.frombuffer(first, np.float32)[999] == 999.0
    with pytest.raises(ValueError, match="closed"):
        checkpoint.tensors()[0].raw_bytes()


# Wrappers as training code writes them: key holding the state dict, and the keys beside it.
WRAPPERS = [
    ("state_dict", {"epoch": 3, "optimizer": "OPT", "hyper_parameters": {"lr": 0.1}}),  # Lightning
    ("model_state_dict", {"epoch": 3, "optimizer_state_dict": "OPT", "loss": 0.25}),  # PyTorch recipe
    ("model", {"args": None, "epoch": 10}),  # timm / fairseq
    ("module", {"global_steps": 5}),  # DeepSpeed
    ("ema", {"model": None}),  # EMA weights beside an empty slot
    ("params_ema", {"params": 1}),  # BasicSR
]


@pytest.mark.parametrize("key, others", WRAPPERS, ids=[w[0] for w in WRAPPERS])
def test_finds_the_state_dict_inside_wrappers_and_notes_what_was_left(tmp_path: Path, key: str, others: dict, read_torch) -> None:
    model = torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3), torch.nn.BatchNorm1d(4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    others = {k: (optimizer.state_dict() if v == "OPT" else v) for k, v in others.items()}
    path = tmp_path / "wrapped.pt"
    torch.save({**others, key: model.state_dict()}, path)
    with read_torch(path) as checkpoint:
        _assert_entries_match(checkpoint, model.state_dict())
        (note,) = [n for n in checkpoint.notes if "state dict found" in n]
        assert f"[{key!r}]" in note
        assert all(repr(other) in note for other in others)


def test_nested_wrapper(tmp_path: Path, read_torch) -> None:
    state = {"w": torch.ones(2)}
    path = tmp_path / "nested.pt"
    torch.save({"model": {"state_dict": state, "config": "x"}, "step": 1}, path)
    with read_torch(path) as checkpoint:
        _assert_entries_match(checkpoint, state)
        assert any("['model']['state_dict']" in n for n in checkpoint.notes)


def test_plain_values_kept_and_other_objects_left_out_with_a_note(tmp_path: Path, read_torch) -> None:
    path = tmp_path / "mixed.pt"
    torch.save({"w": torch.ones(2), "epoch": 7, "lr": 0.5, "name": "net", "flag": True, "none": None, "lst": [1, 2], 3: torch.ones(1)}, path)
    with read_torch(path) as checkpoint:
        _assert_entries_match(checkpoint, {"w": torch.ones(2), "epoch": 7, "lr": 0.5, "name": "net", "flag": True})
        (note,) = [n for n in checkpoint.notes if n.startswith("left out")]
        assert "'none' (NoneType)" in note and "'lst' (list)" in note and "3 (a int key)" in note


def test_data_parallel_prefix_is_noted_not_stripped(tmp_path: Path, read_torch) -> None:
    model = torch.nn.DataParallel(torch.nn.Linear(3, 2))
    path = tmp_path / "dp.pt"
    torch.save(model.state_dict(), path)
    with read_torch(path) as checkpoint:
        assert [e.name for e in checkpoint.entries] == ["module.weight", "module.bias"]
        assert any("'module.'" in n and "DataParallel" in n for n in checkpoint.notes)


class _Marker:
    """Pickles as os.system("touch <marker>"): harmless, but proves whether pickle code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch.save", "torch.save legacy"])
def test_pickle_code_beside_the_state_dict_is_read_and_never_run(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(2), "evil": _Marker(marker)}, path, _use_new_zipfile_serialization=how == "torch.save")
    with open_checkpoint(path) as checkpoint:
        _assert_entries_match(checkpoint, {"w": torch.ones(2)})
        (note,) = [n for n in checkpoint.notes if n.startswith("left out")]
        assert "'evil' (posix.system)" in note
    assert not marker.exists()


def test_a_plain_pickle_is_not_a_torch_file_and_is_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"evil": _Marker(marker)}, protocol=2))
    with pytest.raises(UnreadableCheckpointError, match="lacks torch's magic number") as caught:
        open_checkpoint(path)
    assert "\n" not in str(caught.value)
    assert not marker.exists()


def test_whole_pickled_module_is_read_without_running_it(tmp_path: Path, read_torch) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    path = tmp_path / "module.pt"
    torch.save(model, path)
    with read_torch(path) as checkpoint:
        _assert_entries_match(checkpoint, model.state_dict())
        assert any("whole pickled Sequential" in n for n in checkpoint.notes)


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"PK\x03\x04" + b"\0" * 40, "damaged zip archive: no zip end record"),  # a broken zip
        (pickle.dumps([1, 2, 3], protocol=2), "torch.load cannot read it|lacks torch's magic number"),  # a pickle, not torch's
    ],
)
def test_unreadable_files(tmp_path: Path, content: bytes, problem: str, read_torch) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(UnreadableCheckpointError, match=problem):
        read_torch(path)


def test_truncated_zip_is_unreadable(tmp_path: Path, read_torch) -> None:
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(100)}, buffer)
    path = tmp_path / "cut.pt"
    path.write_bytes(buffer.getvalue()[:-100])
    with pytest.raises(UnreadableCheckpointError):
        read_torch(path)


def test_no_tensors_at_all(tmp_path: Path, read_torch) -> None:
    path = tmp_path / "empty.pt"
    torch.save({"epoch": 1, "config": {"a": 1}}, path)
    with pytest.raises(UnreadableCheckpointError, match="holds no tensors"):
        read_torch(path)


# --------------------------------------------------------------------------- writing


def _write(entries, **kw) -> bytes:
    stream = io.BytesIO()
    write_torch(stream, entries, metadata={}, **kw)
    return stream.getvalue()


def _entries_of(tensors: dict) -> list:
    out = []
    for name, value in tensors.items():
        if isinstance(value, torch.Tensor):
            out.append(TensorEntry(name, DTYPES[str(value.dtype).removeprefix("torch.")], tuple(value.shape), lambda v=value: (memoryview(torch_bytes(v)),)))
        else:
            out.append(ValueEntry(name, value))
    return out


def test_writer_is_byte_identical_to_torch_save_but_for_the_serialization_id() -> None:
    # torch.save of a stream names the archive "archive", as we do; its serialization id is random.
    state = OrderedDict({**_every_dtype(), "epoch": 3, "lr": 0.25, "tag": "x", "flag": False})
    reference = io.BytesIO()
    torch.save(state, reference)
    reference_bytes = reference.getvalue()
    ours = _write(_entries_of(state))
    their_id = zipfile.ZipFile(reference).read("archive/.data/serialization_id")
    our_id = zipfile.ZipFile(io.BytesIO(ours)).read("archive/.data/serialization_id")
    assert len(our_id) == 40 and our_id.isdigit()
    crc = lambda data: struct.pack("<I", zlib.crc32(data))  # noqa: E731 - in the descriptor and the directory
    assert ours == reference_bytes.replace(their_id, our_id).replace(crc(their_id), crc(our_id))


def test_zip_layout_matches_torch(tmp_path: Path) -> None:
    state = {"a": torch.ones(3), "z": torch.empty(0), "u": torch.ones(2, dtype=torch.uint32)}
    raw = _write(_entries_of(state))
    archive = zipfile.ZipFile(io.BytesIO(raw))
    assert archive.namelist() == [
        "archive/data.pkl", "archive/.format_version", "archive/.storage_alignment", "archive/byteorder",
        "archive/data/0", "archive/data/1", "archive/data/2", "archive/version", "archive/.data/serialization_id",
    ]
    assert archive.testzip() is None
    for info in archive.infolist():
        name_length, extra_length = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
        assert (info.header_offset + 30 + name_length + extra_length) % 64 == 0, info.filename
        assert info.compress_type == zipfile.ZIP_STORED
    assert archive.read("archive/version") == b"3\n" and archive.read("archive/byteorder") == b"little"
    assert raw.find(b"PK\x06\x06") > 0  # zip64 end record, always, as torch writes it


@pytest.fixture
def offsets_computed_by_torch():
    """torch.load's fast path that computes record offsets from miniz's layout arithmetic."""
    from torch.utils.serialization import config

    before = config.load.calculate_storage_offsets
    config.load.calculate_storage_offsets = True
    yield
    config.load.calculate_storage_offsets = before


def _assert_torch_loads(path: Path, entries: list) -> None:
    for mmap in (False, True):
        loaded = torch.load(path, weights_only=True, mmap=mmap)
        assert isinstance(loaded, OrderedDict)
        assert list(loaded) == [e.name for e in entries]
        for entry in entries:
            got = loaded[entry.name]
            if isinstance(entry, TensorEntry):
                assert (str(got.dtype).removeprefix("torch."), tuple(got.shape)) == (entry.dtype.name, entry.shape), entry.name
                assert torch_bytes(got) == entry.raw_bytes(), entry.name
            else:
                assert got == entry.value and type(got) is type(entry.value), entry.name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=entry_lists())
def test_round_trip_through_torch_load(tmp_path: Path, entries: list, offsets_computed_by_torch, read_torch) -> None:
    path = tmp_path / "rt.pt"
    path.write_bytes(_write(entries))
    _assert_torch_loads(path, entries)
    with read_torch(path) as checkpoint:
        assert [(e.name, getattr(e, "shape", None)) for e in checkpoint.entries] == [(e.name, getattr(e, "shape", None)) for e in entries]
        for ours, back in zip(entries, checkpoint.entries):
            assert (ours.raw_bytes() == back.raw_bytes()) if isinstance(ours, TensorEntry) else ours == back


def test_zip64_records_load_in_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Real zip64 needs a 4 GiB record; lowering the threshold exercises the same fields.
    monkeypatch.setattr(torch_write, "_ZIP64_LIMIT", 200)
    entries = _entries_of({"big": torch.arange(100, dtype=torch.float64), "small": torch.ones(3), "after": torch.zeros(2, dtype=torch.int8)})
    path = tmp_path / "z64.pt"
    path.write_bytes(_write(entries))
    assert zipfile.ZipFile(path).testzip() is None
    _assert_torch_loads(path, entries)


def test_writes_to_a_stream_that_cannot_seek_and_is_reproducible(tmp_path: Path) -> None:
    class WriteOnly:
        def __init__(self) -> None:
            self.parts: list[bytes] = []

        def write(self, data: bytes) -> int:
            self.parts.append(bytes(data))
            return len(data)

    entries = _entries_of(_every_dtype())
    stream = WriteOnly()
    write_torch(stream, entries, metadata={"ignored": "yes"})
    assert b"".join(stream.parts) == _write(entries)


def test_write_checkpoint_then_read_back_through_the_registry(tmp_path: Path) -> None:
    state = {**_views(), "epoch": 2}
    path = tmp_path / "out.pt"
    seen: list[int] = []
    write_checkpoint(path, _entries_of(state), Format.TORCH, on_bytes=seen.append)
    assert sum(seen) == sum(v.numel() * v.element_size() for v in state.values() if isinstance(v, torch.Tensor))
    with open_checkpoint(path) as checkpoint:
        _assert_entries_match(checkpoint, state)


def test_source_giving_the_wrong_size_or_a_repeated_name_is_refused() -> None:
    from convmigrate.errors import UsageError, WriteError

    entry = TensorEntry("w", DTYPES["float32"], (4,), lambda: (memoryview(b"\0" * 12),))
    with pytest.raises(WriteError, match="w: source gave 12 bytes"):
        _write([entry])
    with pytest.raises(UsageError, match="'w' appears twice"):
        _write([ValueEntry("w", 1), ValueEntry("w", 2)])


def test_every_file_here_is_read_without_torch_even_views_and_modules(tmp_path: Path) -> None:
    """The torch-free reader serves views, wrappers, whole models and legacy files itself."""
    torch.save(_every_dtype(), tmp_path / "every.pt")
    torch.save({"model": torch.nn.Conv1d(2, 4, 3).state_dict(), "epoch": 1}, tmp_path / "wrapped.pt")
    torch.save(_views(), tmp_path / "views.pt")  # transposed, strided, expanded
    torch.save(_views(), tmp_path / "views_legacy.pt", _use_new_zipfile_serialization=False)
    torch.save(torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3)), tmp_path / "whole.pt")
    script = (
        "import sys; from pathlib import Path; from convmigrate.formats import open_checkpoint\n"
        f"for name in ('every', 'wrapped', 'views', 'views_legacy', 'whole'):\n"
        f"    with open_checkpoint(Path({str(tmp_path)!r}) / f'{{name}}.pt') as c:\n"
        "        assert c.tensors() and all(len(e.raw_bytes()) == e.nbytes for e in c.tensors())\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_reading_a_plain_state_dict_does_not_import_torch(tmp_path: Path) -> None:
    torch.save({"conv.weight": torch.randn(8, 4, 3), "step": 3}, tmp_path / "m.pt")
    script = (
        "import sys; from convmigrate.formats import open_checkpoint\n"
        f"c = open_checkpoint({str(tmp_path / 'm.pt')!r})\n"
        "assert [len(e.raw_bytes()) for e in c.tensors()] == [384]\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
