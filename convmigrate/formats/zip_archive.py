"""The zip container of torch.save files, read with an attacker's eye.

A torch.save file is a zip archive (APPNOTE.TXT 6.3) that torch reads with miniz. Python's
`zipfile` is too lenient to stand between a hostile file and the rest of the tool (it accepts
data before the archive, reads the last of two records with one name, inflates a record whole,
and fails on a bad end record with a bare OSError), so the archive is parsed here, every claim
checked against the file before anything is allocated or looped over:

    [local header + name + extra + data (+ data descriptor)] ... one per record
    central directory: one 46-byte header + name + extra + comment per record
    [zip64 end record (56 bytes) + zip64 locator (20 bytes)]   when sizes or counts need 64 bits
    end record (22 bytes + comment)

- exactly one end record, at the end of the file (after its comment); a zip64 end record and
  locator, when present, sit right before it and agree with it;
- the central directory ends exactly where the end records begin (no data before the archive,
  no bytes between), holds exactly the number of records the end record claims, and fits
  ZIP_MAX_DIRECTORY_BYTES / ZIP_MAX_RECORDS;
- every record: not encrypted, stored or deflated (what miniz reads), a zip64 extra field where
  a size or offset says so, on disk 0, its local header inside the archive with the same name
  and method as the central directory says, its data before the central directory; stored
  sizes agree; no two records overlap; no two names are equal ignoring ASCII case (miniz finds
  records case-insensitively, and which of two equal names torch then reads varies: the first
  `data/0`, but the second `data.pkl`, in files measured here);
- all records sit in one folder, named by the first record, as torch requires.

Stored records are served in place (`InputFile.spans`); deflated ones are inflated on demand in
bounded pieces, never past their declared size, and checked against their CRC-32 (which torch
does not check). Where this is stricter than torch.load, `limits.DEVIATIONS` says so.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NoReturn

import numpy as np

from convmigrate.entries import ByteSource, Extent
from convmigrate.errors import UnreadableCheckpointError
from convmigrate.formats.input_file import InputFile
from convmigrate.limits import ZIP_MAX_DIRECTORY_BYTES, ZIP_MAX_RECORDS

STORED, DEFLATED = 0, 8
METHOD_NAMES = {1: "shrink", 6: "implode", 9: "deflate64", 12: "bzip2", 14: "lzma", 93: "zstd", 95: "xz", 99: "AES"}

_END = struct.Struct("<IHHHHIIH")  # signature, disk, directory disk, entries here, entries, size, offset, comment
_END_SIGNATURE = 0x06054B50
_ZIP64_LOCATOR = struct.Struct("<IIQI")  # signature, disk of the zip64 end record, its offset, disks
_ZIP64_LOCATOR_SIGNATURE = 0x07064B50
_ZIP64_END = struct.Struct("<IQHHIIQQQQ")  # signature, record size, made by, needed, disk, directory disk, ...
_ZIP64_END_SIGNATURE = 0x06064B50
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_CENTRAL_SIGNATURE = 0x02014B50
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_LOCAL_SIGNATURE = 0x04034B50
_MAX_COMMENT = 0xFFFF
_ZIP64_EXTRA_ID = 0x0001
_IN_ZIP64 = 0xFFFFFFFF  # a 32-bit field holding this means "the value is in the zip64 extra field"
_ENCRYPTED_FLAGS = 0x0001 | 0x0040 | 0x2000  # traditional, strong, central directory encryption
_INFLATE_INPUT_BYTES = 1 << 20  # compressed bytes read per step while inflating

Fail = Callable[[str], NoReturn]  # raises the one-line error for a problem


@dataclass(frozen=True)
class ZipRecord:
    """One record, as the central directory describes it and its local header confirms."""

    name: str  # the full name in the archive, e.g. "archive/data/0"
    method: int
    crc: int
    compressed_size: int
    size: int
    header_offset: int
    data_offset: int

    @property
    def compressed(self) -> bool:
        return self.method != STORED


class ZipArchive:
    """A checked zip archive: its records by name (inside its folder) and their bytes.

    Example:
        >>> from pathlib import Path
        >>> from convmigrate.formats.input_file import open_input
        >>> with open_input(Path("fixtures/tiny_tcn.pt")) as file:
        ...     archive = open_zip(file)
        ...     archive.folder, list(archive.records)[:2], archive.records["data/0"].compressed
        ('tiny_tcn', ['data.pkl', '.format_version'], False)
    """

    def __init__(self, file: InputFile, folder: str, records: dict[str, ZipRecord], context: str) -> None:
        self.file, self.folder, self.records, self.context = file, folder, records, context

    def fail(self, problem: str) -> NoReturn:
        raise UnreadableCheckpointError(self.file.path, f"{self.context}{problem}")

    def read(self, name: str, limit: int, limit_name: str) -> bytes | None:
        """The whole record `name` (None if absent), refused if it holds more than `limit` bytes."""
        record = self.records.get(name)
        if record is None:
            return None
        if record.size > limit:
            self.fail(f"record {record.name!r} claims {record.size:,} bytes, more than {limit_name} ({limit:,})")
        return bytes(self.source(record).read(0, record.size))

    def source(self, record: ZipRecord) -> ByteSource:
        """The record's bytes: in place when stored, inflated on demand when deflated."""
        if record.compressed:
            return InflatedRecord(self, record)
        return self.file.spans([(record.data_offset, record.size)])


