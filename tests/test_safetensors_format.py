"""safetensors reader and writer against the real safetensors library (and transformers' shards)."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save as np_save
from safetensors.numpy import save_file as np_save_file
from safetensors.torch import save as torch_save
from safetensors.torch import save_file as torch_save_file
from tensor_cases import entry_lists, torch_bytes

from convmigrate.entries import TensorEntry, ValueEntry
from convmigrate.errors import UnreadableCheckpointError
from convmigrate.formats import open_checkpoint, write_checkpoint
from convmigrate.formats.safetensors_file import read_safetensors, write_ms_safetensors, write_safetensors
from convmigrate.vocab import DTYPES, Format

# One array per NumPy-representable dtype, with 0-d and zero-size shapes among them.
NUMPY_ARRAYS = {
    "f16": np.array([[1.5, -2.0], [np.inf, 0.0]], np.float16),
    "f32": np.arange(12, dtype=np.float32).reshape(3, 4),
    "f64": np.array(3.25),  # 0-d
    "i8": np.array([-128, 127], np.int8),
    "i16": np.array([-3, 4, 5], np.int16),
    "i32": np.zeros((0, 3), np.int32),  # zero-size
    "i64": np.array([2**62, -1], np.int64),
    "u8": np.array([255, 0, 7], np.uint8),
    "u16": np.array([65535], np.uint16),
    "u32": np.array([2**32 - 1, 1], np.uint32),
    "u64": np.array([2**64 - 1], np.uint64),
    "bool": np.array([[True, False, True]]),
}


def _entries_of(arrays: dict[str, np.ndarray]) -> list[TensorEntry]:
    return [TensorEntry.from_array(name, array) for name, array in arrays.items()]


def _written(entries, metadata=None, writer=write_safetensors) -> bytes:
    stream = io.BytesIO()
    writer(stream, entries, metadata=metadata or {})
    return stream.getvalue()


def _with_header(header: dict | bytes, data: bytes = b"") -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


# --------------------------------------------------------------------------- reading library files


def test_reads_numpy_save_file_bytes_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "np.safetensors"
    np_save_file(NUMPY_ARRAYS, path, metadata={"format": "np", "note": "x"})
    with read_safetensors(path) as checkpoint, safe_open(path, "np") as reference:
        assert checkpoint.format is Format.SAFETENSORS
        assert checkpoint.metadata == {"format": "np", "note": "x"}
        assert sorted(e.name for e in checkpoint.entries) == sorted(NUMPY_ARRAYS)
        for entry in checkpoint.tensors():
            expected = reference.get_tensor(entry.name)
            assert entry.shape == expected.shape, entry.name
            assert entry.dtype.numpy == expected.dtype.newbyteorder("<"), entry.name
            assert entry.raw_bytes() == expected.tobytes(), entry.name


def test_reads_torch_save_file_including_bfloat16(tmp_path: Path) -> None:
    tensors = {
        "bf16": torch.tensor([[1.0, -3.5], [1e-8, 65504.0]], dtype=torch.bfloat16),
        "f32": torch.randn(2, 3),
        "bool": torch.tensor([True, False]),
        "scalar": torch.tensor(7, dtype=torch.int64),
    }
    path = tmp_path / "pt.safetensors"
    torch_save_file(tensors, path, metadata={"format": "pt"})
    with read_safetensors(path) as checkpoint:
        got = {e.name: e for e in checkpoint.tensors()}
        for name, tensor in tensors.items():
            assert got[name].dtype.name == str(tensor.dtype).removeprefix("torch.")
            assert got[name].shape == tuple(tensor.shape)
            assert got[name].raw_bytes() == torch_bytes(tensor), name


def test_entries_follow_header_order_which_is_the_library_data_order(tmp_path: Path) -> None:
    path = tmp_path / "order.safetensors"
    np_save_file({"b": np.ones(1, np.int8), "a": np.ones(1, np.float64), "c": np.ones(1, np.float64)}, path)
    with read_safetensors(path) as checkpoint:
        assert [e.name for e in checkpoint.entries] == ["a", "c", "b"]  # F64 first, then by name


def test_tensor_bytes_are_read_from_the_file_until_it_is_closed(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    np_save_file({"w": np.arange(10, dtype=np.float32)}, path)
    checkpoint = read_safetensors(path)
    (extent,) = checkpoint.tensors()[0].extents(0, 40)  # where a kernel copy would take them from
    assert extent[1:] == (path.stat().st_size - 40, 40)
    assert np.array_equal(checkpoint.tensors()[0].array(), np.arange(10, dtype=np.float32))
    checkpoint.close()
    with pytest.raises(ValueError):  # the file is closed
        checkpoint.tensors()[0].raw_bytes()


def test_ms_flavour_metadata_gives_ms_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "ms.safetensors"
    np_save_file({"conv.weight": np.ones((2, 1, 1, 3), np.float32)}, path, metadata={"format": "ms"})
    with open_checkpoint(path) as checkpoint:
        assert checkpoint.format is Format.MS_SAFETENSORS


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize(
    "arrays, metadata",
    [
        (NUMPY_ARRAYS, None),  # every NumPy dtype, 0-d and zero-size, no metadata
        (NUMPY_ARRAYS, {"format": "pt"}),  # one metadata key: the library's hash order cannot differ
        ({}, None),  # empty file: header "{}" padded to 8
        ({}, {"a": "b"}),
        ({"é": np.ones(3, np.int8)}, {"q": '"\n\x01é'}),  # non-ASCII names and escapes in JSON
        ({f"t{i}": np.ones(i, np.float32) for i in range(5)}, None),  # same dtype: name order
    ],
)
def test_writer_is_byte_identical_to_safetensors_numpy(arrays: dict, metadata: dict | None) -> None:
    assert _written(_entries_of(arrays), metadata) == np_save(arrays, metadata=metadata)


def test_writer_is_byte_identical_to_safetensors_torch_for_bfloat16() -> None:
    tensors = {"bf": torch.randn(3, 2).to(torch.bfloat16), "f16": torch.randn(4).half(), "i32": torch.arange(3, dtype=torch.int32)}
    entries = [
        TensorEntry.from_array(name, t.view(torch.int16).numpy().view(np.uint16), DTYPES["bfloat16"]) if name == "bf"
        else TensorEntry.from_array(name, t.numpy())
        for name, t in tensors.items()
    ]
    assert _written(entries, {"format": "pt"}) == torch_save(tensors, metadata={"format": "pt"})


def test_metadata_keys_are_written_sorted_and_read_back(tmp_path: Path) -> None:
    metadata = {f"k{i}": f"v{i}" for i in (3, 1, 2)}
    path = tmp_path / "meta.safetensors"
    path.write_bytes(_written(_entries_of({"x": np.ones(2, np.float32)}), metadata))
    header = json.loads(path.read_bytes()[8:].split(b"}}", 1)[0] + b"}}")
    assert list(header["__metadata__"]) == ["k1", "k2", "k3"]
    with safe_open(path, "np") as reference:
        assert reference.metadata() == metadata


def test_values_travel_in_metadata_and_read_back_as_value_entries(tmp_path: Path) -> None:
    entries = [TensorEntry.from_array("w", np.ones(2, np.float32)), ValueEntry("epoch", 3), ValueEntry("name", "net"), ValueEntry("lr", 0.5), ValueEntry("ema", True)]
    path = tmp_path / "v.safetensors"
    path.write_bytes(_written(entries, {"format": "pt"}))
    with safe_open(path, "np") as reference:
        assert reference.metadata()["convmigrate.value.epoch"] == "3"
    with read_safetensors(path) as checkpoint:
        assert checkpoint.metadata == {"format": "pt"}
        values = {e.name: e.value for e in checkpoint.entries if isinstance(e, ValueEntry)}
        assert values == {"epoch": 3, "name": "net", "lr": 0.5, "ema": True}
        assert type(values["ema"]) is bool


def test_ms_writer_adds_format_ms(tmp_path: Path) -> None:
    path = tmp_path / "out.safetensors"
    write_checkpoint(path, _entries_of({"w": np.ones(2, np.float16)}), Format.MS_SAFETENSORS, metadata={"source": "pt"})
    with safe_open(path, "np") as reference:
        assert reference.metadata() == {"format": "ms", "source": "pt"}
    with read_safetensors(path) as checkpoint:
        assert checkpoint.format is Format.MS_SAFETENSORS


def test_on_bytes_counts_every_tensor_byte() -> None:
    seen: list[int] = []
    entries = _entries_of(NUMPY_ARRAYS)
    write_safetensors(io.BytesIO(), entries, metadata={}, on_bytes=seen.append)
    assert sum(seen) == sum(e.nbytes for e in entries)


def test_duplicate_names_and_wrong_sized_sources_are_refused() -> None:
    from convmigrate.errors import UsageError, WriteError

    weight = TensorEntry.from_array("w", np.ones(2, np.float32))
    with pytest.raises(UsageError, match="'w' appears twice"):
        _written([weight, ValueEntry("w", 1)])
    too_long = TensorEntry("w", DTYPES["float32"], (2,), lambda: (memoryview(b"\0" * 12),))
    with pytest.raises(WriteError, match="w: source gave 12 bytes, float32 \\[2\\] needs 8"):
        _written([too_long])


def test_non_finite_values_come_back(tmp_path: Path) -> None:
    """json.dumps writes inf and nan as Infinity and NaN, which the strict JSON reader refuses:
    a value that is exactly such a word reads back as that float (found by the round trip below)."""
    path = tmp_path / "v.safetensors"
    values = {"best_loss": float("inf"), "low": float("-inf"), "nan": float("nan"), "text": "Infinity"}
    path.write_bytes(_written([TensorEntry.from_array("w", np.zeros(2, np.float32)),
                               *(ValueEntry(k, v) for k, v in values.items())]))
    with read_safetensors(path) as checkpoint:
        back = {e.name: e.value for e in checkpoint.entries if isinstance(e, ValueEntry)}
    assert back["best_loss"] == float("inf") and back["low"] == float("-inf") and np.isnan(back["nan"])
    assert back["text"] == "Infinity"  # a string stays a string


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=entry_lists(), ms=st.booleans())
def test_round_trip_through_the_safetensors_library(tmp_path: Path, entries: list, ms: bool) -> None:
    path = tmp_path / "rt.safetensors"
    path.write_bytes(_written(entries, {"k": "v"}, write_ms_safetensors if ms else write_safetensors))
    tensors = [e for e in entries if isinstance(e, TensorEntry)]
    with safe_open(path, "pt") as reference:
        assert sorted(reference.keys()) == sorted(t.name for t in tensors)
        for tensor in tensors:
            got = reference.get_tensor(tensor.name)
            assert (str(got.dtype).removeprefix("torch."), tuple(got.shape)) == (tensor.dtype.name, tensor.shape)
            assert torch_bytes(got) == tensor.raw_bytes(), tensor.name
    with read_safetensors(path) as checkpoint:
        assert checkpoint.format is (Format.MS_SAFETENSORS if ms else Format.SAFETENSORS)
        back = {e.name: e for e in checkpoint.entries}
        assert set(back) == {e.name for e in entries}
        for entry in entries:
            if isinstance(entry, TensorEntry):
                assert (back[entry.name].dtype, back[entry.name].shape) == (entry.dtype, entry.shape)
                assert back[entry.name].raw_bytes() == entry.raw_bytes()
            else:
                assert back[entry.name] == entry


# --------------------------------------------------------------------------- shards


@pytest.fixture(scope="module")
def tiny_sharded_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A tiny BERT saved by transformers' save_pretrained in three safetensors shards."""
    import transformers

    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, max_position_embeddings=16)
    torch.manual_seed(0)
    model = transformers.BertModel(config)
    folder = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(folder, max_shard_size="8KB", safe_serialization=True)
    return folder / "model.safetensors.index.json", {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_reads_transformers_shards_in_index_order(tiny_sharded_model) -> None:
    index_path, state = tiny_sharded_model
    index = json.loads(index_path.read_text())
    assert len(set(index["weight_map"].values())) > 1
    with open_checkpoint(index_path) as checkpoint:
        assert checkpoint.format is Format.SAFETENSORS
        assert [e.name for e in checkpoint.entries] == list(index["weight_map"])
        assert checkpoint.metadata["format"] == "pt"
        assert checkpoint.metadata["total_size"] == str(index["metadata"]["total_size"])
        for entry in checkpoint.tensors():
            assert entry.raw_bytes() == torch_bytes(state[entry.name]), entry.name


def _copy_shards(index_path: Path, into: Path) -> Path:
    for file in index_path.parent.iterdir():
        (into / file.name).write_bytes(file.read_bytes())
    return into / index_path.name


def test_missing_shard_is_named(tiny_sharded_model, tmp_path: Path) -> None:
    index_path = _copy_shards(tiny_sharded_model[0], tmp_path)
    shard = sorted(tmp_path.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(UnreadableCheckpointError, match=f"shard '{shard.name}' .*missing"):
        read_safetensors(index_path)


def test_index_naming_a_tensor_its_shard_lacks_is_refused(tiny_sharded_model, tmp_path: Path) -> None:
    index_path = _copy_shards(tiny_sharded_model[0], tmp_path)
    index = json.loads(index_path.read_text())
    index["weight_map"]["ghost.weight"] = next(iter(index["weight_map"].values()))
    index_path.write_text(json.dumps(index))
    with pytest.raises(UnreadableCheckpointError, match="'ghost.weight'"):
        read_safetensors(index_path)


def test_our_shards_with_an_index_read_back(tmp_path: Path) -> None:
    arrays = {"a.weight": np.ones((2, 2), np.float32), "b.weight": np.arange(3, dtype=np.int64), "c": np.zeros(1, np.float16)}
    (tmp_path / "s1.safetensors").write_bytes(_written(_entries_of({k: arrays[k] for k in ("a.weight", "c")}), {"format": "ms"}))
    (tmp_path / "s2.safetensors").write_bytes(_written(_entries_of({"b.weight": arrays["b.weight"]}), {"format": "ms"}))
    weight_map = {"c": "s1.safetensors", "b.weight": "s2.safetensors", "a.weight": "s1.safetensors"}
    index_path = tmp_path / "m.safetensors.index.json"
    index_path.write_text(json.dumps({"metadata": {"total_size": 42}, "weight_map": weight_map}))
    with read_safetensors(index_path) as checkpoint:
        assert checkpoint.format is Format.MS_SAFETENSORS
        assert [e.name for e in checkpoint.entries] == ["c", "b.weight", "a.weight"]
        assert checkpoint.metadata == {"format": "ms", "total_size": "42"}
        assert all(e.raw_bytes() == arrays[e.name].tobytes() for e in checkpoint.tensors())


# --------------------------------------------------------------------------- damaged files

GOOD_DATA = np.arange(4, dtype=np.float32).tobytes()
GOOD = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"\x10\x00\x00", "too short"),  # fewer than 8 bytes
        (struct.pack("<Q", 10**6) + b"{}", "runs past the end"),  # header length beyond the file
        (struct.pack("<Q", 2**62) + b"{}", "runs past the end"),  # absurd header length
        (_with_header(b"{not json"), "not valid JSON"),
        (_with_header(b"\xff\xfe{}"), "not UTF-8"),
        (_with_header(b"[1, 2]"), "not a JSON object"),
        (_with_header({"w": {"dtype": "F32", "shape": [4]}}, GOOD_DATA), "must have dtype, shape and data_offsets"),
        (_with_header({"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}, b"\0" * 4), "does not carry"),
        (_with_header({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, GOOD_DATA), "non-negative"),
        (_with_header({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0]}}, GOOD_DATA), "is not \\[begin, end\\]"),
        (_with_header({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, GOOD_DATA), "needs 12"),
        (_with_header(GOOD, GOOD_DATA[:8]), "truncated"),  # data region shorter than the tensors
        (_with_header(GOOD, GOOD_DATA + b"xx"), "belong to no tensor"),  # trailing bytes
        (
            _with_header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, GOOD_DATA),
            "overlaps",
        ),
        (
            _with_header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}}, GOOD_DATA),
            "gap",
        ),
        (_with_header(b'{"w": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}, "w": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}'), "twice"),
        (_with_header({"__metadata__": {"epoch": 3}, **GOOD}, GOOD_DATA), "string values"),
        (_with_header({"__metadata__": {"convmigrate.value.x": "{"}, **GOOD}, GOOD_DATA), "JSON of a value"),
    ],
)
def test_damaged_files_raise_one_clear_line(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(UnreadableCheckpointError, match=problem) as caught:
        read_safetensors(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 200), byte=st.integers(0, 255), cut=st.integers(0, 300))
def test_fuzzed_files_read_or_raise_unreadable(tmp_path: Path, position: int, byte: int, cut: int) -> None:
    content = bytearray(np_save(NUMPY_ARRAYS, metadata={"format": "pt"}))
    content[position % len(content)] = byte
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(bytes(content[: len(content) - cut]))
    try:
        with read_safetensors(path) as checkpoint:
            for entry in checkpoint.tensors():
                assert len(entry.raw_bytes()) == entry.nbytes
    except UnreadableCheckpointError:
        pass
