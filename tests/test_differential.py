"""convmigrate against the reference libraries, on exotic-but-valid and structurally mutated files.

The oracle for safetensors is the library itself: `safetensors.deserialize` (the Rust parser and
validator, returning every tensor's raw bytes whatever its dtype) and `safe_open` (metadata).
For .ckpt it is `mindspore.load_checkpoint` (the `ms` fixture). For every file:

- where the library reads it, convmigrate returns the same tensors (names, dtypes, shapes,
  bytes) and metadata;
- where the library refuses it, convmigrate refuses it with one line naming the file;
- where the two differ, a row of `convmigrate.limits.DEVIATIONS` says so and why: each row has
  a predicate here that recognises its files, and a concrete file that shows the difference.

Files are built by hand (never by convmigrate's writer) and then broken one field at a time.
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from convmigrate.entries import TensorEntry, ValueEntry
from convmigrate.errors import ConvmigrateError
from convmigrate.formats import open_checkpoint
from convmigrate.limits import DEVIATIONS, MAX_DIM_PRODUCT, MAX_DIMS
from tests.corpus.build import field, varint, with_crc

# --------------------------------------------------------------------------- reading both ways


@dataclass(frozen=True)
class Read:
    """What a reader made of a file: tensors (name -> dtype code, shape, bytes) and metadata."""

    tensors: dict[str, tuple[str, tuple[int, ...], bytes]]
    metadata: dict[str, str]


@dataclass(frozen=True)
class Refused:
    message: str


def library_safetensors(path: Path) -> Read | Refused:
    from safetensors import deserialize, safe_open

    try:
        tensors = {name: (info["dtype"], tuple(info["shape"]), bytes(info["data"])) for name, info in deserialize(path.read_bytes())}
        with safe_open(str(path), framework="np") as opened:
            metadata = opened.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - the library's refusal, whatever its type
        return Refused(f"{type(exc).__name__}: {exc}")
    return Read(tensors, dict(metadata))


def ours(path: Path, code: Callable[[TensorEntry], str] = lambda t: t.dtype.safetensors) -> Read | Refused:
    try:
        with open_checkpoint(path) as checkpoint:
            tensors = {t.name: (code(t), t.shape, t.raw_bytes()) for t in checkpoint.tensors()}
            values = {e.name: e.value for e in checkpoint.entries if isinstance(e, ValueEntry)}
            metadata = dict(checkpoint.metadata)
    except ConvmigrateError as exc:
        message = str(exc)
        assert "\n" not in message and str(path) in message, message
        return Refused(message)
    if values:  # carried values come back as entries; the library keeps them in the metadata
        metadata.update({f"convmigrate.value.{k}": json.dumps(v, ensure_ascii=False) for k, v in values.items()})
    return Read(tensors, metadata)


# --------------------------------------------------------------------------- deviations


def _pairs_with_duplicates(text: bytes) -> bool:
    found = False

    def hook(pairs: list) -> dict:
        nonlocal found
        found = found or len({k for k, _ in pairs}) < len(pairs)
        return dict(pairs)

    try:
        json.loads(text, object_pairs_hook=hook)
    except ValueError:
        return False
    return found


def _records(text: bytes) -> list[dict]:
    try:
        header = json.loads(text)
    except ValueError:
        return []
    if not isinstance(header, dict):
        return []
    return [r for k, r in header.items() if k != "__metadata__" and isinstance(r, dict)]


NOT_CARRIED = {"C64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2"}


def _shape_beyond_limits(shape: object) -> bool:
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        return False
    return len(shape) > MAX_DIMS or math.prod(d or 1 for d in shape) * 8 > MAX_DIM_PRODUCT


# Each safetensors row of DEVIATIONS: (recognises a header it applies to, what our refusal says).
SAFETENSORS_DEVIATIONS: dict[str, tuple[Callable[[bytes], bool], str]] = {
    "a key twice in one JSON object (a tensor name, a metadata key, a key of an ignored field)": (
        _pairs_with_duplicates, "appears twice in one object"),
    "dtype C64, F8_*, F6_*, F4": (
        lambda text: any(r.get("dtype") in NOT_CARRIED for r in _records(text)), "which convmigrate does not carry"),
    "more than 32 dims, or a dim product beyond 2^63 - 1 bytes (zero dims left out)": (
        lambda text: any(_shape_beyond_limits(r.get("shape")) for r in _records(text)), "MAX_DIM"),
}


def test_every_safetensors_deviation_row_has_a_predicate() -> None:
    rows = {d.case for d in DEVIATIONS if d.format == "safetensors"}
    assert rows == set(SAFETENSORS_DEVIATIONS)


def header_of(path: Path) -> bytes:
    data = path.read_bytes()
    if len(data) < 8:
        return b""
    return data[8 : 8 + int.from_bytes(data[:8], "little")]


def assert_agrees_with_library(path: Path) -> str:
    """Both read the same, both refuse, or a deviation row explains the difference."""
    library, mine = library_safetensors(path), ours(path)
    if isinstance(library, Read) and isinstance(mine, Read):
        assert mine == library, f"{path.name}: convmigrate {mine} != library {library}"
        return "both read"
    if isinstance(library, Refused) and isinstance(mine, Refused):
        return "both refuse"
    header = header_of(path)
    explained = [case for case, (applies, says) in SAFETENSORS_DEVIATIONS.items() if applies(header) and says in mine.message] if isinstance(mine, Refused) else []
    assert explained, f"{path.name}: library {library}, convmigrate {mine}; no DEVIATIONS row explains it\nheader: {header[:300]!r}"
    return f"deviation: {explained[0]}"


# --------------------------------------------------------------------------- building safetensors files

# Bits per element of every dtype the library knows (F4 and F6 pack elements below a byte).
LIBRARY_DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16,
    "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}
NAMES = ["w", "conv.weight", "", "a\nb", "\x1b[31mred", "名前", "nul\0in", "[/]", "__metadata", " ", "x" * 300]


def safetensors_bytes(header: dict | bytes, data: bytes, length_delta: int = 0) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header, ensure_ascii=False).encode()
    return struct.pack("<Q", max(0, len(text) + length_delta)) + text + data


@st.composite
def valid_files(draw: st.DrawFn) -> tuple[dict, bytes]:
    """A valid header (tensors of any library dtype, 0-d and empty included, data in any order) and its data."""
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=4))
    tensors = []
    for name in names:
        dtype = draw(st.sampled_from(sorted(LIBRARY_DTYPE_BITS)))
        shape = draw(st.lists(st.integers(0, 3), max_size=3))
        bits = math.prod(shape) * LIBRARY_DTYPE_BITS[dtype]
        if bits % 8:
            shape = [*shape, 2] if LIBRARY_DTYPE_BITS[dtype] == 4 else [*shape, 4]
            bits = math.prod(shape) * LIBRARY_DTYPE_BITS[dtype]
        tensors.append((name, dtype, shape, draw(st.binary(min_size=bits // 8, max_size=bits // 8))))
    order = draw(st.permutations(range(len(tensors))))
    header: dict = {}
    metadata = draw(st.one_of(st.none(), st.just("null"), st.dictionaries(st.sampled_from(["format", "note", "名", ""]), st.text(max_size=8), max_size=3)))
    if metadata == "null":
        header["__metadata__"] = None
    elif metadata is not None:
        header["__metadata__"] = metadata
    data, offset = b"", 0
    spans = {}
    for index in order:
        name, dtype, shape, raw = tensors[index]
        spans[name] = (offset, offset + len(raw))
        data, offset = data + raw, offset + len(raw)
    for name, dtype, shape, _ in tensors:  # header order need not be data order
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": list(spans[name])}
    return header, data


ODD_NUMBERS = [0, 1, -1, 2**31, 2**63, 2**64, 10**40, 10**41, 1.0, 1e400, True, None, "2", [1]]


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    """A valid file, then at most one structural change to one field (or none)."""
    header, data = draw(valid_files())
    names = [k for k in header if k != "__metadata__"]
    kind = draw(st.sampled_from([
        "none", "dtype", "dim", "shape", "offset", "offsets", "extra key", "drop key", "metadata", "duplicate",
        "whitespace", "trailing", "length", "data", "depth", "surrogate",
    ]))
    length_delta = 0
    if kind in ("dtype", "dim", "shape", "offset", "offsets", "extra key", "drop key", "duplicate") and not names:
        kind = "none"
    target = header[draw(st.sampled_from(names))] if names and kind != "none" else None
    if kind == "dtype":
        target["dtype"] = draw(st.sampled_from([*LIBRARY_DTYPE_BITS, "f32", "F128", "", 5, None, "BOOL "]))
    elif kind == "dim":
        shape = target["shape"]
        position = draw(st.integers(0, len(shape)))
        value = draw(st.sampled_from(ODD_NUMBERS))
        target["shape"] = shape[:position] + [value] + shape[position + 1 :]
    elif kind == "shape":
        target["shape"] = draw(st.sampled_from([[1] * 33, [0] * 33, [0, 2**63], [0, 2**62, 2**62], {}, "2", None, []]))
    elif kind == "offset":
        which = draw(st.integers(0, 1))
        target["data_offsets"][which] = target["data_offsets"][which] + draw(st.sampled_from([-1, 1, 8, 2**40])) if draw(st.booleans()) else draw(st.sampled_from(ODD_NUMBERS))
    elif kind == "offsets":
        target["data_offsets"] = draw(st.sampled_from([[0], [0, 0, 0], [], {}, target["data_offsets"][::-1]]))
    elif kind == "extra key":
        target[draw(st.sampled_from(["x", "offsets", "strides", "byteorder"]))] = draw(st.sampled_from([1, "big", [1, 2], {"a": 1}, 10**41, 1e300, None]))
    elif kind == "drop key":
        del target[draw(st.sampled_from(["dtype", "shape", "data_offsets"]))]
    elif kind == "metadata":
        header["__metadata__"] = draw(st.sampled_from([{"a": 1}, {"a": None}, ["a"], 3, "x", {"a": {"b": "c"}}, {"convmigrate.value.e": "3"}]))
    elif kind == "length":
        length_delta = draw(st.sampled_from([-1, 1, 8, -8, 2**40]))
    elif kind == "data":
        data = draw(st.sampled_from([data[:-1], data + b"\0", b""]))
    text = json.dumps(header, ensure_ascii=False).encode()
    if kind == "duplicate":
        first = text.index(b"{", 1)  # a tensor named twice: its record written again at the front
        name = json.dumps(names[0], ensure_ascii=False).encode()
        text = b"{" + name + b": " + json.dumps(header[names[0]]).encode() + b", " + text[1:]
        del first
    elif kind == "whitespace":
        text = draw(st.sampled_from([b" ", b"\n\t", b"\r\n "])) + text
    elif kind == "trailing":
        text = text + draw(st.sampled_from([b"   ", b"\0", b"\n", b"x", b",", b"}"]))
    elif kind == "depth":
        levels = draw(st.sampled_from([126, 127, 128, 200]))
        text = text[:-1] + (b", " if len(text) > 2 else b"") + b'"__x": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0], "n": ' + b"[" * levels + b"]" * levels + b"}}"
    elif kind == "surrogate":
        text = text[:-1] + (b", " if len(text) > 2 else b"") + draw(st.sampled_from([b'"\\ud800"', b'"\\udc00x"', b'"\\ud83d\\ude00"'])) + b': {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}}'
    return safetensors_bytes(text, data, length_delta)


@pytest.mark.parametrize("dtype", sorted(LIBRARY_DTYPE_BITS))
@pytest.mark.parametrize("shape", [[], [0], [2, 0, 3], [4], [2, 2, 2]], ids=str)
def test_every_library_dtype_and_shape(tmp_path: Path, dtype: str, shape: list[int]) -> None:
    bits = LIBRARY_DTYPE_BITS[dtype]
    count = math.prod(shape)
    if count * bits % 8:
        pytest.skip(f"{dtype} {shape} is not a whole number of bytes")
    data = bytes(range(256))[: count * bits // 8]
    path = tmp_path / "x.safetensors"
    path.write_bytes(safetensors_bytes({"t": {"dtype": dtype, "shape": shape, "data_offsets": [0, len(data)]}}, data))
    outcome = assert_agrees_with_library(path)
    assert outcome == ("deviation: dtype C64, F8_*, F6_*, F4" if dtype in NOT_CARRIED else "both read")


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=mutated_files())
def test_mutated_safetensors_agree_with_the_library(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / f"{uuid.uuid4().hex}.safetensors"
    path.write_bytes(data)
    try:
        event(assert_agrees_with_library(path))
    finally:
        path.unlink()


# Each safetensors deviation shown on one file: the library reads it, convmigrate refuses it.
DEVIATION_EXAMPLES: dict[str, bytes] = {
    "a key twice in one JSON object (a tensor name, a metadata key, a key of an ignored field)":
        safetensors_bytes(b'{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}', b"\1"),
    "dtype C64, F8_*, F6_*, F4": safetensors_bytes({"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, bytes(8)),
    "more than 32 dims, or a dim product beyond 2^63 - 1 bytes (zero dims left out)":
        safetensors_bytes({"w": {"dtype": "U8", "shape": [0, 2**63], "data_offsets": [0, 0]}}, b""),
}


@pytest.mark.parametrize("case", sorted(DEVIATION_EXAMPLES))
def test_each_safetensors_deviation_is_real(tmp_path: Path, case: str) -> None:
    path = tmp_path / "deviation.safetensors"
    path.write_bytes(DEVIATION_EXAMPLES[case])
    assert isinstance(library_safetensors(path), Read), "the library refuses it too: the row is not a deviation"
    assert assert_agrees_with_library(path) == f"deviation: {case}"


# --------------------------------------------------------------------------- .ckpt against MindSpore


# MindSpore runs in a process of its own: some hostile .ckpt files crash it (measured: content
# shorter than its dims, then an abort in its allocator at the next garbage collection).
MINDSPORE_ORACLE = r"""
import json, sys
import mindspore as ms
ms.set_context(device_target="CPU")
for line in sys.stdin:
    try:
        loaded = ms.load_checkpoint(line.strip())
        out = {}
        for name, param in loaded.items():
            if isinstance(param, (str, list)):
                out[name] = param
                continue
            data = param.data
            if str(param.dtype) == "BFloat16":
                data = data.view(ms.uint16)  # NumPy has no bfloat16: compare its bits
            try:
                raw = data.asnumpy().tobytes().hex()
            except ValueError:  # a Parameter NumPy cannot hold (more than 32 dims)
                raw = "not representable in NumPy"
            out[name] = [str(param.dtype), list(param.shape), raw]
        print(json.dumps({"read": out}), flush=True)
    except Exception as exc:
        print(json.dumps({"refused": f"{type(exc).__name__}: {exc}"}), flush=True)
