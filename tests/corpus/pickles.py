"""Hand-assembled pickles and torch.save containers, for hostile and exotic torch files.

Independent of convmigrate's own writers and of torch, so a reader bug cannot hide behind a
writer with the same bug, and the corpus builds its files where torch is not installed. Each
helper returns the opcodes of one value; `state_dict` / `tensor` give what torch.save writes.

    pt_file(folder / "x.pt", state_dict({"w": tensor("0", "FloatStorage", (2, 3))}),
            {"0": bytes(24)})
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

PROTO2 = b"\x80\x02"
MARK, STOP, POP, DUP = b"(", b".", b"0", b"2"
NONE, TRUE, FALSE = b"N", b"\x88", b"\x89"
EMPTY_TUPLE, EMPTY_LIST, EMPTY_DICT = b")", b"]", b"}"
TUPLE, LIST, DICT = b"t", b"l", b"d"
TUPLE1, TUPLE2, TUPLE3 = b"\x85", b"\x86", b"\x87"
APPEND, APPENDS, SETITEM, SETITEMS = b"a", b"e", b"s", b"u"
REDUCE, BUILD, NEWOBJ, BINPERSID = b"R", b"b", b"\x81", b"Q"
MEMOIZE = b"\x94"

# torch's legacy (pre-1.6) torch.save: this LONG1 opens the file, then protocol version 1001.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001


def integer(value: int) -> bytes:
    """The shortest opcode for `value`, as pickle writes it (LONG1/LONG4 past 32 bits)."""
    if 0 <= value < 0x100:
        return b"K" + bytes([value])
    if 0 <= value < 0x10000:
        return b"M" + struct.pack("<H", value)
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    encoded = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    if len(encoded) < 256:
        return b"\x8a" + bytes([len(encoded)]) + encoded
    return b"\x8b" + struct.pack("<i", len(encoded)) + encoded


def text(value: str) -> bytes:
    encoded = value.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(encoded)) + encoded


def float_(value: float) -> bytes:
    return b"G" + struct.pack(">d", value)


def glob(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def put(index: int) -> bytes:
    return b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index)


def get(index: int) -> bytes:
    return b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index)


def tuple_of(*items: bytes) -> bytes:
    if not items:
        return EMPTY_TUPLE
    if len(items) <= 3:
        return b"".join(items) + (TUPLE1, TUPLE2, TUPLE3)[len(items) - 1]
    return MARK + b"".join(items) + TUPLE


def ints(values: tuple[object, ...]) -> bytes:
    """A tuple of numbers (or of anything a test puts in a shape)."""
    return tuple_of(*(value_of(v) for v in values))


def value_of(value: object) -> bytes:
    if value is None:
        return NONE
    if value is True or value is False:
        return TRUE if value else FALSE
    if isinstance(value, int):
        return integer(value)
    if isinstance(value, float):
        return float_(value)
    if isinstance(value, str):
        return text(value)
    if isinstance(value, tuple):
        return ints(value)
    if isinstance(value, bytes):
        return value  # already opcodes
    raise TypeError(type(value).__name__)


def call(function: bytes, *args: bytes) -> bytes:
    """function(*args) at load time (REDUCE)."""
    return function + tuple_of(*args) + REDUCE


def ordered_dict(items: dict[str, bytes] | list[tuple[bytes, bytes]]) -> bytes:
    """collections.OrderedDict() then SETITEMS, as torch.save writes a state dict."""
    pairs = items.items() if isinstance(items, dict) else items
    body = b"".join((text(k) if isinstance(k, str) else k) + v for k, v in pairs)
    return call(glob("collections", "OrderedDict")) + (MARK + body + SETITEMS if body else b"")


def plain_dict(items: dict[str, bytes]) -> bytes:
    return EMPTY_DICT + MARK + b"".join(text(k) + v for k, v in items.items()) + SETITEMS if items else EMPTY_DICT


def storage(key: str, storage_class: str, numel: int, location: str = "cpu") -> bytes:
    """The persistent id of a zip record: ("storage", torch.<class>, key, location, numel)."""
    return MARK + text("storage") + glob("torch", storage_class) + text(key) + text(location) + integer(numel) + TUPLE + BINPERSID


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def tensor(key: str, storage_class: str, shape: tuple | bytes, stride: tuple | bytes | None = None, offset: int = 0,
           numel: int | None = None, storage_op: bytes | None = None) -> bytes:
    """torch._utils._rebuild_tensor_v2(storage, offset, shape, stride, False, OrderedDict()).

    `shape` and `stride` may be raw opcodes (bytes) for a test that builds them itself.
    """
    if numel is None:
        numel = 1
        for size in shape if isinstance(shape, tuple) else ():
            numel *= size if isinstance(size, int) and size > 0 else 1
    if stride is None:
        dims = shape if isinstance(shape, tuple) else ()
        stride = contiguous_strides(dims) if all(isinstance(s, int) and s >= 0 for s in dims) else (1,) * len(dims)
    store = storage_op if storage_op is not None else storage(key, storage_class, numel)
    shape_op = shape if isinstance(shape, bytes) else ints(shape)
    stride_op = stride if isinstance(stride, bytes) else ints(stride)
    return call(glob("torch._utils", "_rebuild_tensor_v2"), store, integer(offset), shape_op, stride_op,
                FALSE, call(glob("collections", "OrderedDict")))


def pickle_of(body: bytes) -> bytes:
    return PROTO2 + body + STOP


def state_dict(tensors: dict[str, bytes]) -> bytes:
    """The pickle of OrderedDict(tensors)."""
    return pickle_of(ordered_dict(tensors))


def pt_file(path: Path, data_pkl: bytes, records: dict[str, bytes], archive: str = "archive") -> Path:
    """A torch.save zip: data.pkl, the storage records data/<key>, version and byteorder."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        out.writestr(f"{archive}/data.pkl", data_pkl)
        out.writestr(f"{archive}/byteorder", b"little")
        for key, data in records.items():
            out.writestr(f"{archive}/data/{key}", data)
        out.writestr(f"{archive}/version", b"3\n")
    return path


def legacy_file(path: Path, main_pickle: bytes, storages: list[tuple[str, int, bytes]],
                keys: list[str] | None = None) -> Path:
    """A legacy torch.save file: magic, protocol version, sys_info, the pickle, the storage
    keys, then per storage its element count (8 bytes, little-endian) and raw bytes."""
    sys_info = plain_dict({"protocol_version": integer(LEGACY_PROTOCOL_VERSION), "little_endian": TRUE,
                           "type_sizes": plain_dict({"short": integer(2), "int": integer(4), "long": integer(4)})})
    keys = [key for key, _, _ in storages] if keys is None else keys
    parts = [pickle_of(integer(LEGACY_MAGIC)), pickle_of(integer(LEGACY_PROTOCOL_VERSION)), pickle_of(sys_info),
             main_pickle, pickle_of(EMPTY_LIST + (MARK + b"".join(text(k) for k in keys) + APPENDS if keys else b""))]
    for _key, count, data in storages:
        parts.append(struct.pack("<q", count) + data)
    path.write_bytes(b"".join(parts))
    return path


def legacy_storage(key: str, storage_class: str, numel: int, view: bytes = NONE) -> bytes:
    """A legacy persistent id: ("storage", torch.<class>, key, location, numel, view_metadata)."""
    return MARK + text("storage") + glob("torch", storage_class) + text(key) + text("cpu") + integer(numel) + view + TUPLE + BINPERSID
