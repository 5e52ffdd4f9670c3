"""MindSpore `.ckpt` files, read and written by hand, streaming and bit-exact.

A `.ckpt` is protobuf (proto2), but we never need the protobuf library or MindSpore: the
schema is three tiny messages, and walking them ourselves lets us read only the headers and
serve each tensor's bytes from the file when asked for, instead of parsing the whole file into
memory (MindSpore's own loader reads it all and is capped at 2 GB by protobuf).

    Checkpoint  { repeated Value value = 1; }
    Value       { required string tag = 1; TensorProto tensor = 2; MapTensorProto maptensor = 3; }
    TensorProto { repeated int64 dims = 1; required string tensor_type = 2;
                  required bytes tensor_content = 3; }

save_checkpoint writes one `value` field per tensor; the file is their concatenation (which
is itself one Checkpoint message). A Float32 tensor "w" of shape (3,):

    0A 1E | 0A 01 'w' | 12 19 | 08 03 | 12 07 'Float32' | 1A 0C <12 content bytes>
    value   tag         tensor  dims    tensor_type      tensor_content
    (key, varint length, payload; key = field_number << 3 | wire_type)

Measured on MindSpore 2.10 (tests/test_ckpt_format.py re-checks each point):
- A tensor over 512 MiB is written as several consecutive Values with the same tag and the
  full dims. The usual (synchronous) save cuts its raw bytes into 512 MiB pieces, the last one
  shorter; we write the same. async_save uses numpy.array_split along axis 0 instead. Either
  way the reader just joins consecutive same-tag contents.
- `crc_check=True` appends b"crc_num" + CRC-32 of all bytes before it, 10 bytes big-endian.
- Scalars have no dims (MindSpore 1.x wrote dims [0]; its loader still maps [0] to a scalar).
- `str` values: tensor_type "str", dims [0], content UTF-32-LE as NumPy's 'U' dtype stores
  it (an empty string is 4 NUL bytes; trailing NULs are dropped when read).
- Python int / float / bool values become Int64 / Float32 / Bool scalars. We write floats as
  Float64 instead, so the value survives exactly; MindSpore loads either.
- save_checkpoint([]) writes an empty file (or only the CRC tail; we always write the tail,
  because detection refuses a 0-byte file as damaged), and silently drops
  zero-size tensors; we write those as one Value with empty content, which MindSpore loads
  (except shape (0,): its loader turns dims [0] into a scalar).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NoReturn

import numpy as np

from convmigrate.entries import COPY_PIECE_BYTES, Checkpoint, Entry, TensorEntry, ValueEntry
from convmigrate.errors import UnreadableCheckpointError, WriteError
from convmigrate.formats.bytecopy import TensorBytesWriter
from convmigrate.formats.input_file import InputFile, open_input
from convmigrate.limits import MAX_DIMS, MAX_ENTRIES, shape_problem
from convmigrate.vocab import BY_MINDSPORE, DTYPES, MINDSPORE_SPLIT_BYTES, DType, Format

# Protobuf wire types that occur in a checkpoint; the others (fixed32/64, groups) never do.
VARINT, LEN = 0, 2
MAX_VARINT_BYTES = 10
# Field numbers: Checkpoint.value; Value.tag/tensor/maptensor; TensorProto.dims/type/content.
VALUE = 1
TAG, TENSOR, MAPTENSOR = 1, 2, 3
DIMS, TENSOR_TYPE, CONTENT = 1, 2, 3

# A .ckpt is a sequence of `Checkpoint.value` fields: tag 0x0A (field 1, length-delimited),
# then a varint length, then the Value's own field 1 (its name), tag 0x0A again.
CKPT_FIELD_TAG = 0x0A
CRC_TAIL_MARK = b"crc_num"
CRC_TAIL_BYTES = len(CRC_TAIL_MARK) + 10
# save_checkpoint(..., enc_key=...) opens the file with the little-endian magic 0x7F3A5ED8 plus
# the enc_mode's index (measured on MindSpore 2.10: AES-GCM D8, AES-CBC D9, SM4-CBC DA).
ENCRYPTED_CKPT_MAGICS = tuple(bytes([low]) + b"\x5e\x3a\x7f" for low in (0xD8, 0xD9, 0xDA))
_DECRYPT_ADVICE = ("load it with mindspore.load_checkpoint(path, dec_key=..., dec_mode=...) and save it again "
                   "without enc_key")
STR_TYPE = "str"
# Plain Python values stored as 0-d tensors (bool first: it is a subclass of int).
VALUE_DTYPES: tuple[tuple[type, DType], ...] = (
    (bool, DTYPES["bool"]),
    (int, DTYPES["int64"]),
    (float, DTYPES["float64"]),
)


def _key(number: int, wire: int) -> bytes:
    return bytes([number << 3 | wire])


def _varint(number: int) -> bytes:
    """Protobuf's base-128 varint: 7 bits a byte, low bits first, high bit = more follow."""
    out = bytearray()
    while number > 0x7F:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _len_prefix(number: int, length: int) -> bytes:
    """The key and length of a length-delimited field whose payload follows."""
    return _key(number, LEN) + _varint(length)


