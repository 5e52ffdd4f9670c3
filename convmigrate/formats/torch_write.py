"""torch.save files written without torch, streaming one tensor at a time.

Writing produces what `torch.save(OrderedDict(...))` of torch 2.13 produces, streaming, without
ever holding the tensors in memory: a zip (stored, not compressed) laid out the way torch's
miniz-based `PyTorchStreamWriter` lays it out, measured on real files:

    archive/data.pkl                 pickle protocol 2 of the OrderedDict (shapes and dtypes only)
    archive/.format_version          "1"
    archive/.storage_alignment       "64"
    archive/byteorder                "little"
    archive/data/0, data/1, ...      one record per tensor, in entry order
    archive/version                  "3\\n"
    archive/.data/serialization_id   40 decimal digits

Every record's data starts at a multiple of 64 bytes: the local header carries an extra field
"FB" + length + "Z" padding (after a zip64 extra field when the record or its offset passes
4 GiB). Local headers hold zero CRC and sizes (flag bit 3); a data descriptor follows the data
(16 bytes, or 24 with 8-byte sizes in the zip64 case), except after an empty record. The
central directory is followed by a zip64 end record, its locator and the classic end record.
Keeping this exact layout matters: with `torch.utils.serialization.config.load.
calculate_storage_offsets`, torch.load computes each record's offset from this arithmetic
instead of reading the headers. Our serialization id is derived from the content, so writing
the same entries twice gives the same bytes.

In data.pkl (written by `torch_pickle`, byte for byte as torch's pickler) each tensor is `torch._utils._rebuild_tensor_v2(persistent_load(("storage",
torch.<Type>Storage, key, "cpu", numel)), 0, size, stride, False, OrderedDict())`; uint16/32/64
have no legacy storage class, so, as torch does, they use `_rebuild_tensor_v3` with an
`UntypedStorage` of `nbytes` and the dtype as the last argument. Plain values are pickled as
themselves. The `metadata` argument is ignored: torch.save files have no place for it.

Example:
    >>> from pathlib import Path
    >>> from convmigrate.formats.torch_file import read_torch
    >>> with read_torch(Path("fixtures/tiny_tcn.pt")) as ckpt, open("copy.pt", "wb") as stream:
    ...     write_torch(stream, ckpt.entries, metadata={})
    >>> with read_torch(Path("copy.pt")) as copy:
    ...     len(copy.tensors()), copy.tensors()[0].name
    (18, 'stem.weight')
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Callable, Sequence
from typing import BinaryIO

from convmigrate.entries import Entry, TensorEntry
from convmigrate.errors import UsageError
from convmigrate.formats.bytecopy import TensorBytesWriter
from convmigrate.formats.torch_pickle import state_dict_dumps, tensor_call

ARCHIVE_NAME = "archive"  # what torch.save names the archive folder when given a stream
STORAGE_ALIGNMENT = 64
FILE_FORMAT_VERSION = b"3\n"  # archive/version as torch 2.13 writes it
_ZIP64_LIMIT = 0xFFFFFFFF  # miniz switches a record to zip64 at sizes or offsets >= this
_IN_ZIP64_FIELD = 0xFFFFFFFF  # a 32-bit field holding this means "see the zip64 extra field"
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")  # signature ... name length, extra length
_CENTRAL_HEADER = struct.Struct("<IHHHHHHIIIHHHHHII")
_FLAG_UTF8 = 0x0800
_FLAG_DATA_DESCRIPTOR = 0x0008
_ZIP64_END_VERSION_MADE_BY = 0x031E  # what torch's files carry: unix, spec 3.0
_ZIP64_END_VERSION_NEEDED = 45


class _TorchZipWriter:
    """Writes zip records exactly as torch's miniz writer does. States: open -> finished.

    Offsets count from the stream's position when the writer was made (the start of the file).
    """

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.tensor_bytes = TensorBytesWriter(stream)
        self.offset = 0
        self.central: list[bytes] = []
        self.digest = hashlib.sha256()
        self.state = "open"

    def _write(self, data: bytes | memoryview) -> None:
        self.stream.write(data)
        self.offset += len(data)

    def add(self, name: str, content: bytes | TensorEntry, on_bytes: Callable[[int], None] | None = None) -> None:
        """One stored record: `content`'s bytes (a tensor's streamed, copied by the kernel where it can)."""
        if self.state != "open":
            raise RuntimeError(f"_TorchZipWriter.add({name!r}) after the archive was {self.state}")
        full_name = f"{ARCHIVE_NAME}/{name}".encode()
        size = content.nbytes if isinstance(content, TensorEntry) else len(content)
        header_offset = self.offset
        zip64 = size >= _ZIP64_LIMIT or header_offset >= _ZIP64_LIMIT
        zip64_extra = _zip64_extra(size, header_offset) if zip64 else b""
        # The "FB" field pads the local header so the data starts on a 64-byte boundary.
        unpadded = header_offset + _LOCAL_HEADER.size + len(full_name) + len(zip64_extra) + 4
        padding = -unpadded % STORAGE_ALIGNMENT
        extra = zip64_extra + b"FB" + struct.pack("<H", padding) + b"Z" * padding
        flags = _FLAG_UTF8 | (_FLAG_DATA_DESCRIPTOR if size else 0)
        self._write(_LOCAL_HEADER.pack(0x04034B50, 0, flags, 0, 0, 0, 0, 0, 0, len(full_name), len(extra)))
        self._write(full_name + extra)
        if isinstance(content, TensorEntry):
            crc = self.tensor_bytes.write_entry(content, crc=0, on_bytes=on_bytes)
            assert crc is not None
        else:
            self.stream.write(content)
            crc = zlib.crc32(content)
        self.offset += size
        if size:
            sizes = struct.pack("<QQ" if zip64 else "<II", size, size)
            self._write(struct.pack("<II", 0x08074B50, crc) + sizes)
        central_extra = _zip64_extra(size, header_offset) if zip64 else b""
        self.central.append(
            _CENTRAL_HEADER.pack(
                0x02014B50, 0, 0, flags, 0, 0, 0, crc, _field32(size), _field32(size),
                len(full_name), len(central_extra), 0, 0, 0, 0, _field32(header_offset),
            )
            + full_name
            + central_extra
        )
        self.digest.update(struct.pack("<QI", size, crc) + full_name)

    def finish(self) -> None:
        """The central directory, the zip64 end record and locator, the end record."""
        if self.state != "open":
            raise RuntimeError(f"_TorchZipWriter.finish() after the archive was {self.state}")
        self.state = "finished"
        directory_offset = self.offset
        for record in self.central:
            self._write(record)
        count, directory_size = len(self.central), self.offset - directory_offset
        zip64_end_offset = self.offset
        self._write(
            struct.pack(
                "<IQHHIIQQQQ", 0x06064B50, 44, _ZIP64_END_VERSION_MADE_BY, _ZIP64_END_VERSION_NEEDED,
                0, 0, count, count, directory_size, directory_offset,
            )
        )
        self._write(struct.pack("<IIQI", 0x07064B50, 0, zip64_end_offset, 1))
        self._write(
            struct.pack(
                "<IHHHHIIH", 0x06054B50, 0, 0, min(count, 0xFFFF), min(count, 0xFFFF),
                _field32(directory_size), _field32(directory_offset), 0,
            )
        )

    def serialization_id(self) -> bytes:
        """40 decimal digits like torch's, but derived from the content (reproducible files)."""
        high, low = struct.unpack("<QQ", self.digest.digest()[:16])
        return f"{high:020d}{low:020d}".encode("ascii")


