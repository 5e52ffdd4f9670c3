"""MindSpore .ckpt reading and writing, checked against the real MindSpore 2.10 on CPU.

Files are written by `mindspore.save_checkpoint` into tmp_path and read by our streaming
reader; every tensor must be byte-identical to what `mindspore.load_checkpoint` returns, and
re-writing what we read must reproduce MindSpore's file byte for byte. Files we write must
load in MindSpore with identical bytes. Damaged files must fail with one clear
UnreadableCheckpointError, never another exception.
"""

from __future__ import annotations

import io
import math
import uuid
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convmigrate.entries import Checkpoint, TensorEntry, ValueEntry
from convmigrate.errors import UnreadableCheckpointError, WriteError
from convmigrate.formats import open_checkpoint
from convmigrate.formats.ckpt import read_ckpt, write_ckpt
from convmigrate.vocab import DTYPES, MINDSPORE_SPLIT_BYTES, Format

CRC_TAIL = 17  # b"crc_num" + 10 bytes


# --------------------------------------------------------------------------- helpers


def ms_save(ms, path: Path, tensors: dict, **options) -> Path:
    """Save {name: numpy array or mindspore Tensor} with the real save_checkpoint."""
    params = [{"name": name, "data": data if isinstance(data, ms.Tensor) else ms.Tensor(data)} for name, data in tensors.items()]
    ms.save_checkpoint(params, str(path), **options)
    return path


def ms_values(ms, path: Path, crc_check: bool = False) -> list:
    """What mindspore.load_checkpoint returns, in order: (name, str) or (name, type, shape, bits)."""
    loaded = ms.load_checkpoint(str(path), crc_check=crc_check)
    out = []
    for name, value in loaded.items():
        if isinstance(value, str):
            out.append((name, value))
            continue
        array = value.asnumpy()
        if str(value.dtype) == "BFloat16":
            array = array.view(np.uint16)  # the exact bits; no float conversion involved
        out.append((name, str(value.dtype), tuple(value.shape), array.tobytes()))
    return out


def our_values(checkpoint: Checkpoint) -> list:
    """Our entries in the same form as `ms_values`."""
    return [
        (e.name, e.value) if isinstance(e, ValueEntry) else (e.name, e.dtype.mindspore, e.shape, e.raw_bytes())
        for e in checkpoint.entries
    ]


def rewrite(checkpoint: Checkpoint, **options) -> bytes:
    buffer = io.BytesIO()
    write_ckpt(buffer, checkpoint.entries, metadata={}, **options)
    return buffer.getvalue()


def assert_reads_like_mindspore(ms, path: Path, crc: bool = False, split_bytes: int = MINDSPORE_SPLIT_BYTES) -> list:
    """Our reader agrees with load_checkpoint, and writing what we read gives the same file."""
    with read_ckpt(path) as checkpoint:
        ours = our_values(checkpoint)
        assert ours == ms_values(ms, path, crc_check=crc)
        assert rewrite(checkpoint, crc=crc, split_bytes=split_bytes) == path.read_bytes()
    return ours


def ms_values_of_file(ms, path: Path) -> list:
    """(tag, dims, tensor_type, content length) of every Value, parsed by MindSpore's protobuf."""
    from mindspore.train.checkpoint_pb2 import Checkpoint as Proto

    proto = Proto()
    data = path.read_bytes()
    proto.ParseFromString(data[:-CRC_TAIL] if data[-CRC_TAIL:-10] == b"crc_num" else data)
    return [(v.tag, list(v.tensor.dims), v.tensor.tensor_type, len(v.tensor.tensor_content)) for v in proto.value]


def proto_value(tag: str, dims: list[int], tensor_type: str, content: bytes) -> bytes:
    """One Value serialized by the protobuf library (independent of our writer)."""
    from mindspore.train.checkpoint_pb2 import Checkpoint as Proto

    proto = Proto()
    value = proto.value.add()
    value.tag = tag
    value.tensor.dims.extend(dims)
    value.tensor.tensor_type = tensor_type
    value.tensor.tensor_content = content
    return proto.SerializeToString()


def write_file(path: Path, entries, **options) -> Path:
    with open(path, "wb") as stream:
        write_ckpt(stream, entries, metadata={}, **options)
    return path


# --------------------------------------------------------------------------- files MindSpore wrote