# --------------------------------------------------------------------------- detecting


def looks_like_ckpt(head: bytes) -> bool:
    """A Checkpoint.value field whose payload starts with the Value's tag field."""
    if len(head) < 3 or head[0] != CKPT_FIELD_TAG:
        return False
    position = 1
    while position < len(head) and head[position] & 0x80:  # skip the length varint
        position += 1
    return position + 1 < len(head) and head[position + 1] == CKPT_FIELD_TAG


def sniff(path: Path, head: bytes) -> bool:
    """A protobuf checkpoint (or a CRC-tail-only empty one); an encrypted one is refused here.

    Detection asks this sniffer last, so a `.ckpt` that nothing recognised gets MindSpore's advice.
    """
    if looks_like_ckpt(head) or head.startswith(CRC_TAIL_MARK):
        return True
    if head.startswith(ENCRYPTED_CKPT_MAGICS):
        raise UnreadableCheckpointError(path, f"is an encrypted MindSpore checkpoint (saved with enc_key); {_DECRYPT_ADVICE}")
    if path.suffix == ".ckpt":
        raise UnreadableCheckpointError(
            path, f"is not a protobuf MindSpore checkpoint; if it was saved with enc_key, {_DECRYPT_ADVICE}"
        )
    return False


# --------------------------------------------------------------------------- reading


@dataclass
class _Value:
    """One serialized Value: a whole tensor, or one piece of a split tensor."""

    offset: int
    tag: str | None = None
    dims: list[int] = field(default_factory=list)
    tensor_type: str | None = None
    content: tuple[int, int] | None = None  # byte range of tensor_content in the file


class _FileBytes:
    """A file's bytes by index and slice, read with pread through one cached block.

    The walk reads only the few bytes before each tensor's content. Through the memory map,
    each of those reads faulted ~64 KiB around it into the process: +70 MiB of peak RSS for
    the 4 000 values of a 2 GB checkpoint, though the contents were never touched.
    """

    BLOCK = 4096

    def __init__(self, mapped: InputFile) -> None:
        self.file, self.size = mapped, mapped.size
        self.start, self.block = 0, b""

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: int | slice) -> int | bytes:
        if isinstance(key, slice):
            start, stop, _ = key.indices(self.size)
            if self.start <= start and stop <= self.start + len(self.block):
                return self.block[start - self.start : stop - self.start]
            return self.file.read_at(start, max(0, stop - start))
        if not self.start <= key < self.start + len(self.block):
            self.start, self.block = key, self.file.read_at(key, self.BLOCK)
        return self.block[key - self.start]


