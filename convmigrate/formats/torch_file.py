"""torch.save files: a reader over torch.load, and a streaming writer of torch's zip format.

This is the only module that imports torch. A zip file holding a plain state dict is read by
`torch_zip` without torch; this reader serves everything else (legacy files, views, pickled
modules, files that torch.load must refuse) and is that reader's fallback.

Reading uses `torch.load(map_location="cpu", weights_only=True)`, memory-mapped for zip files
(`mmap=True` exists for the zip format only; a legacy pre-1.6 file is read into memory). A file
that weights_only refuses would run pickle code when loaded: it raises `UnsafePickleError`
naming the global it asked for, unless `trust_pickle` is given. The state dict is found inside
the usual training wrappers (see `torch_zip.WRAPPER_KEYS`); what was left out is recorded in
`Checkpoint.notes`, never dropped silently. A tensor entry's bytes are the tensor's own logical
C-order bytes (a view that is non-contiguous, offset into, or shares a bigger storage gives only
its own elements), produced when asked for: zero-copy for contiguous tensors.

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

In data.pkl each tensor is `torch._utils._rebuild_tensor_v2(persistent_load(("storage",
torch.<Type>Storage, key, "cpu", numel)), 0, size, stride, False, OrderedDict())`; uint16/32/64
have no legacy storage class, so, as torch does, they use `_rebuild_tensor_v3` with an
`UntypedStorage` of `nbytes` and the dtype as the last argument. Plain values are pickled as
themselves. The `metadata` argument is ignored: torch.save files have no place for it.

Example:
    >>> with read_torch(Path("model.pt")) as ckpt:                         # doctest: +SKIP
    ...     with open("copy.pt", "wb") as stream:
    ...         write_torch(stream, ckpt.entries, metadata={})
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
import re
import struct
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from convmigrate.entries import Checkpoint, Entry, Locate, TensorEntry, ValueEntry
from convmigrate.errors import UnreadableCheckpointError, UnsafePickleError, UsageError, WriteError
from convmigrate.formats.pages import PageReleaser
from convmigrate.formats.bytecopy import TensorBytesWriter
from convmigrate.formats.filemap import map_file
from convmigrate.formats.torch_zip import PLAIN_VALUE_TYPES, find_state_dict, state_dict_notes, zip_records
from convmigrate.vocab import DTYPES, Format

# --------------------------------------------------------------------------- reading


def _wanted_global(error: BaseException) -> str | None:
    """The global a refused pickle asked for, from torch's weights_only message (None: none)."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    return found.group(1) if found else None


def _unpickler_detail(error: BaseException) -> str:
    """What torch's weights_only unpickler stopped at (e.g. "Unsupported operand 144")."""
    detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(error))
    return detail.group(1).strip() if detail else "no detail given"


def _load(path: Path, *, zipped: bool, trust_pickle: bool, notes: list[str], meta: bool = False) -> object:
    """torch.load, safely; with `meta`, the weights_only load of a zip file builds meta tensors
    (no data touched) whose storages know their offset in the file (see _MappedFile)."""

    def load(weights_only: bool) -> object:
        # torch's warnings would print beside our one-line error: they become notes on success.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if path.name.endswith(".safetensors"):  # torch.load would read such a path as safetensors
                with open(path, "rb") as stream:  # a file object is judged by content (but not mapped)
                    loaded = torch.load(stream, map_location="cpu", weights_only=weights_only)
            elif meta and weights_only:
                loaded = torch.load(str(path), map_location="meta", weights_only=True)
            else:
                loaded = torch.load(str(path), map_location="cpu", weights_only=weights_only, mmap=zipped)
        notes.extend(f"torch.load warned: {(str(w.message).strip().splitlines() or [w.category.__name__])[0]}" for w in caught)
        return loaded

    try:
        try:
            return load(weights_only=True)
        except pickle.UnpicklingError as exc:
            if "Weights only load failed" not in str(exc):
                raise
            if not trust_pickle:
                wanted = _wanted_global(exc)
                if wanted is None:  # no code asked for: a damaged pickle (or opcodes it refuses)
                    raise UnreadableCheckpointError(
                        path,
                        f"its pickle is damaged, or holds what torch.load(weights_only=True) refuses "
                        f"({_unpickler_detail(exc)}); pass --trust-pickle only if you trust where the file came from",
                    ) from None
                raise UnsafePickleError(
                    path,
                    f"loading it would run pickle code (it asks for global {wanted}); "
                    "pass --trust-pickle only if you trust where the file came from",
                ) from None
            return load(weights_only=False)
    except UnreadableCheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, pickle errors...
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UnreadableCheckpointError(path, f"torch.load cannot read it ({type(exc).__name__}: {first_line})") from exc