def test_plain_file_reads_like_mindspore(ms, tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "conv.weight": rng.standard_normal((8, 4, 1, 3)).astype(np.float32),
        "conv.bias": rng.standard_normal(8).astype(np.float32),
        "bn.moving_mean": np.zeros(8, np.float32),
        "名前.gamma": np.ones(8, np.float32),
    }
    path = ms_save(ms, tmp_path / "plain.ckpt", tensors)
    ours = assert_reads_like_mindspore(ms, path)
    assert [name for name, *_ in ours] == list(tensors)
    with read_ckpt(path) as checkpoint:
        assert checkpoint.format is Format.CKPT
        assert np.array_equal(checkpoint.entries[0].array(), tensors["conv.weight"])


def test_crc_tail_is_checked_and_stripped(ms, tmp_path):
    path = ms_save(ms, tmp_path / "crc.ckpt", {"w": np.arange(12, dtype=np.float32)}, crc_check=True)
    data = path.read_bytes()
    assert data[-CRC_TAIL:-10] == b"crc_num"
    assert int.from_bytes(data[-10:], "big") == zlib.crc32(data[:-CRC_TAIL])  # 10 bytes, big-endian
    assert_reads_like_mindspore(ms, path, crc=True)


def test_append_dict_values(ms, tmp_path):
    path = ms_save(
        ms,
        tmp_path / "append.ckpt",
        {"w": np.arange(3, dtype=np.float32)},
        append_dict={"text": "héllo 🎉", "empty": "", "epoch": 7, "lr": 1.1, "flag": True},
    )
    ours = assert_reads_like_mindspore(ms, path)
    by_name = {item[0]: item[1:] for item in ours}
    assert by_name["text"] == ("héllo 🎉",) and by_name["empty"] == ("",)
    assert by_name["epoch"] == ("Int64", (), np.int64(7).tobytes())
    assert by_name["lr"] == ("Float32", (), np.float32(1.1).tobytes())  # MindSpore stores floats as Float32
    assert by_name["flag"] == ("Bool", (), b"\x01")
    layout = {tag: (dims, tensor_type) for tag, dims, tensor_type, _ in ms_values_of_file(ms, path)}
    assert layout["text"] == ([0], "str") and layout["epoch"] == ([], "Int64")


def test_bfloat16_bits_and_values(ms, tmp_path):
    values = np.array([[1.5, -2.25, 3e38], [1e-40, np.inf, -0.0]], np.float32)
    path = ms_save(ms, tmp_path / "bf16.ckpt", {"bf": ms.Tensor(values).astype(ms.bfloat16)})
    assert_reads_like_mindspore(ms, path)
    with read_ckpt(path) as checkpoint:
        (entry,) = checkpoint.entries
        assert entry.dtype is DTYPES["bfloat16"]
        ours = entry.dtype.to_float32(entry.array())
    theirs = ms.load_checkpoint(str(path))["bf"].astype(ms.float32).asnumpy()
    assert ours.tobytes() == theirs.tobytes()


def test_many_dtypes(ms, tmp_path):
    rng = np.random.default_rng(1)
    tensors = {
        name: (rng.standard_normal((3, 5)) * 100 if dtype.is_floating else rng.integers(-100, 100, (3, 5))).astype(dtype.numpy)
        for name, dtype in DTYPES.items()
        if name not in ("bfloat16", "bool")
    }
    tensors["bool"] = rng.integers(0, 2, (4, 2)).astype(bool)
    path = ms_save(ms, tmp_path / "dtypes.ckpt", tensors)
    ours = assert_reads_like_mindspore(ms, path)
    assert {tensor_type for _, tensor_type, *_ in ours} == {d.mindspore for d in DTYPES.values()} - {"BFloat16"}


def test_scalars(ms, tmp_path):
    tensors = {"s32": np.array(2.5, np.float32), "s64": np.array(-3, np.int64), "sb": np.array(True)}
    path = ms_save(ms, tmp_path / "scalars.ckpt", tensors)
    assert [dims for _, dims, *_ in ms_values_of_file(ms, path)] == [[], [], []]
    assert [item[2] for item in assert_reads_like_mindspore(ms, path)] == [(), (), ()]