def _field32(value: int) -> int:
    return _IN_ZIP64_FIELD if value >= _ZIP64_LIMIT else value


def _zip64_extra(size: int, header_offset: int) -> bytes:
    """The zip64 extra field with the values that do not fit 32 bits, in the spec's order."""
    fields = b""
    if size >= _ZIP64_LIMIT:
        fields += struct.pack("<QQ", size, size)  # uncompressed, compressed
    if header_offset >= _ZIP64_LIMIT:
        fields += struct.pack("<Q", header_offset)
    return struct.pack("<HH", 0x0001, len(fields)) + fields


def state_dict_pickle(entries: Sequence[Entry]) -> bytes:
    """data.pkl for `entries`: tensors as storage references keyed "0", "1", ... in order."""
    items: list[tuple[str, object]] = []
    names: set[str] = set()
    key = 0
    for entry in entries:
        if entry.name in names:
            raise UsageError(f"entry name {entry.name!r} appears twice; a state dict needs unique names")
        names.add(entry.name)
        if isinstance(entry, TensorEntry):
            dtype = entry.dtype
            items.append((entry.name, tensor_call(str(key), dtype.torch_storage, dtype.name, entry.numel, dtype.itemsize, entry.shape)))
            key += 1
        else:
            items.append((entry.name, entry.value))
    return state_dict_dumps(items)


def write_torch(
    stream: BinaryIO,
    entries: Sequence[Entry],
    *,
    metadata: dict[str, str],
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """Write `entries` as a torch.save zip file, one tensor at a time.

    Args:
        stream: a binary file positioned at its start (it need not be seekable).
        entries: tensors and plain values, written as an OrderedDict in this order.
        metadata: ignored; torch.save files have no place for it.
        on_bytes: called with the size of every tensor chunk written (progress).

    Example:
        >>> import numpy, torch
        >>> array = numpy.arange(6, dtype=numpy.float32).reshape(2, 3)
        >>> with open("model.pt", "wb") as stream:
        ...     write_torch(stream, [TensorEntry.from_array("w", array)], metadata={})
        >>> torch.load("model.pt", weights_only=True, mmap=True)["w"]
        tensor([[0., 1., 2.],
                [3., 4., 5.]])
    """
    del metadata
    zip_writer = _TorchZipWriter(stream)
    data_pkl = state_dict_pickle(entries)
    zip_writer.add("data.pkl", data_pkl)
    for name, content in ((".format_version", b"1"), (".storage_alignment", str(STORAGE_ALIGNMENT).encode()), ("byteorder", b"little")):
        zip_writer.add(name, content)
    tensors = [e for e in entries if isinstance(e, TensorEntry)]
    for key, tensor in enumerate(tensors):
        zip_writer.add(f"data/{key}", tensor, on_bytes)
    zip_writer.add("version", FILE_FORMAT_VERSION)
    zip_writer.add(".data/serialization_id", zip_writer.serialization_id())
    zip_writer.finish()


__all__ = ["write_torch", "state_dict_pickle"]