class InflatedRecord:
    """A deflated record's bytes, inflated from its start each time they are asked for.

    Memory stays at one piece (plus zlib's 32 KiB window); output never exceeds the declared
    size; a full pass checks the size and the CRC-32.
    """

    def __init__(self, archive: ZipArchive, record: ZipRecord) -> None:
        self.archive, self.record = archive, record

    def _inflated(self, stop: int, piece_bytes: int) -> Iterator[bytes]:
        """Inflated bytes from the start up to at least `stop` (all of them when stop >= size)."""
        record, file = self.record, self.archive.file
        inflater = zlib.decompressobj(-15)
        position, end = record.data_offset, record.data_offset + record.compressed_size
        produced, crc, data = 0, 0, b""
        while not inflater.eof:
            if not data:
                if position >= end:
                    self.archive.fail(f"record {record.name!r}: its deflate stream ends early (truncated or damaged)")
                data = file.read_at(position, min(_INFLATE_INPUT_BYTES, end - position))
                position += len(data)
            try:
                # One byte more than may come: a stream that inflates past its size is caught.
                chunk = inflater.decompress(data, min(piece_bytes, record.size - produced + 1))
            except zlib.error as exc:
                self.archive.fail(f"record {record.name!r}: its deflate stream is damaged ({exc})")
            data = inflater.unconsumed_tail
            produced += len(chunk)
            if produced > record.size:
                self.archive.fail(f"record {record.name!r} inflates to more than the {record.size:,} bytes it declares")
            crc = zlib.crc32(chunk, crc)
            if chunk:
                yield chunk
            if produced >= stop and stop < record.size:
                return  # a partial read: no size or CRC check possible, nor needed yet
        if produced != record.size:
            self.archive.fail(f"record {record.name!r} inflates to {produced:,} bytes, not the {record.size:,} it declares")
        if crc != record.crc:
            self.archive.fail(f"record {record.name!r}: its CRC-32 does not match its bytes (damaged)")

    def pieces(self, start: int, stop: int, piece_bytes: int) -> Iterator[memoryview]:
        stop = min(stop, self.record.size)
        at = 0
        for chunk in self._inflated(stop, piece_bytes):
            first, last = max(start, at), min(stop, at + len(chunk))
            if first < last:
                yield memoryview(chunk)[first - at : last - at]
            at += len(chunk)

    def read(self, start: int, stop: int) -> memoryview:
        stop = min(stop, self.record.size)
        out = np.empty(max(0, stop - start), np.uint8)
        at = 0
        for piece in self.pieces(start, stop, 1 << 22):
            out[at : at + len(piece)] = np.frombuffer(piece, np.uint8)
            at += len(piece)
        return memoryview(out)[:at]

    def extents(self, start: int, stop: int) -> list[Extent] | None:
        return None  # the file holds compressed bytes: nothing for a kernel copy