@pytest.mark.parametrize("crc", [False, True])
def test_split_tensor_is_joined(ms, tmp_path, monkeypatch, crc):
    """save_checkpoint cuts a tensor's raw bytes into SLICE_SIZE KiB pieces (not row-aligned)."""
    import mindspore.train.serialization as serialization

    monkeypatch.setattr(serialization, "SLICE_SIZE", 1)  # KiB: split anything over 1024 bytes
    tensors = {
        "big": np.arange(500 * 3, dtype=np.float32).reshape(500, 3),  # 6000 bytes
        "exact": np.zeros(256, np.float32),  # exactly 1024 bytes: not split
        "after": np.arange(300, dtype=np.int16),
    }
    path = ms_save(ms, tmp_path / "split.ckpt", tensors, crc_check=crc)
    layout = ms_values_of_file(ms, path)
    assert [(tag, length) for tag, _, _, length in layout] == [("big", 1024)] * 5 + [("big", 880), ("exact", 1024), ("after", 600)]
    assert all(dims == [500, 3] for tag, dims, _, _ in layout if tag == "big")
    assert_reads_like_mindspore(ms, path, crc=crc, split_bytes=1024)
    with read_ckpt(path) as checkpoint:
        assert len(checkpoint.entries[0].extents(0, 6000)) == 6  # read in place: one extent per piece


def test_empty_checkpoints(ms, tmp_path):
    plain, with_crc = tmp_path / "empty.ckpt", tmp_path / "empty_crc.ckpt"
    ms.save_checkpoint([], str(plain))
    ms.save_checkpoint([], str(with_crc), crc_check=True)
    assert plain.read_bytes() == b""
    assert with_crc.read_bytes() == b"crc_num" + bytes(10)
    for path in (plain, with_crc):
        with read_ckpt(path) as checkpoint:
            assert checkpoint.entries == []
    assert rewrite(Checkpoint(Format.CKPT, []), crc=True) == with_crc.read_bytes()
    with open_checkpoint(with_crc) as checkpoint:  # detection accepts a CRC-only file
        assert checkpoint.entries == []


def test_mindspore_drops_zero_size_tensors_but_loads_ours(ms, tmp_path):
    path = ms_save(ms, tmp_path / "zero.ckpt", {"z": np.zeros((0, 3), np.float32), "k": np.ones(2, np.int8)})
    assert [name for name, *_ in ms_values(ms, path)] == ["k"]
    entries = [TensorEntry.from_array("z", np.zeros((0, 3), np.float32)), TensorEntry.from_array("k", np.ones(2, np.int8))]
    ours = write_file(tmp_path / "ours.ckpt", entries)
    assert ms_values(ms, ours) == [("z", "Float32", (0, 3), b""), ("k", "Int8", (2,), b"\x01\x01")]


def test_legacy_scalar_and_packed_dims_read_like_mindspore(ms, tmp_path):
    """MindSpore 1.x wrote scalars with dims [0]; packed dims are legal protobuf."""
    packed = proto_value("p", [2, 3], "Int8", bytes(range(6))).replace(b"\x08\x02\x08\x03", b"\x0a\x02\x02\x03")
    path = damaged(tmp_path, proto_value("old", [0], "Float32", np.float32(1.5).tobytes()) + packed)
    with read_ckpt(path) as checkpoint:
        assert our_values(checkpoint) == ms_values(ms, path)
        assert [e.shape for e in checkpoint.entries] == [(), (2, 3)]


def test_encrypted_file_is_refused_with_advice(ms, tmp_path):
    path = ms_save(ms, tmp_path / "enc.ckpt", {"w": np.arange(64, dtype=np.float32)}, enc_key=b"0123456789abcdef")
    with pytest.raises(UnreadableCheckpointError, match="enc_key.*dec_key"):
        read_ckpt(path)


# --------------------------------------------------------------------------- files we wrote


def sample_entries() -> list:
    rng = np.random.default_rng(2)
    bf16 = DTYPES["bfloat16"].from_float32(rng.standard_normal((7, 3)).astype(np.float32))
    return [
        TensorEntry.from_array("conv.weight", rng.standard_normal((16, 8, 3)).astype(np.float32)),
        TensorEntry.from_array("bf", bf16, DTYPES["bfloat16"]),
        TensorEntry.from_array("ids", rng.integers(-(2**40), 2**40, (5, 2)).astype(np.int64)),
        TensorEntry.from_array("half", rng.standard_normal(33).astype(np.float16)),
        TensorEntry.from_array("mask", rng.integers(0, 2, 9).astype(bool)),
        TensorEntry.from_array("scalar", np.array(0.1, np.float64)),
        TensorEntry.from_array("rows0", np.zeros((0, 4), np.float32)),
        ValueEntry("note", "ünïcode ✓"),
        ValueEntry("blank", ""),
        ValueEntry("epoch", 12),
        ValueEntry("lr", 0.1),
        ValueEntry("done", False),
    ]


# Plain numbers are stored as 0-d tensors of these dtypes (floats as Float64, unlike MindSpore).
VALUE_DTYPES = {bool: DTYPES["bool"], int: DTYPES["int64"], float: DTYPES["float64"]}


