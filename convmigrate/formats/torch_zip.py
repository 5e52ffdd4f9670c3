"""torch.save zip files (PyTorch >= 1.6) read without importing torch: the zip container.

Importing torch costs about a second and torch's weights_only unpickler about a second per
10 000 tensors; neither is needed to read a state dict of dense tensors. This module maps the
zip's records and reads `data.pkl`; `pickle_reader` turns the pickle into plain data and tensor
records, `state_dict` finds the state dict in it, and each tensor's bytes are read from its
storage record in the open file (formats/input_file.py).

`read_torch_zip` returns None for what it does not serve (another global, a non-contiguous
view, a damaged archive, a pickle that asks for code): `torch_file.read_torch` then hands the
file to torch.load. This module never executes anything a file names.

    archive/data.pkl      OrderedDict{name: _rebuild_tensor_v2(persistent_load(("storage",
                          torch.FloatStorage, "0", "cpu", numel)), offset, size, stride, ...)}
    archive/data/0 ...    the storages' raw little-endian bytes, one record each
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

from convmigrate.entries import Checkpoint, Entry, TensorEntry, ValueEntry
from convmigrate.errors import UnreadableCheckpointError
from convmigrate.formats.input_file import FileSpans, InputFile, open_input
from convmigrate.formats.pickle_reader import NeedsTorch, TensorRecord, load_pickle
from convmigrate.formats.state_dict import PLAIN_VALUE_TYPES, find_state_dict, state_dict_notes
from convmigrate.vocab import Format

_LOCAL_HEADER_SIZE = 30
ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"


# --------------------------------------------------------------------------- zip records
def zip_records(file: InputFile, infos: list[zipfile.ZipInfo]) -> dict[str, tuple[int, int]]:
    """Record name -> (data offset, stored size) for every uncompressed record that fits."""
    records: dict[str, tuple[int, int]] = {}
    for info in infos:
        at = info.header_offset
        if info.compress_type != zipfile.ZIP_STORED or at + _LOCAL_HEADER_SIZE > file.size or file.closed:
            continue
        header = file.read_at(at, _LOCAL_HEADER_SIZE)
        if len(header) < _LOCAL_HEADER_SIZE or header[:4] != b"PK\x03\x04":
            continue
        name_length, extra_length = struct.unpack_from("<HH", header, 26)
        start = at + _LOCAL_HEADER_SIZE + name_length + extra_length
        if start + info.compress_size <= file.size:
            records[info.filename] = (start, info.compress_size)
    return records


# --------------------------------------------------------------------------- reading
def _data_pickle(infos: list[zipfile.ZipInfo]) -> zipfile.ZipInfo | None:
    found = [i for i in infos if i.filename == "data.pkl" or i.filename.endswith("/data.pkl")]
    return found[0] if len(found) == 1 else None


def _sources(records: dict[str, tuple[int, int]], prefix: str, file: InputFile) -> Callable[[str, TensorRecord], FileSpans]:
    """source_for(name, tensor): the tensor's bytes in its storage's record."""

    def source_for(name: str, tensor: TensorRecord) -> FileSpans:
        storage = tensor.storage
        record = records.get(f"{prefix}data/{storage.key}")
        storage_bytes = storage.numel * (storage.dtype.itemsize if storage.dtype else 1)
        numel = 1
        for size in tensor.shape:
            numel *= size
        nbytes = numel * tensor.dtype.itemsize
        first = tensor.offset * tensor.dtype.itemsize
        if record is None or record[1] < storage_bytes or not tensor.contiguous() or first < 0 \
                or (numel and first + nbytes > storage_bytes):
            raise NeedsTorch(f"{name}: a record or view this reader does not serve")
        return file.spans([(record[0] + first, nbytes)] if numel else [])

    return source_for


# What reading the zip or unpickling data.pkl may raise for a file that torch.load must judge.
# NotImplementedError (a zip version or compression zipfile lacks) and OverflowError (a pickle
# BYTEARRAY8 of 2^63 bytes) were found by fuzzing (tests/fuzz).
LEFT_TO_TORCH_LOAD: tuple[type[BaseException], ...] = (
    NeedsTorch, zipfile.BadZipFile, OSError, EOFError, ValueError, TypeError, KeyError, AttributeError, IndexError,
    pickle.UnpicklingError, RecursionError, struct.error, NotImplementedError, OverflowError,
)


def read_torch_zip(path: Path) -> Checkpoint | None:
    """The checkpoint, read without torch; None when torch.load must judge the file."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            pickle_info = _data_pickle(infos)
            if pickle_info is None:
                return None
            data = archive.read(pickle_info)
        loaded = load_pickle(data)
    except LEFT_TO_TORCH_LOAD:
        return None  # torch.load gives the precise verdict (unsafe, damaged, unsupported)
    prefix = pickle_info.filename[: -len("data.pkl")]
    notes: list[str] = []
    try:
        state = find_state_dict(path, loaded, notes, lambda v: isinstance(v, TensorRecord))
    except UnreadableCheckpointError:
        return None  # the same verdict comes from torch_file, with torch's own view of the file
    file = open_input(path)
    records = zip_records(file, infos)
    source_for = _sources(records, prefix, file)
    entries: list[Entry] = []
    left_out: list[str] = []
    try:
        for name, value in state.items():
            if not isinstance(name, str):
                left_out.append(f"{name!r} (a {type(name).__name__} key)")
            elif isinstance(value, TensorRecord):
                entries.append(TensorEntry(name, value.dtype, value.shape, source_for(name, value)))
            elif isinstance(value, PLAIN_VALUE_TYPES):
                entries.append(ValueEntry(name, value))
            else:
                left_out.append(f"{name!r} ({type(value).__name__})")
    except NeedsTorch:
        file.close()
        return None
    notes += state_dict_notes([e.name for e in entries if isinstance(e, TensorEntry)], left_out)
    checkpoint = Checkpoint(Format.TORCH, entries, notes=notes)
    checkpoint.add_closer(file.close)
    return checkpoint