class _Walker:
    """Walks the protobuf fields of a .ckpt, failing with one clear line."""

    def __init__(self, path: Path, file: InputFile, end: int) -> None:
        self.path, self.file, self.data, self.end = path, file, _FileBytes(file), end

    def fail(self, at: int, problem: str, damaged: bool = True) -> NoReturn:
        verdict = "; the file is damaged" if damaged else ""
        raise UnreadableCheckpointError(self.path, f"{problem} (at byte {at}){verdict}")

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        """The varint at `pos` and the position after it (decoded from the cached block: a
        call per byte cost ~45% of opening a checkpoint of 4 000 tensors)."""
        data, limit = self.data, min(end, pos + MAX_VARINT_BYTES)
        if not data.start <= pos or limit > data.start + len(data.block):
            data[pos]  # loads the block that starts at pos
        block, base, result = data.block, data.start, 0
        for index in range(pos - base, min(limit - base, len(block))):
            byte = block[index]
            result |= (byte & 0x7F) << (7 * (index + base - pos))
            if not byte & 0x80:
                return result & (1 << 64) - 1, index + base + 1
        if end - pos < MAX_VARINT_BYTES:
            self.fail(pos, "truncated: a number runs past the end of its message")
        self.fail(pos, f"bad varint: longer than {MAX_VARINT_BYTES} bytes")

    def fields(self, start: int, end: int, message: str) -> Iterator[tuple[int, int, object, int]]:
        """(field number, wire type, value or payload range, offset) for each field."""
        pos = start
        while pos < end:
            at = pos
            key, pos = self.varint(pos, end)
            number, wire = key >> 3, key & 7
            if wire == VARINT:
                value, pos = self.varint(pos, end)
            elif wire == LEN:
                length, pos = self.varint(pos, end)
                if length > end - pos:
                    self.fail(at, f"truncated: a field of a {message} message needs {length} bytes, only {end - pos} remain")
                value, pos = (pos, pos + length), pos + length
            else:
                self.unexpected(number, wire, at, message)
            yield number, wire, value, at

    def unexpected(self, number: int, wire: int, at: int, message: str) -> NoReturn:
        self.fail(at, f"field {number} with wire type {wire} cannot belong to a {message} message of a MindSpore checkpoint")

    def text(self, span: tuple[int, int], at: int, what: str) -> str:
        try:
            return self.data[span[0] : span[1]].decode("utf-8")
        except UnicodeDecodeError:
            self.fail(at, f"the {what} is not valid UTF-8")

    def values(self) -> list[_Value]:
        if self.end and not looks_like_ckpt(self.data[: min(64, self.end)]):
            raise UnreadableCheckpointError(
                self.path,
                f"does not start like a protobuf MindSpore checkpoint; if it was saved with enc_key it is "
                f"encrypted: {_DECRYPT_ADVICE}",
            )
        values = []
        for number, wire, span, at in self.fields(0, self.end, "Checkpoint"):
            if (number, wire) != (VALUE, LEN):
                self.unexpected(number, wire, at, "Checkpoint")
            if len(values) == MAX_ENTRIES:  # counted as they are read: memory stays bounded
                self.fail(at, f"more than {MAX_ENTRIES:,} values (MAX_ENTRIES)", damaged=False)
            values.append(self.value(span, at))
        return values

    def value(self, span: tuple[int, int], at: int) -> _Value:
        record = _Value(at)
        for number, wire, item, field_at in self.fields(*span, "Value"):
            if (number, wire) == (TAG, LEN):
                record.tag = self.text(item, field_at, "tag (tensor name)")
            elif (number, wire) == (TENSOR, LEN):
                self.tensor(item, record)
            elif (number, wire) == (MAPTENSOR, LEN):
                self.fail(field_at, "holds a MapParameter (maptensor), which convmigrate cannot read", damaged=False)
            else:
                self.unexpected(number, wire, field_at, "Value")
        if record.tag is None:
            self.fail(at, "a value has no tag (tensor name)")
        if record.tensor_type is None or record.content is None:
            self.fail(at, f"value {record.tag!r} has no tensor_type or no tensor_content")
        return record

    def tensor(self, span: tuple[int, int], record: _Value) -> None:
        """Fill `record` from a TensorProto (merging, as protobuf does if one appears twice)."""
        for number, wire, item, at in self.fields(*span, "TensorProto"):
            if (number, wire) == (DIMS, VARINT):
                self.add_dim(record, item, at)
            elif (number, wire) == (DIMS, LEN):  # packed encoding: legal protobuf, never written
                pos = item[0]
                while pos < item[1]:
                    dim, pos = self.varint(pos, item[1])
                    self.add_dim(record, dim, at)
            elif (number, wire) == (TENSOR_TYPE, LEN):
                record.tensor_type = self.text(item, at, "tensor_type")
            elif (number, wire) == (CONTENT, LEN):
                record.content = item
            else:
                self.unexpected(number, wire, at, "TensorProto")

    def add_dim(self, record: _Value, dim: int, at: int) -> None:
        """Append one dim, refusing the (MAX_DIMS + 1)-th at once: claimed dims cost no work."""
        if len(record.dims) == MAX_DIMS:
            self.fail(at, f"a tensor has more than {MAX_DIMS} dims (MAX_DIMS)")
        record.dims.append(_int64(dim))

    def entries(self) -> list[Entry]:
        """Group consecutive same-tag values (one split tensor) into entries, in file order."""
        groups: list[list[_Value]] = []
        first_seen: dict[str, int] = {}
        for value in self.values():
            if groups and groups[-1][0].tag == value.tag:
                groups[-1].append(value)
                continue
            if value.tag in first_seen:
                self.fail(
                    value.offset,
                    f"tag {value.tag!r} appears again after other values (first at byte "
                    f"{first_seen[value.tag]}); the parts of a split tensor must be adjacent",
                )
            first_seen[value.tag] = value.offset
            groups.append([value])
        return [self.entry(parts) for parts in groups]

    def entry(self, parts: list[_Value]) -> Entry:
        first = parts[0]
        tag, tensor_type = first.tag, first.tensor_type
        for part in parts[1:]:
            if (part.dims, part.tensor_type) != (first.dims, tensor_type):
                self.fail(part.offset, f"the parts of split tensor {tag!r} disagree on dims or tensor_type")
        spans = [part.content for part in parts]
        size = sum(stop - start for start, stop in spans)
        if tensor_type == STR_TYPE:
            if len(parts) > 1:  # MindSpore never splits one; its loader would keep a piece of it
                self.fail(parts[1].offset, f"str value {tag!r} is split over {len(parts)} values")
            return ValueEntry(tag, self.utf32(spans, first.offset, tag))
        dtype = BY_MINDSPORE.get(tensor_type)
        if dtype is None:
            known = ", ".join([*BY_MINDSPORE, STR_TYPE])
            problem = f"tensor {tag!r} has tensor_type {tensor_type!r}, which convmigrate cannot read (known: {known})"
            self.fail(first.offset, problem, damaged=False)
        if any(dim < 0 for dim in first.dims):
            self.fail(first.offset, f"tensor {tag!r} has a negative dimension in dims {first.dims} (a dim of 2^63 or more reads as negative)")
        problem = shape_problem(first.dims, dtype.itemsize)
        if problem is not None:
            self.fail(first.offset, f"tensor {tag!r}: dims {first.dims} of {tensor_type} claim {problem}")
        shape = tuple(first.dims)
        if shape == (0,) and size == dtype.itemsize:
            shape = ()  # MindSpore 1.x wrote scalars with dims [0]; its loader still reads them so
        needed = math.prod(shape) * dtype.itemsize  # a Python int: absurd dims allocate nothing
        described = f"dims {first.dims} of {tensor_type}"
        if needed > len(self.data):
            self.fail(first.offset, f"tensor {tag!r}: {described} would need {needed} bytes, more than the whole file")
        if needed != size:
            self.fail(first.offset, f"tensor {tag!r}: content is {size} bytes but {described} need {needed}")
        return TensorEntry(tag, dtype, shape, self.file.spans([(start, stop - start) for start, stop in spans]))

    def utf32(self, spans: list[tuple[int, int]], at: int, tag: str) -> str:
        """A `str` value as MindSpore returns it: NumPy 'U' (UTF-32-LE), trailing NULs dropped."""
        raw = b"".join(self.data[start:stop] for start, stop in spans)
        try:
            return raw.decode("utf-32-le").rstrip("\x00")
        except UnicodeDecodeError:
            self.fail(at, f"str value {tag!r} is not UTF-32 text ({len(raw)} bytes)")