def as_read_back(entry) -> tuple:
    """What `ms_values` / `our_values` should give for an entry we wrote."""
    if isinstance(entry, TensorEntry):
        return (entry.name, entry.dtype.mindspore, entry.shape, entry.raw_bytes())
    if isinstance(entry.value, str):
        return (entry.name, entry.value)
    dtype = VALUE_DTYPES[type(entry.value)]
    return (entry.name, dtype.mindspore, (), np.array(entry.value, dtype.numpy).tobytes())


@pytest.mark.parametrize(("crc", "split_bytes"), [(False, MINDSPORE_SPLIT_BYTES), (True, MINDSPORE_SPLIT_BYTES), (True, 40), (False, 7)])
def test_our_files_load_in_mindspore(ms, tmp_path, crc, split_bytes):
    entries = sample_entries()
    path = write_file(tmp_path / "ours.ckpt", entries, crc=crc, split_bytes=split_bytes)
    expected = [as_read_back(e) for e in entries]
    assert ms_values(ms, path, crc_check=crc) == expected
    if split_bytes == 40:  # pieces hold whole elements: 40 bytes of float32, 36 of float64...
        tags = [tag for tag, *_ in ms_values_of_file(ms, path)]
        assert tags.count("conv.weight") == math.ceil(16 * 8 * 3 * 4 / 40)
    with read_ckpt(path) as checkpoint:
        assert our_values(checkpoint) == expected


def test_writer_streams_and_reports_progress(tmp_path):
    entry = TensorEntry.from_array("w", np.arange(1000, dtype=np.float32))
    seen: list[int] = []
    buffer = io.BytesIO()
    write_ckpt(buffer, [entry, ValueEntry("s", "x")], metadata={"ignored": "yes"}, on_bytes=seen.append, split_bytes=1000)
    assert sum(seen) == entry.nbytes and max(seen) <= 1000


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        ([ValueEntry("a", 1), ValueEntry("a", 2)], "two entries"),
        ([ValueEntry("nul", "a\x00")], "NUL"),
        ([ValueEntry("huge", 2**70)], "does not fit"),
        ([TensorEntry("short", DTYPES["float32"], (4,), lambda: (memoryview(b"1234"),))], "short: source gave 4 bytes"),
        ([TensorEntry("long", DTYPES["int8"], (1,), lambda: (memoryview(b"12"),))], "long: source gave 2 bytes"),
    ],
)
def test_writer_refuses_what_it_cannot_store(entries, problem):
    with pytest.raises(WriteError, match=problem):
        write_ckpt(io.BytesIO(), entries, metadata={})


# --------------------------------------------------------------------------- property: round trip

NAMES = st.text(max_size=12)
SHAPES = st.lists(st.integers(0, 4), max_size=3).map(tuple)


@st.composite
def any_entry(draw, name: str):
    kind = draw(st.sampled_from(["tensor", "tensor", "tensor", "str", "int", "float", "bool"]))
    if kind == "str":
        return ValueEntry(name, draw(st.text(max_size=10).filter(lambda s: not s.endswith("\x00"))))
    if kind == "int":
        return ValueEntry(name, draw(st.integers(-(2**63), 2**63 - 1)))
    if kind == "float":
        return ValueEntry(name, draw(st.floats(allow_nan=True)))
    if kind == "bool":
        return ValueEntry(name, draw(st.booleans()))
    dtype = DTYPES[draw(st.sampled_from(sorted(DTYPES)))]
    shape = draw(SHAPES)
    raw = draw(st.binary(min_size=math.prod(shape) * dtype.itemsize, max_size=math.prod(shape) * dtype.itemsize))
    return TensorEntry(name, dtype, shape, lambda: (memoryview(raw),))


@st.composite
def entry_lists(draw):
    names = draw(st.lists(NAMES, unique=True, max_size=6))
    return [draw(any_entry(name)) for name in names]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=entry_lists(), crc=st.booleans(), split_bytes=st.integers(1, 64))
def test_round_trip_is_bit_exact(tmp_path_factory, entries, crc, split_bytes):
    path = tmp_path_factory.getbasetemp() / f"{uuid.uuid4().hex}.ckpt"
    write_file(path, entries, crc=crc, split_bytes=split_bytes)
    try:
        with read_ckpt(path) as checkpoint:
            assert our_values(checkpoint) == [as_read_back(e) for e in entries]
    finally:
        path.unlink()


# --------------------------------------------------------------------------- damaged files


