"""torch.save zip files (PyTorch >= 1.6) read without importing torch: the zip container.

Importing torch costs about a second and torch's weights_only unpickler about a second per
10 000 tensors; neither is needed to read a state dict. This module checks the archive
(`zip_archive.open_zip`), then what torch.load checks before it unpickles, in its order:

    archive/.data/version or archive/version    an integer in 1..10 (torch refuses others)
    archive/byteorder                            'little' or 'big' (absent: little)
    archive/data.pkl                             the pickle, stored or deflated, bounded
    archive/data/0 ...                           one record per storage, exactly its size

`pickle_reader` turns the pickle into plain data and tensor records (nothing it names is
imported or run: a checkpoint with config objects, a whole pickled model or code in stand-in
position is read like a plain state dict), `state_dict` finds the state dict in it, and
`torch_storage` serves each tensor's bytes from its storage record: read in place when stored,
inflated on demand when deflated, byte-swapped when the file says 'big' (as torch does: by the
storage's own dtype). Nothing reaches torch.load (`--trust-pickle`) before all of this holds,
so a hostile archive (a zip bomb, a record past the end) is refused here in one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from convmigrate.entries import ByteSource, Checkpoint, Extent
from convmigrate.formats.input_file import InputFile, open_input
from convmigrate.formats.pickle_reader import TensorRecord
from convmigrate.formats.state_dict import find_state_dict, load_state_pickle
from convmigrate.formats.torch_storage import storage_checkpoint
from convmigrate.formats.zip_archive import ZipArchive, ZipRecord, open_zip
from convmigrate.limits import TORCH_MAX_PICKLE_BYTES, TORCH_MAX_SMALL_RECORD, ZIP_MAX_INFLATED_BYTES

ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"
# The archive versions torch 2.13 reads (caffe2/serialize: kMinSupportedFileFormatVersion and
# kMaxSupportedFileFormatVersion, measured: 0 and 11 are refused).
TORCH_FILE_VERSIONS = range(1, 11)
BYTE_ORDERS = (b"little", b"big")
_VERSION = re.compile(rb"\s*\+?([0-9]+)")  # what std::stoull accepts of it (a prefix)
BIG_ENDIAN_NOTE = "the file is big-endian (its byteorder record says 'big'): tensors were byte-swapped as torch.load does"


class TorchArchive:
    """A checked torch zip: its archive, byte order and pickle bytes."""

    def __init__(self, archive: ZipArchive) -> None:
        self.archive = archive
        self.big_endian = self._byte_order() == b"big"
        self._check_version()
        pickle = archive.records.get("data.pkl")
        if pickle is not None and pickle.size > TORCH_MAX_PICKLE_BYTES:
            archive.fail(f"record {pickle.name!r} claims {pickle.size:,} bytes, more than TORCH_MAX_PICKLE_BYTES "
                         f"({TORCH_MAX_PICKLE_BYTES:,})")
        inflated = sum(r.size for name, r in archive.records.items() if r.compressed and name != "data.pkl")
        if inflated > ZIP_MAX_INFLATED_BYTES:
            archive.fail(f"its deflated records would inflate to {inflated:,} bytes, more than "
                         f"ZIP_MAX_INFLATED_BYTES ({ZIP_MAX_INFLATED_BYTES:,}); torch.save never compresses")

    def _check_version(self) -> None:
        name = ".data/version" if ".data/version" in self.archive.records else "version"
        text = self.archive.read(name, TORCH_MAX_SMALL_RECORD, "TORCH_MAX_SMALL_RECORD")
        if text is None:
            self.archive.fail("it has no 'version' record; torch.save always writes one, and torch.load refuses the file")
        found = _VERSION.match(text)
        if found is None or int(found.group(1)) not in TORCH_FILE_VERSIONS:
            shown = text[:20].decode("ascii", "backslashreplace")
            self.archive.fail(f"its version record says {shown!r}; torch.load reads archive versions "
                              f"{TORCH_FILE_VERSIONS.start}..{TORCH_FILE_VERSIONS.stop - 1}")

    def _byte_order(self) -> bytes:
        order = self.archive.read("byteorder", TORCH_MAX_SMALL_RECORD, "TORCH_MAX_SMALL_RECORD")
        if order is None:
            return b"little"  # torch's default for files without the record
        if order not in BYTE_ORDERS:
            shown = order[:20].decode("ascii", "backslashreplace")
            self.archive.fail(f"its byteorder record says {shown!r}, which torch.load refuses too ('little' or 'big')")
        return order

    def pickle_bytes(self) -> bytes:
        data = self.archive.read("data.pkl", TORCH_MAX_PICKLE_BYTES, "TORCH_MAX_PICKLE_BYTES")
        if data is None:
            self.archive.fail(f"it has no '{self.archive.folder}/data.pkl' record; it is not a torch.save file")
        return data

    def storages(self) -> dict[str, RecordStorage]:
        """Storage key -> the record holding its bytes (`data/<key>`)."""
        return {name[len("data/") :]: RecordStorage(self, record)
                for name, record in self.archive.records.items() if name.startswith("data/")}


class RecordStorage:
    """A storage's bytes in its zip record, as torch.load gives them (torch_storage.StorageBytes)."""

    def __init__(self, torch_archive: TorchArchive, record: ZipRecord) -> None:
        self.torch_archive, self.record, self.size = torch_archive, record, record.size

    def source(self, name: str, tensor: TensorRecord, first: int, length: int) -> ByteSource:
        archive, record, storage = self.torch_archive.archive, self.record, tensor.storage
        claimed = storage.numel * storage.itemsize
        if record.size != claimed:  # torch.load refuses this too ("record size ... mismatch with dst size")
            archive.fail(f"tensor {name!r}: record {record.name!r} holds {record.size:,} bytes, its storage needs {claimed:,}")
        if not self.torch_archive.big_endian and not record.compressed:
            return archive.file.spans([(record.data_offset + first, length)] if length else [])
        source = archive.source(record)
        if self.torch_archive.big_endian:
            # torch swaps a storage by its own dtype: an untyped storage (uint8 to torch) not at all.
            if storage.dtype is None and tensor.dtype.itemsize > 1:
                archive.fail(f"tensor {name!r} is {tensor.dtype.name} in an untyped storage of a big-endian file: "
                             "torch.load would not swap its bytes, so neither reading is what was saved")
            source = _Swapped(source, storage.itemsize, record.size)
        return _Range(source, first, length)