# --------------------------------------------------------------------------- reading


def _find_end(file: InputFile, fail: Fail) -> int:
    """The offset of the one end record whose comment reaches exactly to the end of the file."""
    if file.size < _END.size:
        fail(f"{file.size} bytes is too short for a zip archive (its end record alone is {_END.size})")
    tail_start = max(0, file.size - _END.size - _MAX_COMMENT)
    tail = file.read_at(tail_start, file.size - tail_start)
    signature = struct.pack("<I", _END_SIGNATURE)
    found = []
    at = tail.rfind(signature)
    while at >= 0:
        if at + _END.size <= len(tail) and at + _END.size + _END.unpack_from(tail, at)[7] == len(tail):
            found.append(tail_start + at)
        at = tail.rfind(signature, 0, at)
    if not found:
        fail("no zip end record at its end (truncated, or not a zip archive)")
    if len(found) > 1:
        fail(f"{len(found)} zip end records, one inside another's comment: which archive is meant is ambiguous")
    return found[0]


def _directory_bounds(file: InputFile, end_offset: int, fail: Fail) -> tuple[int, int, int]:
    """(record count, directory offset, where the directory must end) from the end records."""
    _, disk, directory_disk, count_here, count, size, offset, _ = _END.unpack(file.read_at(end_offset, _END.size))
    directory_end = end_offset
    locator_offset = end_offset - _ZIP64_LOCATOR.size
    locator = file.read_at(locator_offset, _ZIP64_LOCATOR.size) if locator_offset >= 0 else b""
    if locator[:4] == struct.pack("<I", _ZIP64_LOCATOR_SIGNATURE):
        _, zip64_disk, zip64_offset, disks = _ZIP64_LOCATOR.unpack(locator)
        if zip64_disk != 0 or disks > 1:
            fail(f"the archive spans {disks} disks; only single-file archives are read")
        if zip64_offset > locator_offset - _ZIP64_END.size:
            fail(f"the zip64 locator points at byte {zip64_offset:,}, where no zip64 end record fits before it")
        fields = _ZIP64_END.unpack(file.read_at(zip64_offset, _ZIP64_END.size))
        signature, record_size, _, _, disk64, directory_disk64, count_here64, count64, size64, offset64 = fields
        if signature != _ZIP64_END_SIGNATURE:
            fail(f"no zip64 end record at byte {zip64_offset:,}, where the locator points")
        if zip64_offset + 12 + record_size != locator_offset:
            fail(f"the zip64 end record at byte {zip64_offset:,} claims {record_size:,} bytes; it must end at the locator")
        for name, value, value64, marker in (
            ("disk", disk, disk64, 0xFFFF), ("directory disk", directory_disk, directory_disk64, 0xFFFF),
            ("records on this disk", count_here, count_here64, 0xFFFF), ("records", count, count64, 0xFFFF),
            ("directory size", size, size64, _IN_ZIP64), ("directory offset", offset, offset64, _IN_ZIP64),
        ):
            if value != marker and value != value64:
                fail(f"the end record and the zip64 end record disagree on the {name} ({value:,} vs {value64:,})")
        disk, directory_disk, count_here, count, size, offset = disk64, directory_disk64, count_here64, count64, size64, offset64
        directory_end = zip64_offset
    elif _IN_ZIP64 in (size, offset) or 0xFFFF in (count, count_here, disk, directory_disk):
        fail("the end record refers to a zip64 end record that is not there")
    if disk != 0 or directory_disk != 0 or count_here != count:
        fail("the archive spans several disks; only single-file archives are read")
    if offset + size != directory_end:
        fail(f"the end record puts the central directory at bytes [{offset:,}, {offset + size:,}) "
             f"but it must end at byte {directory_end:,}, where the end record begins")
    if size > ZIP_MAX_DIRECTORY_BYTES:
        fail(f"its central directory of {size:,} bytes exceeds ZIP_MAX_DIRECTORY_BYTES ({ZIP_MAX_DIRECTORY_BYTES:,})")
    if count > ZIP_MAX_RECORDS:
        fail(f"it claims {count:,} records, more than ZIP_MAX_RECORDS ({ZIP_MAX_RECORDS:,})")
    if count * _CENTRAL.size > size:
        fail(f"it claims {count:,} records, which cannot fit its {size:,}-byte central directory")
    return count, offset, directory_end