def _module_as_mapping(value: object, where: str, notes: list[str] | None) -> object:
    """A whole pickled nn.Module (trusted) stands for its state_dict()."""
    if not isinstance(value, torch.nn.Module):
        return value
    if notes is not None:
        notes.append(f"file{where} holds a whole pickled {type(value).__name__} module; its state_dict() was taken")
    return value.state_dict()


def _find_state_dict(path: Path, loaded: object, notes: list[str]) -> Mapping:
    return find_state_dict(path, loaded, notes, lambda v: isinstance(v, torch.Tensor), _module_as_mapping)


def _source(tensors: dict[str, torch.Tensor], name: str) -> Callable[[], tuple[memoryview]]:
    def source() -> tuple[memoryview]:
        if name not in tensors:
            raise ValueError(f"{name}: the checkpoint was closed")
        tensor = tensors[name].detach().resolve_conj().resolve_neg()
        # contiguous() is the tensor itself when it is contiguous (zero copy, even when it is
        # offset into a shared storage) and a C-order copy of its own elements otherwise.
        flat = tensor.contiguous().reshape(-1).view(torch.uint8)
        return (memoryview(flat.numpy()),)

    return source


def _tensor_entry(path: Path, name: str, tensor: torch.Tensor, tensors: dict[str, torch.Tensor]) -> TensorEntry:
    dtype = DTYPES.get(str(tensor.dtype).removeprefix("torch."))
    if dtype is None:
        raise UnreadableCheckpointError(path, f"tensor {name!r} has dtype {tensor.dtype}, which convmigrate does not carry")
    if tensor.layout is not torch.strided or tensor.is_quantized:
        raise UnreadableCheckpointError(path, f"tensor {name!r} is {tensor.layout}{' quantized' if tensor.is_quantized else ''}; only dense tensors can be converted")
    tensors[name] = tensor
    return TensorEntry(name, dtype, tuple(tensor.shape), _source(tensors, name))