"""


class MindSporeOracle:
    """mindspore.load_checkpoint in a child process, restarted after a crash."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def read(self, path: Path, *, alone: bool = False, alone_already: bool = False) -> Read | Refused:
        """`alone`: in a fresh process, closed afterwards (for a file that corrupts MindSpore's heap).
        A crash is retried alone, so it is charged to the file that causes it."""
        if alone:
            self.close()
            try:
                return self.read(path, alone_already=True)
            finally:
                self.close()
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                [sys.executable, "-c", MINDSPORE_ORACLE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True,
            )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{path}\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:  # it crashed: on this file, or later on a heap an earlier file corrupted
            self.process.wait()
            code = self.process.returncode
            self.process = None
            if not alone_already:
                return self.read(path, alone=True)
            return Refused(f"MindSpore crashed (exit {code})")
        answer = json.loads(line)
        if "refused" in answer:
            return Refused(answer["refused"])
        tensors, values = {}, {}
        for name, item in answer["read"].items():
            if isinstance(item, str):
                values[name] = item
            elif item and isinstance(item[0], str) and len(item) == 3 and isinstance(item[1], list):
                raw = bytes.fromhex(item[2]) if item[2] != "not representable in NumPy" else item[2].encode()
                tensors[name] = (item[0], tuple(item[1]), raw)
            else:  # a value with neither tensor nor maptensor: MindSpore gives []
                values[name] = item
        return Read(tensors, {f"value.{k}": v for k, v in values.items()})

    def close(self) -> None:
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout=60)
            self.process = None


