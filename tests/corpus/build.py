"""Building blocks for hostile files: a hand-written protobuf encoder, bit flips, zip offsets.

Independent of the tool's own writers, so a reader bug cannot hide behind a writer with the
same bug.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
import zlib
from pathlib import Path

CRC_MARK = b"crc_num"


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` (hidden ones too) -> SHA-256 of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


# A hand-written protobuf encoder for .ckpt files, independent of the tool's writer.


def varint(number: int) -> bytes:
    number &= (1 << 64) - 1  # negative int64 take ten bytes, as protobuf writes them
    out = bytearray()
    while number > 0x7F:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    return bytes(out + bytes([number]))


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def ckpt_value(tag: bytes | str, dims: list[int], tensor_type: str, content: bytes) -> bytes:
    """One `Checkpoint.value`: Value { tag = 1; tensor = 2 { dims = 1; tensor_type = 2; content = 3 } }."""
    tag = tag.encode() if isinstance(tag, str) else tag
    tensor = b"".join(varint(1 << 3) + varint(d) for d in dims) + field(2, tensor_type.encode()) + field(3, content)
    return field(1, field(1, tag) + field(2, tensor))


def with_crc(data: bytes) -> bytes:
    return data + CRC_MARK + zlib.crc32(data).to_bytes(10, "big")


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def flip(data: bytes, position: int, mask: int = 0x01) -> bytes:
    changed = bytearray(data)
    changed[position] ^= mask
    return bytes(changed)


def pt_record_offset(path: Path, suffix: str) -> int:
    """Where the data of the zip record whose name ends with `suffix` starts in `path`."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(suffix))
    data = path.read_bytes()
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    return info.header_offset + 30 + name_length + extra_length


class Marker:
    """Pickles as os.system("touch MARKER"): harmless, and proves whether pickle code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


# Hand-built safetensors files: the 8-byte little-endian header length, the JSON, the data.


def safetensors_file(header: dict | bytes, data: bytes = b"", *, length: int | None = None) -> bytes:
    """A safetensors file of `header` (a dict, or raw JSON bytes) and `data`; `length` may lie."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def record(dtype: str, shape: list, begin: int, end: int, **extra: object) -> dict:
    """One tensor's header record."""
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end], **extra}


def float32_bytes(count: int) -> bytes:
    return struct.pack(f"<{count}f", *range(count))


def index_file(weight_map: dict, metadata: object = None) -> bytes:
    """A transformers-style sharded index."""
    return json.dumps({"metadata": metadata if metadata is not None else {"total_size": 0}, "weight_map": weight_map}).encode()