def _zip64_values(extra: bytes, wanted: int, shown: str, fail: Fail) -> list[int]:
    """The first `wanted` 8-byte values of the zip64 extra field (APPNOTE 4.5.3)."""
    at = 0
    while at + 4 <= len(extra):
        block, length = struct.unpack_from("<HH", extra, at)
        if at + 4 + length > len(extra):
            fail(f"record {shown}: an extra field runs past its end")
        if block == _ZIP64_EXTRA_ID:
            if length < 8 * wanted:
                fail(f"record {shown}: its zip64 extra field holds {length} bytes, {8 * wanted} are needed")
            return list(struct.unpack_from(f"<{wanted}Q", extra, at + 4))
        at += 4 + length
    fail(f"record {shown}: a size or offset says 'see zip64' but there is no zip64 extra field")


def _central_records(file: InputFile, count: int, offset: int, size: int, fail: Fail) -> list[ZipRecord]:
    directory = file.read_at(offset, size)
    records: list[ZipRecord] = []
    at = 0
    for index in range(count):
        if at + _CENTRAL.size > size:
            fail(f"its central directory ends inside record {index + 1} of {count}")
        (signature, _, _, flags, method, _, _, crc, compressed_size, record_size, name_length, extra_length,
         comment_length, disk, _, _, header_offset) = _CENTRAL.unpack_from(directory, at)
        if signature != _CENTRAL_SIGNATURE:
            fail(f"central directory record {index + 1} of {count} (at byte {offset + at:,}) has no header signature")
        name_start = at + _CENTRAL.size
        at = name_start + name_length + extra_length + comment_length
        if at > size:
            fail(f"central directory record {index + 1} of {count} runs past the directory's end")
        raw_name = directory[name_start : name_start + name_length]
        name = raw_name.decode("utf-8", "surrogateescape")
        shown = repr(raw_name.decode("utf-8", "backslashreplace"))
        extra = directory[name_start + name_length : name_start + name_length + extra_length]
        marked = [record_size == _IN_ZIP64, compressed_size == _IN_ZIP64, header_offset == _IN_ZIP64, disk == 0xFFFF]
        if any(marked):
            # The extra field holds the marked values only, in this order (APPNOTE 4.5.3).
            values = iter(_zip64_values(extra, sum(marked), shown, fail))
            record_size = next(values) if marked[0] else record_size
            compressed_size = next(values) if marked[1] else compressed_size
            header_offset = next(values) if marked[2] else header_offset
            disk = next(values) if marked[3] else disk
        if flags & _ENCRYPTED_FLAGS:
            fail(f"record {shown} is encrypted")
        if method not in (STORED, DEFLATED):
            kind = METHOD_NAMES.get(method, f"method {method}")
            fail(f"record {shown} is compressed with {kind}; torch reads only stored and deflated records")
        if disk != 0:
            fail(f"record {shown} is on disk {disk}; only single-file archives are read")
        if method == STORED and compressed_size != record_size:
            fail(f"stored record {shown} claims {compressed_size:,} bytes stored but {record_size:,} bytes of data")
        if header_offset + _LOCAL.size > offset:
            fail(f"record {shown} claims a local header at byte {header_offset:,}, past the archive's data")
        records.append(ZipRecord(name, method, crc, compressed_size, record_size, header_offset, -1))
    if at != size:
        fail(f"its central directory holds {size - at:,} bytes after the {count:,} records the end record counts")
    return records