def _int64(value: int) -> int:
    """A varint's 64 bits read as a signed int64 (negative numbers take all ten bytes)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _end_without_crc(path: Path, file: InputFile) -> int:
    """Where the protobuf ends: before a verified CRC tail, or at the end of the file.

    Like MindSpore's loader, a file whose bytes [-17:-10] are b"crc_num" has a tail.
    """
    size = file.size
    end = size - CRC_TAIL_BYTES
    if end < 0 or file[end : end + len(CRC_TAIL_MARK)] != CRC_TAIL_MARK:
        return size
    stored = int.from_bytes(file[end + len(CRC_TAIL_MARK) : size], "big")
    computed = 0
    for piece in file.spans([(0, end)]).pieces(0, end, COPY_PIECE_BYTES):
        computed = zlib.crc32(piece, computed)
    if computed != stored:
        raise UnreadableCheckpointError(
            path, f"the CRC does not match (stored {stored:#010x}, computed {computed:#010x}): the file is damaged"
        )
    return end


def read_ckpt(path: Path) -> Checkpoint:
    """Open a MindSpore .ckpt lazily: each tensor's bytes are read from the file when asked for.

    Raises UnreadableCheckpointError naming the problem for a damaged or foreign file.
    """
    path = Path(path)
    file = open_input(path)
    if not file.size:  # save_checkpoint([]) writes an empty file
        file.close()
        return Checkpoint(Format.CKPT, [])
    try:
        entries = _Walker(path, file, _end_without_crc(path, file)).entries()
    except BaseException:
        file.close()
        raise
    checkpoint = Checkpoint(Format.CKPT, entries)
    checkpoint.add_closer(file.close)
    return checkpoint


# --------------------------------------------------------------------------- writing


def _value_header(tag: bytes, dims: Sequence[int], tensor_type: bytes, content_length: int) -> bytes:
    """One serialized Value up to its tensor_content, byte for byte as protobuf writes it.

    The content follows unchanged, so only its length is needed up front.
    """
    tensor = b"".join(_key(DIMS, VARINT) + _varint(dim) for dim in dims)
    tensor += _len_prefix(TENSOR_TYPE, len(tensor_type)) + tensor_type + _len_prefix(CONTENT, content_length)
    value = _len_prefix(TAG, len(tag)) + tag + _len_prefix(TENSOR, len(tensor) + content_length) + tensor
    return _len_prefix(VALUE, len(value) + content_length) + value


class _Output:
    """The stream plus the running CRC-32 of everything written, for MindSpore's tail."""

    def __init__(self, stream: BinaryIO, crc: bool) -> None:
        self.stream, self.with_crc, self.crc = stream, crc, 0
        self.tensor_bytes = TensorBytesWriter(stream)

    def write(self, data: bytes | memoryview) -> None:
        self.stream.write(data)
        if self.with_crc:
            self.crc = zlib.crc32(data, self.crc)

    def write_tensor_bytes(self, entry: TensorEntry, start: int, stop: int, on_bytes: Callable[[int], None] | None) -> None:
        """Tensor content [start, stop): copied by the kernel where it lies in an input file."""
        crc = self.tensor_bytes.write_entry(entry, start, stop, crc=self.crc if self.with_crc else None, on_bytes=on_bytes)
        if self.with_crc:
            assert crc is not None
            self.crc = crc