class _Range:
    """Bytes [first, first + size) of another source."""

    def __init__(self, source: ByteSource, first: int, size: int) -> None:
        self.source, self.first, self.size = source, first, size

    def pieces(self, start: int, stop: int, piece_bytes: int) -> Iterator[memoryview]:
        stop = min(stop, self.size)
        return self.source.pieces(self.first + start, self.first + max(start, stop), piece_bytes)

    def read(self, start: int, stop: int) -> memoryview:
        stop = min(stop, self.size)
        return self.source.read(self.first + start, self.first + max(start, stop))

    def extents(self, start: int, stop: int) -> list[Extent] | None:
        stop = min(stop, self.size)
        return self.source.extents(self.first + start, self.first + max(start, stop))


class _Swapped:
    """A big-endian storage's bytes in little-endian order: each `group` bytes reversed."""

    def __init__(self, source: ByteSource, group: int, size: int) -> None:
        self.source, self.group, self.size = source, group, size

    def pieces(self, start: int, stop: int, piece_bytes: int) -> Iterator[memoryview]:
        group, stop = self.group, min(stop, self.size)
        first, last = start - start % group, min(self.size, stop + -stop % group)
        carry, at = b"", first
        for piece in self.source.pieces(first, last, max(group, piece_bytes - piece_bytes % group)):
            data = carry + bytes(piece)
            whole = len(data) - len(data) % group
            carry = data[whole:]
            swapped = np.frombuffer(data[:whole], np.uint8).reshape(-1, group)[:, ::-1].tobytes()
            low, high = max(start, at), min(stop, at + whole)
            if low < high:
                yield memoryview(swapped)[low - at : high - at]
            at += whole

    def read(self, start: int, stop: int) -> memoryview:
        return memoryview(b"".join(self.pieces(start, stop, 1 << 22)))

    def extents(self, start: int, stop: int) -> list[Extent] | None:
        return None  # the bytes on disk are in the other order


def read_torch_archive(file: InputFile, *, select: str | None = None, context: str = "") -> Checkpoint:
    """The checkpoint in `file` (a whole file or a window of one, e.g. a NeMo archive's member),
    which the checkpoint closes (on an error too). `context` starts each message of the archive's
    checks. `select` chooses the state dict in a file that holds several (state_dict.find_state_dict).
    """
    try:
        torch_archive = TorchArchive(open_zip(file, context))
        loaded = load_state_pickle(file.path, torch_archive.pickle_bytes())
        state = find_state_dict(file.path, loaded, select=select)
        if torch_archive.big_endian:
            state.notes.append(BIG_ENDIAN_NOTE)
        storages = torch_archive.storages()
    except BaseException:
        file.close()
        raise
    folder = torch_archive.archive.folder
    return storage_checkpoint(file.path, state, storages, file, where=lambda key: f"record {folder}/data/{key}")


def read_data_pickle(path: Path) -> object:
    """What data.pkl holds, read inertly (tensors as records; nothing run or imported), after
    every check of the archive: what `--trust-pickle` asks before torch.load sees the file."""
    with open_input(path) as file:
        return load_state_pickle(path, TorchArchive(open_zip(file)).pickle_bytes())


def maps_in_place(path: Path) -> bool:
    """Whether every record can be read where it lies (stored, little-endian): torch.load(mmap=True)
    reads a deflated record raw (wrong tensors) and maps a big-endian one before swapping."""
    with open_input(path) as file:
        torch_archive = TorchArchive(open_zip(file))
        return not torch_archive.big_endian and not any(r.compressed for r in torch_archive.archive.records.values())


def read_torch_zip(path: Path, *, select: str | None = None) -> Checkpoint:
    """The checkpoint of a torch.save zip, read without torch and without running its pickle."""
    return read_torch_archive(open_input(path), select=select)


__all__ = ["read_torch_zip", "read_torch_archive", "read_data_pickle", "maps_in_place", "ZIP_MAGIC", "EMPTY_ZIP_MAGIC"]