def _located(file: InputFile, records: list[ZipRecord], directory_offset: int, fail: Fail) -> list[ZipRecord]:
    """Each record with its data offset, from a local header that agrees with the directory."""
    located = []
    for record in records:
        raw_name = record.name.encode("utf-8", "surrogateescape")
        shown = repr(raw_name.decode("utf-8", "backslashreplace"))
        header = file.read_at(record.header_offset, _LOCAL.size + len(raw_name))
        if len(header) < _LOCAL.size:
            fail(f"record {shown}: its local header at byte {record.header_offset:,} is cut off")
        signature, _, flags, method, _, _, _, _, _, name_length, extra_length = _LOCAL.unpack_from(header)
        if signature != _LOCAL_SIGNATURE:
            fail(f"record {shown}: no local header at byte {record.header_offset:,}, where the directory puts it")
        if header[_LOCAL.size :] != raw_name or name_length != len(raw_name):
            fail(f"record {shown}: its local header names another record; which name is meant is ambiguous")
        if method != record.method or flags & _ENCRYPTED_FLAGS:
            fail(f"record {shown}: its local header disagrees with the central directory on how it is stored")
        data_offset = record.header_offset + _LOCAL.size + name_length + extra_length
        if data_offset + record.compressed_size > directory_offset:
            fail(f"record {shown}: its {record.compressed_size:,} bytes of data at byte {data_offset:,} run into the central directory")
        located.append(ZipRecord(record.name, record.method, record.crc, record.compressed_size, record.size,
                                 record.header_offset, data_offset))
    by_position = sorted(located, key=lambda r: r.header_offset)
    for before, after in zip(by_position, by_position[1:]):
        if before.data_offset + before.compressed_size > after.header_offset:
            fail(f"records {before.name!r} and {after.name!r} overlap; each record must have bytes of its own")
    return located


def open_zip(file: InputFile, context: str = "") -> ZipArchive:
    """The checked archive in `file`; any problem is one UnreadableCheckpointError line.

    `context` starts each message (e.g. "member 'model_weights.ckpt': " inside a NeMo archive).
    """

    def fail(problem: str) -> NoReturn:
        raise UnreadableCheckpointError(file.path, f"{context}damaged zip archive: {problem}")

    end_offset = _find_end(file, fail)
    count, directory_offset, directory_end = _directory_bounds(file, end_offset, fail)
    records = _located(file, _central_records(file, count, directory_offset, directory_end - directory_offset, fail),
                       directory_offset, fail)
    if not records:
        fail("it holds no records")
    folder, slash, _ = records[0].name.partition("/")
    if not slash:
        fail(f"its first record {records[0].name!r} is not in a folder, as torch.save puts every record")
    by_name: dict[str, ZipRecord] = {}
    folded: dict[bytes, str] = {}
    for record in records:
        if not record.name.startswith(folder + "/"):
            fail(f"record {record.name!r} is outside the folder {folder!r} that holds the first record")
        key = record.name.encode("utf-8", "surrogateescape").lower()  # miniz compares names ignoring ASCII case
        if key in folded:
            names = repr(record.name) if folded[key] == record.name else f"{folded[key]!r} and {record.name!r} (equal ignoring case)"
            fail(f"two records are named {names}; which one a reader takes varies")
        folded[key] = record.name
        by_name[record.name[len(folder) + 1 :]] = record
    return ZipArchive(file, folder, by_name, context)


__all__ = ["ZipArchive", "ZipRecord", "InflatedRecord", "open_zip", "STORED", "DEFLATED"]