def damaged(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "damaged.ckpt"
    path.write_bytes(data)
    return path


def good_file() -> bytes:
    """A small valid file with a split tensor, str, scalars and a zero-size tensor."""
    buffer = io.BytesIO()
    write_ckpt(buffer, sample_entries()[1:], metadata={}, crc=False, split_bytes=64)
    return buffer.getvalue()


def assert_unreadable(path: Path, problem: str) -> None:
    with pytest.raises(UnreadableCheckpointError, match=problem) as caught:
        read_ckpt(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda: proto_value("w", [2], "Float32", b"\0" * 8)[:-3], "truncated"),
        (lambda: proto_value("w", [1], "Int8", b"\0") + b"\x0a" + b"\xff" * 11, "bad varint"),
        (lambda: proto_value("w", [3], "Float32", b"\0" * 8), "content is 8 bytes but dims \\[3\\]"),
        (lambda: proto_value("w", [2**40, 2**40], "Float32", b""), r"claim a size beyond 2\^63 - 1 bytes.*MAX_DIM_PRODUCT"),
        (lambda: proto_value("w", [-2], "Float32", b""), "negative"),
        (lambda: proto_value("w", [1], "Int4", b"\0"), "'Int4'"),
        (lambda: proto_value("AB", [1], "Int8", b"\0").replace(b"\x0a\x02AB", b"\x0a\x02\xff\xfe"), "UTF-8"),
        (lambda: proto_value("a", [1], "Int8", b"\0") + proto_value("b", [1], "Int8", b"\0") + proto_value("a", [1], "Int8", b"\0"), "appears again"),
        (lambda: proto_value("a", [1], "Int8", b"\0") + proto_value("a", [2], "Int8", b"\0"), "disagree"),
        (lambda: proto_value("w", [1], "Int8", b"\0") + b"\x11" + bytes(8), "wire type 1"),
        (lambda: proto_value("w", [1], "Int8", b"\0").replace(b"\x1a\x01\x00", b"\x28\x80\x00"), "field 5"),
        (lambda: proto_value("w", [1], "Int8", b"\0").replace(b"\x1a\x01\x00", b"\x12\x01X"), "no tensor_type or no tensor_content"),
        (lambda: proto_value("s", [0], "str", b"abc"), "not UTF-32"),
        (lambda: b"\x0a\x06\x0a\x01m\x1a\x01\x00", "MapParameter"),
        (lambda: bytes(range(200, 256)) * 3, "enc_key"),
    ],
)
def test_damaged_files_are_refused(ms, tmp_path, build, problem):
    assert_unreadable(damaged(tmp_path, build()), problem)


def test_crc_mismatch_is_refused_like_mindspore(ms, tmp_path):
    path = ms_save(ms, tmp_path / "crc.ckpt", {"w": np.arange(12, dtype=np.float32)}, crc_check=True)
    data = bytearray(path.read_bytes())
    data[-CRC_TAIL - 5] ^= 0x01  # one bit of tensor content
    bad = damaged(tmp_path, bytes(data))
    assert_unreadable(bad, "CRC does not match")
    with pytest.raises(ValueError):  # MindSpore refuses too (its message is a generic one)
        ms.load_checkpoint(str(bad), crc_check=True)


def test_every_truncation_is_refused_or_a_prefix(tmp_path):
    data = good_file()
    with read_ckpt(damaged(tmp_path, data)) as checkpoint:
        full = our_values(checkpoint)
    for cut in range(1, len(data)):
        path = damaged(tmp_path, data[:cut])
        try:
            with read_ckpt(path) as checkpoint:
                assert our_values(checkpoint) == full[: len(checkpoint.entries)]
        except UnreadableCheckpointError:
            pass


@settings(max_examples=200, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4))
def test_corrupted_bytes_never_escape_as_other_errors(tmp_path_factory, edits):
    data = bytearray(good_file())
    for position, byte in edits:
        data[position % len(data)] = byte
    path = tmp_path_factory.getbasetemp() / f"{uuid.uuid4().hex}.ckpt"
    path.write_bytes(bytes(data))
    try:
        with read_ckpt(path) as checkpoint:
            for entry in checkpoint.tensors():
                assert len(entry.raw_bytes()) == entry.nbytes
    except UnreadableCheckpointError:
        pass
    finally:
        path.unlink()


def test_open_checkpoint_closes_the_map(tmp_path):
    path = write_file(tmp_path / "w.ckpt", sample_entries())
    checkpoint = open_checkpoint(path)
    kept = checkpoint.entries[0].array()  # a caller may keep an array past close()
    checkpoint.close()
    assert np.array_equal(kept, sample_entries()[0].array())
