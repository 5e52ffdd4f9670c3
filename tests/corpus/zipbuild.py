"""A hand-written zip writer for hostile and exotic torch files, every field under the test's control.

Independent of convmigrate's own writer (and of Python's zipfile, which refuses to write most
of what these tests need), so a reader bug cannot hide behind a writer with the same bug.
`Member` is one record as the test wants it; `build_zip` lays the records out (local header,
name, extra, data, optional data descriptor), then the central directory, an optional zip64
end record and locator, and the end record. Each `Member` field and `build_zip` keyword
overrides what an honest writer would put there.

    records = torch_records(Path("model.pt"))            # the records of a real torch.save file
    records[4] = replace(records[4], method=DEFLATED)     # e.g. deflate data/0
    Path("x.pt").write_bytes(build_zip(records))
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

STORED, DEFLATED = 0, 8


@dataclass(frozen=True)
class Member:
    name: str
    data: bytes  # the uncompressed bytes
    method: int = STORED
    flags: int = 0x0800  # UTF-8 names, as torch writes them
    extra: bytes = b""  # local header extra field
    central_extra: bytes = b""
    local_name: str | None = None  # None: the same as the central name
    local_method: int | None = None
    payload: bytes | None = None  # the stored bytes (None: data, compressed when method says so)
    crc: int | None = None  # None: the real CRC-32 of data
    size: int | None = None  # the uncompressed size the central directory claims
    compressed_size: int | None = None
    offset: int | None = None  # the local header offset the central directory claims
    descriptor: bool = False  # a data descriptor after the data (flag bit 3)
    align: int = 0  # pad the local extra so the data starts on this boundary (torch: 64)

    def stored(self) -> bytes:
        if self.payload is not None:
            return self.payload
        if self.method == DEFLATED:
            packer = zlib.compressobj(9, zlib.DEFLATED, -15)
            return packer.compress(self.data) + packer.flush()
        return self.data


@dataclass
class Layout:
    """Where build_zip put things (for tests that then break one offset)."""

    header_offsets: list[int] = field(default_factory=list)
    data_offsets: list[int] = field(default_factory=list)
    directory_offset: int = 0
    directory_size: int = 0
    end_offset: int = 0


def build_zip(
    members: list[Member],
    *,
    zip64: bool = False,
    prefix: bytes = b"",
    comment: bytes = b"",
    count: int | None = None,
    directory_offset: int | None = None,
    directory_size: int | None = None,
    after_directory: bytes = b"",
    layout: Layout | None = None,
) -> bytes:
    """The archive's bytes. Keywords override the end record's claims (None: the truth)."""
    layout = layout if layout is not None else Layout()
    out = bytearray(prefix)
    central = bytearray()
    for member in members:
        header_offset = len(out)
        local_name = (member.local_name if member.local_name is not None else member.name).encode()
        payload = member.stored()
        crc = zlib.crc32(member.data) if member.crc is None else member.crc
        size = len(member.data) if member.size is None else member.size
        csize = len(payload) if member.compressed_size is None else member.compressed_size
        extra = member.extra
        if member.align:
            unpadded = header_offset + 30 + len(local_name) + len(extra) + 4
            pad = -unpadded % member.align
            extra += b"FB" + struct.pack("<H", pad) + b"Z" * pad
        flags = member.flags | (0x08 if member.descriptor else 0)
        local_method = member.method if member.local_method is None else member.local_method
        local_sizes = (0, 0, 0) if member.descriptor else (crc, min(csize, 0xFFFFFFFF), min(size, 0xFFFFFFFF))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, local_method, 0, 0, *local_sizes, len(local_name), len(extra))
        out += local_name + extra
        layout.header_offsets.append(header_offset)
        layout.data_offsets.append(len(out))
        out += payload
        if member.descriptor:
            out += struct.pack("<IIII", 0x08074B50, crc, csize, size)
        offset = header_offset - len(prefix) if member.offset is None else member.offset
        name = member.name.encode()
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 0x031E, 20, flags, member.method, 0, 0, crc,
            min(csize, 0xFFFFFFFF), min(size, 0xFFFFFFFF), len(name), len(member.central_extra), 0, 0, 0, 0,
            min(offset, 0xFFFFFFFF),
        )
        central += name + member.central_extra
    layout.directory_offset = len(out) - len(prefix)
    out += central + after_directory
    layout.directory_size = len(central)
    entries = len(members) if count is None else count
    cd_offset = layout.directory_offset if directory_offset is None else directory_offset
    cd_size = len(central) if directory_size is None else directory_size
    if zip64:
        zip64_end = len(out) - len(prefix)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 45, 0, 0, entries, entries, cd_size, cd_offset)
        out += struct.pack("<IIQI", 0x07064B50, 0, zip64_end, 1)
        entries16, cd_size32, cd_offset32 = 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF
    else:
        entries16, cd_size32, cd_offset32 = entries, cd_size, cd_offset
    layout.end_offset = len(out)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, entries16, entries16, cd_size32, cd_offset32, len(comment)) + comment
    return bytes(out)


def zip64_extra(*values: int) -> bytes:
    """A zip64 extended-information extra field holding these 8-byte values."""
    return struct.pack("<HH", 0x0001, 8 * len(values)) + b"".join(struct.pack("<Q", v) for v in values)


def torch_records(path: Path) -> list[Member]:
    """The records of a real torch.save file, in its order, as torch stored them (64-aligned)."""
    with zipfile.ZipFile(path) as archive:
        return [Member(info.filename, archive.read(info), align=64) for info in archive.infolist()]


def record_index(members: list[Member], suffix: str) -> int:
    return next(i for i, m in enumerate(members) if m.name.endswith(suffix))


def with_record(members: list[Member], suffix: str, **changes: object) -> list[Member]:
    """The members with the one whose name ends with `suffix` changed."""
    index = record_index(members, suffix)
    return [*members[:index], replace(members[index], **changes), *members[index + 1 :]]  # type: ignore[arg-type]