@pytest.fixture(scope="module")
def mindspore_oracle(ms) -> Iterator[MindSporeOracle]:  # takes `ms`: the test is marked mindspore
    oracle = MindSporeOracle()
    yield oracle
    oracle.close()


def _ours_ckpt(path: Path) -> Read | Refused:
    read = ours(path, code=lambda t: t.dtype.mindspore)
    if isinstance(read, Refused):
        return read
    return Read(read.tensors, {k.removeprefix("convmigrate."): json.loads(v) for k, v in read.metadata.items()})


MS_TYPES = ["Float16", "BFloat16", "Float32", "Float64", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Bool"]
MS_ITEMSIZE = {"Float16": 2, "BFloat16": 2, "Float32": 4, "Float64": 8, "Int8": 1, "Int16": 2, "Int32": 4, "Int64": 8,
               "UInt8": 1, "UInt16": 2, "UInt32": 4, "UInt64": 8, "Bool": 1}


def tensor_proto(dims: list[int], tensor_type: str, content: bytes, *, packed: bool = False, reordered: bool = False) -> bytes:
    encoded_dims = field(1, b"".join(varint(d) for d in dims)) if packed and dims else b"".join(varint(1 << 3) + varint(d) for d in dims)
    parts = [encoded_dims, field(2, tensor_type.encode()), field(3, content)]
    return b"".join(parts[::-1] if reordered else parts)


def value_field(tag: str, tensor: bytes, *extra: bytes) -> bytes:
    return field(1, field(1, tag.encode()) + field(2, tensor) + b"".join(extra))


@st.composite
def valid_ckpt_values(draw: st.DrawFn) -> list[tuple[str, list[int], str, bytes]]:
    names = draw(st.lists(st.sampled_from(["w", "conv.weight", "", "a\nb", "\x1b[31m", "名", "nul\0", "[/]"]), unique=True, min_size=1, max_size=3))
    values = []
    for name in names:
        tensor_type = draw(st.sampled_from([*MS_TYPES, "str"]))
        if tensor_type == "str":
            values.append((name, [0], "str", draw(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), min_size=1, max_size=5)).encode("utf-32-le")))
            continue
        dims = draw(st.lists(st.integers(0, 3), max_size=3))
        if dims == [0]:  # MindSpore reads dims [0] as a scalar: the "dims [0] with no content" row
            dims = [1]
        size = math.prod(dims) * MS_ITEMSIZE[tensor_type]
        content = draw(st.binary(min_size=size, max_size=size))
        if tensor_type == "Bool":
            content = bytes(b & 1 for b in content)  # MindSpore reads bool bytes as 0 / 1
        values.append((name, dims, tensor_type, content))
    return values