def _encode_value(entry: ValueEntry) -> tuple[list[int], str, bytes]:
    """dims, tensor_type and content of a plain value, as save_checkpoint's append_dict stores it."""
    value = entry.value
    if isinstance(value, str):
        if value.endswith("\x00"):
            raise WriteError(f"{entry.name}: a str ending in NUL cannot be stored; MindSpore drops trailing NULs")
        try:
            return [0], STR_TYPE, value.encode("utf-32-le") or bytes(4)  # NumPy stores '' as one NUL
        except UnicodeEncodeError as exc:
            raise WriteError(f"{entry.name}: the str value cannot be stored as UTF-32 ({exc.reason})") from exc
    for python_type, dtype in VALUE_DTYPES:
        if isinstance(value, python_type):
            try:
                return [], dtype.mindspore, np.array(value, dtype=dtype.numpy).tobytes()
            except OverflowError as exc:
                raise WriteError(f"{entry.name}: {value} does not fit in {dtype.name}") from exc
    raise WriteError(f"{entry.name}: a {type(value).__name__} value cannot be stored in a .ckpt")


def _write_tensor(
    out: _Output, tag: bytes, entry: TensorEntry, split_bytes: int, on_bytes: Callable[[int], None] | None
) -> None:
    """Stream a tensor as one Value, or as several of at most `split_bytes` content bytes each.

    Pieces hold whole elements, so readers that decode each piece on its own also work.
    """
    itemsize = entry.dtype.itemsize
    step = max(itemsize, split_bytes - split_bytes % itemsize)
    lengths = [min(step, entry.nbytes - start) for start in range(0, entry.nbytes, step)] or [0]
    tensor_type = entry.dtype.mindspore.encode()
    start = 0
    for length in lengths:
        out.write(_value_header(tag, entry.shape, tensor_type, length))
        out.write_tensor_bytes(entry, start, start + length, on_bytes)
        start += length