class _MappedFile:
    """A zip .pt mapped by us, serving the bytes of the meta tensors torch.load built from it.

    torch.load(map_location="meta") reads only data.pkl and records in each storage the offset
    of its data in the file (`_checkpoint_offset`). Reading those bytes from our own read-only
    map, instead of from torch's, lets `PageReleaser` give pages back as the writer streams,
    so a migration runs in constant memory. Every offset is checked against the zip's own
    directory; a tensor this cannot serve (None from `source`) sends the reader back to
    torch.load(mmap=True).
    """

    def __init__(self, path: Path) -> None:
        self.file = map_file(path)
        self.mapped, self.size = self.file.data, self.file.size
        self.view = memoryview(self.mapped) if self.mapped is not None else memoryview(b"")
        self.records = self._record_sizes(path)
        self.releaser = PageReleaser.for_map(self.mapped)
        if self.releaser is not None:
            self.releaser.release_all()  # reading 4 000 local headers faulted in ~64 KiB around each
        self.closed = False

    def _record_sizes(self, path: Path) -> dict[int, int]:
        """Data offset -> stored size of every record, from the central directory and local headers."""
        try:
            with zipfile.ZipFile(path) as archive:
                infos = archive.infolist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return {}
        return dict(zip_records(self.mapped, self.size, infos).values())

    def close(self) -> None:
        self.closed = True
        self.file.closer(self.view)()

    def _open_view(self, name: str) -> memoryview:
        if self.closed:
            raise ValueError(f"{name}: the checkpoint was closed")
        return self.view

    def source(self, name: str, tensor: torch.Tensor) -> Callable[[], tuple[memoryview]] | None:
        """The tensor's own C-order bytes from the map (zero-copy when contiguous), or None."""
        storage = tensor.untyped_storage()
        offset = getattr(storage, "_checkpoint_offset", None)
        if not isinstance(offset, int) or tensor.is_neg() or tensor.is_conj() or tensor.layout is not torch.strided:
            return None
        storage_bytes = storage.nbytes()
        if self.records.get(offset, -1) < storage_bytes:
            return None
        itemsize, first, shape, stride = tensor.element_size(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride()
        if tensor.numel() == 0:
            return lambda: (memoryview(b""),)
        last = first + sum((n - 1) * step for n, step in zip(shape, stride))
        if first < 0 or min(stride, default=0) < 0 or (last + 1) * itemsize > storage_bytes:
            return None
        start = offset + first * itemsize
        if tensor.is_contiguous():
            stop = start + tensor.numel() * itemsize
            return lambda: (self._open_view(name)[start:stop],)

        def gather() -> tuple[memoryview]:
            # A view into a bigger storage, not in C order: its own elements, copied (like contiguous()).
            elements = np.frombuffer(self._open_view(name)[start : offset + storage_bytes], dtype=f"V{itemsize}")
            strided = np.lib.stride_tricks.as_strided(
                elements, shape, [step * itemsize for step in stride], writeable=False
            )
            return (memoryview(np.ascontiguousarray(strided).view(np.uint8).reshape(-1)),)

        return gather


def read_torch(path: Path, *, trust_pickle: bool = False) -> Checkpoint:
    """Open a torch.save file (zip or legacy) with its tensors memory-mapped where possible.

    Args:
        path: the file.
        trust_pickle: load it even if that runs pickle code (only for files you trust).

    Returns:
        A TORCH Checkpoint of the state dict's tensors and plain values, in the file's order;
        notes say where the state dict was found and what was left out.

    Raises:
        UnsafePickleError: loading would run pickle code and `trust_pickle` is False.
        UnreadableCheckpointError: torch cannot load it, or it holds no state dict.

    Example:
        >>> with read_torch(Path("model.pt")) as ckpt:                      # doctest: +SKIP
        ...     print(ckpt.notes)
    """
    path = Path(path)
    zipped = zipfile.is_zipfile(path)
    if zipped:
        checkpoint = _read(path, zipped=True, trust_pickle=trust_pickle, mapped=True)
        if checkpoint is not None:
            return checkpoint
    checkpoint = _read(path, zipped=zipped, trust_pickle=trust_pickle, mapped=False)
    assert checkpoint is not None
    return checkpoint


def _read(path: Path, *, zipped: bool, trust_pickle: bool, mapped: bool) -> Checkpoint | None:
    """read_torch's work; with `mapped`, tensor bytes come from our own map (None: cannot)."""
    notes: list[str] = []
    loaded = _load(path, zipped=zipped, trust_pickle=trust_pickle, notes=notes, meta=mapped)
    if not zipped:
        notes.append("legacy (pre-1.6) torch.save format: tensors were read into memory, not mapped")
    state = _find_state_dict(path, loaded, notes)
    tensors: dict[str, torch.Tensor] = {}
    entries: list[Entry] = []
    left_out: list[str] = []
    mapped_file = _MappedFile(path) if mapped and any(isinstance(v, torch.Tensor) and v.is_meta for v in state.values()) else None
    for name, value in state.items():
        if not isinstance(name, str):
            left_out.append(f"{name!r} (a {type(name).__name__} key)")
        elif isinstance(value, torch.Tensor):
            entry = _tensor_entry(path, name, value, tensors)
            if value.is_meta:
                source = mapped_file.source(name, value) if mapped_file is not None else None
                if source is None:  # torch's own map serves what ours cannot
                    if mapped_file is not None:
                        mapped_file.close()
                    return None
                release = mapped_file.releaser.release if mapped_file.releaser is not None else None
                entry = TensorEntry(entry.name, entry.dtype, entry.shape, source, release, mapped_file.file.locate)
            entries.append(entry)
        elif isinstance(value, PLAIN_VALUE_TYPES):
            entries.append(ValueEntry(name, value))
        else:
            left_out.append(f"{name!r} ({type(value).__name__})")
    notes += state_dict_notes(list(tensors), left_out)
    del loaded, state  # the tensors dict keeps the mapped tensors alive until close()
    checkpoint = Checkpoint(Format.TORCH, entries, notes=notes)
    checkpoint._closers.append(tensors.clear)
    if mapped_file is not None:
        checkpoint._closers.append(mapped_file.close)
    return checkpoint


# --------------------------------------------------------------------------- writing

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

    def add(self, name: str, chunks: Iterable[bytes | memoryview], size: int, locate: Locate | None = None) -> None:
        """One stored record of `size` bytes, its data taken from `chunks` (found by `locate`)."""
        if self.state != "open":
            raise RuntimeError(f"_TorchZipWriter.add({name!r}) after the archive was {self.state}")
        full_name = f"{ARCHIVE_NAME}/{name}".encode("utf-8")
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
        crc, written = 0, 0
        for chunk in chunks:
            crc = self.tensor_bytes.write(memoryview(chunk), locate, crc)
            written += len(chunk)
            self.offset += len(chunk)
        if written != size:
            raise WriteError(f"{name}: wrote {written} bytes where {size} were announced")
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


class _StorageRef:
    """Pickled through persistent_id as torch's ("storage", type, key, location, numel)."""

    def __init__(self, storage_type: type, key: str, numel: int) -> None:
        self.pid = ("storage", storage_type, key, "cpu", numel)


class _TensorRef:
    """Pickles as the `_rebuild_tensor_v2/_v3(...)` call torch writes for a tensor."""

    def __init__(self, entry: TensorEntry, key: str) -> None:
        shape = entry.shape
        stride = tuple(math.prod(max(s, 1) for s in shape[i + 1 :]) for i in range(len(shape)))  # torch's contiguous strides
        if entry.dtype.torch_storage is not None:
            storage = _StorageRef(getattr(torch, entry.dtype.torch_storage), key, entry.numel)
            self.reduced = (torch._utils._rebuild_tensor_v2, (storage, 0, shape, stride, False, OrderedDict()))
        else:  # uint16/32/64: an untyped byte storage and the dtype, as torch.save writes them
            storage = _StorageRef(torch.storage.UntypedStorage, key, entry.nbytes)
            dtype = getattr(torch, entry.dtype.name)
            self.reduced = (torch._utils._rebuild_tensor_v3, (storage, 0, shape, stride, False, OrderedDict(), dtype))

    def __reduce_ex__(self, protocol: int) -> tuple:
        return self.reduced


class _StatePickler(pickle.Pickler):
    def persistent_id(self, obj: object) -> object:
        return obj.pid if isinstance(obj, _StorageRef) else None


def state_dict_pickle(entries: Sequence[Entry]) -> bytes:
    """data.pkl for `entries`: tensors as storage references keyed "0", "1", ... in order."""
    state: OrderedDict[str, object] = OrderedDict()
    key = 0
    for entry in entries:
        if entry.name in state:
            raise UsageError(f"entry name {entry.name!r} appears twice; a state dict needs unique names")
        if isinstance(entry, TensorEntry):
            state[entry.name] = _TensorRef(entry, str(key))
            key += 1
        else:
            state[entry.name] = entry.value
    buffer = io.BytesIO()
    _StatePickler(buffer, protocol=2).dump(state)
    return buffer.getvalue()


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
        >>> with open("model.pt", "wb") as stream:                          # doctest: +SKIP
        ...     write_torch(stream, [TensorEntry.from_array("w", array)], metadata={})
        >>> torch.load("model.pt", weights_only=True, mmap=True)["w"]       # doctest: +SKIP
    """
    del metadata
    zip_writer = _TorchZipWriter(stream)
    data_pkl = state_dict_pickle(entries)
    zip_writer.add("data.pkl", [data_pkl], len(data_pkl))
    for name, content in ((".format_version", b"1"), (".storage_alignment", str(STORAGE_ALIGNMENT).encode()), ("byteorder", b"little")):
        zip_writer.add(name, [content], len(content))
    tensors = [e for e in entries if isinstance(e, TensorEntry)]
    for key, tensor in enumerate(tensors):
        zip_writer.add(f"data/{key}", tensor.checked_chunks(on_bytes), tensor.nbytes, tensor.locate)
    zip_writer.add("version", [FILE_FORMAT_VERSION], len(FILE_FORMAT_VERSION))
    serialization_id = zip_writer.serialization_id()
    zip_writer.add(".data/serialization_id", [serialization_id], len(serialization_id))
    zip_writer.finish()


__all__ = ["read_torch", "write_torch", "state_dict_pickle"]