# Mutations of one value, each with the DEVIATIONS row it may show (None: the readers must agree).
CKPT_MUTATIONS = {
    "none": None, "packed dims": None, "fields reordered": None, "tag twice": None, "tensor twice": None,
    "split in two": None, "bad tensor_type": None, "bad UTF-8 tag": None, "truncated": None, "crc right": None,
    "33 dims": "more than 32 dims", "content longer": "content longer or shorter than its dims need",
    "content shorter": "content longer or shorter than its dims need", "dims [0], no content": "dims [0] with no content",
    "unknown field": "a protobuf field MindSpore's schema does not have (e.g. TensorProto field 4)",
    "no tensor": "a value with neither tensor nor maptensor", "no tag": "a value with no tag",
    "crc wrong": "a CRC tail (b'crc_num' + 10 bytes) that does not match",
    "tag again later": "the same tag again after other values",
    "split parts disagree": "the parts of a split tensor disagree on dims",
    "str split": "a str value split over several values",
    "only a CRC tail": "no values at all (only a CRC tail)",
}


# MindSpore builds these tensors past the end of the bytes they have (a scalar of no bytes
# too): its process aborts later, at
# some garbage collection. These files are read by a MindSpore process of their own.
HEAP_CORRUPTING = {"content shorter", "dims [0], no content"}