def write_ckpt(
    stream: BinaryIO,
    entries: Sequence[Entry],
    *,
    metadata: dict[str, str],
    on_bytes: Callable[[int], None] | None = None,
    crc: bool = False,
    split_bytes: int = MINDSPORE_SPLIT_BYTES,
) -> None:
    """Write `entries` as a .ckpt that mindspore.load_checkpoint reads, one tensor at a time.

    Tensor bytes go from each entry's source straight to `stream` (file to file where they can). `metadata` is ignored: the
    format has no place for it. `crc` appends MindSpore's CRC tail (load_checkpoint's
    crc_check=True verifies it). `on_bytes(n)` is called after each piece of tensor bytes.
    """
    del metadata
    if split_bytes < 1:
        raise ValueError(f"split_bytes must be positive, not {split_bytes}")
    out = _Output(stream, crc)
    names: set[str] = set()
    for entry in entries:
        if entry.name in names:
            raise WriteError(f"{entry.name}: two entries have this name; a .ckpt holds each name once")
        names.add(entry.name)
        try:
            tag = entry.name.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise WriteError(f"{entry.name!r}: the name is not valid Unicode ({exc.reason})") from exc
        if isinstance(entry, ValueEntry):
            dims, tensor_type, content = _encode_value(entry)
            out.write(_value_header(tag, dims, tensor_type.encode(), len(content)) + content)
        else:
            _write_tensor(out, tag, entry, split_bytes, on_bytes)
    if crc or not names:  # an empty checkpoint gets its tail: a 0-byte file is refused as damaged
        stream.write(CRC_TAIL_MARK + out.crc.to_bytes(10, "big"))