def test_every_ckpt_deviation_row_is_generated() -> None:
    rows = {d.case for d in DEVIATIONS if d.format == ".ckpt"}
    assert rows == {row for row in CKPT_MUTATIONS.values() if row is not None}


def ckpt_file(values: list[tuple[str, list[int], str, bytes]], mutation: str) -> bytes:
    """The values as a .ckpt, the first one changed by `mutation`."""
    (tag, dims, tensor_type, content), rest = values[0], values[1:]
    tail = b"".join(value_field(*v[:1], tensor_proto(*v[1:])) for v in rest)
    item = MS_ITEMSIZE.get(tensor_type, 4)
    first = {
        "packed dims": lambda: value_field(tag, tensor_proto(dims, tensor_type, content, packed=True)),
        "fields reordered": lambda: value_field(tag, tensor_proto(dims, tensor_type, content, reordered=True)),
        "tag twice": lambda: field(1, field(1, b"old") + field(1, tag.encode()) + field(2, tensor_proto(dims, tensor_type, content))),
        "tensor twice": lambda: field(1, field(1, tag.encode()) + field(2, b"".join(varint(8) + varint(d) for d in dims))
                                     + field(2, field(2, tensor_type.encode()) + field(3, content))),
        "split in two": lambda: value_field(tag, tensor_proto(dims, tensor_type, content[: len(content) // item // 2 * item]))
                                + value_field(tag, tensor_proto(dims, tensor_type, content[len(content) // item // 2 * item :]))
                                if tensor_type != "str" else value_field(tag, tensor_proto(dims, tensor_type, content)),
        "str split": lambda: value_field(tag, tensor_proto([0], "str", "ab".encode("utf-32-le")))
                             + value_field(tag, tensor_proto([0], "str", "c".encode("utf-32-le"))),
        "bad tensor_type": lambda: value_field(tag, tensor_proto(dims, tensor_type.lower() + "x", content)),
        "bad UTF-8 tag": lambda: field(1, field(1, tag.encode() + b"\xff") + field(2, tensor_proto(dims, tensor_type, content))),
        "33 dims": lambda: value_field(tag, tensor_proto([1] * 33, "Int8", b"\1")),
        "content longer": lambda: value_field(tag, tensor_proto(dims or [1], tensor_type, content + bytes(item))),
        "content shorter": lambda: value_field(tag, tensor_proto([*dims, 2], tensor_type, content)),
        "dims [0], no content": lambda: value_field(tag, tensor_proto([0], tensor_type, b"")),
        "unknown field": lambda: value_field(tag, tensor_proto(dims, tensor_type, content) + b"\x20\x01"),
        "no tensor": lambda: field(1, field(1, tag.encode())),
        "no tag": lambda: field(1, field(2, tensor_proto(dims, tensor_type, content))),
        "split parts disagree": lambda: value_field(tag, tensor_proto([2], "Int8", b"\1")) + value_field(tag, tensor_proto([1, 2], "Int8", b"\2")),
    }.get(mutation, lambda: value_field(tag, tensor_proto(dims, tensor_type, content)))()
    data = first + tail
    if mutation == "tag again later":
        data += value_field(tag, tensor_proto([1], "Int8", b"\3"))
    if mutation == "truncated":
        data = data[:-1]
    if mutation == "crc right":
        data = with_crc(data)
    if mutation == "crc wrong":
        data += b"crc_num" + bytes(10)
    if mutation == "only a CRC tail":
        data = with_crc(b"")
    return data


def assert_agrees_with_mindspore(oracle: MindSporeOracle, path: Path, deviation: str | None) -> str:
    library, mine = oracle.read(path), _ours_ckpt(path)
    if isinstance(library, Read) and mine == library:
        return "both read"
    if isinstance(library, Refused) and isinstance(mine, Refused):
        return "both refuse"
    assert deviation is not None, f"{path.name}: MindSpore {library}, convmigrate {mine}; no DEVIATIONS row explains it"
    return f"deviation: {deviation}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(values=valid_ckpt_values(), mutation=st.sampled_from(sorted(set(CKPT_MUTATIONS) - HEAP_CORRUPTING)))
def test_mutated_ckpt_agree_with_mindspore(mindspore_oracle: MindSporeOracle, tmp_path: Path, values: list, mutation: str) -> None:
    path = tmp_path / f"{uuid.uuid4().hex}.ckpt"
    path.write_bytes(ckpt_file(values, mutation))
    try:
        event(assert_agrees_with_mindspore(mindspore_oracle, path, CKPT_MUTATIONS[mutation]))
    finally:
        path.unlink()


@pytest.mark.parametrize("mutation", sorted(m for m, row in CKPT_MUTATIONS.items() if row is not None))
def test_each_ckpt_deviation_is_real(mindspore_oracle: MindSporeOracle, tmp_path: Path, mutation: str) -> None:
    """On a plain Float32 tensor each row's file is read differently (or only) by one side."""
    path = tmp_path / "deviation.ckpt"
    path.write_bytes(ckpt_file([("w", [2], "Float32", bytes(8)), ("v", [1], "Int8", b"\1")], mutation))
    library, mine = mindspore_oracle.read(path, alone=mutation in HEAP_CORRUPTING), _ours_ckpt(path)
    assert library != mine and (isinstance(library, Read) or isinstance(mine, Read)), f"{mutation}: MindSpore {library}, convmigrate {mine}"
