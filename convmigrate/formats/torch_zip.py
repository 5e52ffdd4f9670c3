"""torch.save zip files (PyTorch >= 1.6) read without importing torch: the zip container.

Importing torch costs about a second and torch's weights_only unpickler about a second per
10 000 tensors; neither is needed to read a state dict of dense tensors. This module maps the
zip's records and reads `data.pkl`; `pickle_reader` turns the pickle into plain data and tensor
records, `state_dict` finds the state dict in it, and `torch_storage` serves each tensor's
bytes from its storage record in the open file (formats/input_file.py).

Nothing the pickle names is imported or run (`pickle_reader`): a checkpoint with config objects,
a whole pickled model or code in stand-in position is read like a plain state dict.

    archive/data.pkl      OrderedDict{name: _rebuild_tensor_v2(persistent_load(("storage",
                          torch.FloatStorage, "0", "cpu", numel)), offset, size, stride, ...)}
    archive/data/0 ...    the storages' raw little-endian bytes, one record each
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

from convmigrate.entries import Checkpoint
from convmigrate.errors import UnreadableCheckpointError
from convmigrate.formats.input_file import InputFile, open_input
from convmigrate.formats.state_dict import find_state_dict, load_state_pickle
from convmigrate.formats.torch_storage import storage_checkpoint

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


def _archive(path: Path) -> tuple[list[zipfile.ZipInfo], zipfile.ZipInfo, bytes]:
    """The zip's records, its data.pkl record and that pickle's bytes."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            pickle_info = _data_pickle(infos)
            if pickle_info is None:
                raise UnreadableCheckpointError(path, "is a zip without exactly one data.pkl: not a torch.save file")
            return infos, pickle_info, archive.read(pickle_info)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error) as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UnreadableCheckpointError(path, f"is a damaged zip ({detail})") from exc


def read_data_pickle(path: Path) -> object:
    """What data.pkl holds, read inertly (tensors as records; nothing run or imported)."""
    return load_state_pickle(path, _archive(path)[2])


def read_torch_zip(path: Path, *, select: str | None = None) -> Checkpoint:
    """The checkpoint of a torch.save zip, read without torch and without running its pickle.

    `select` chooses the state dict in a file that holds several (see state_dict.find_state_dict).
    """
    infos, pickle_info, data = _archive(path)
    state = find_state_dict(path, load_state_pickle(path, data), select=select)
    prefix = pickle_info.filename[: -len("data.pkl")]
    file = open_input(path)
    try:
        records = zip_records(file, infos)
    except BaseException:
        file.close()
        raise
    storages = {name[len(prefix) + 5 :]: where for name, where in records.items() if name.startswith(f"{prefix}data/")}
    return storage_checkpoint(path, state, storages, file, where=lambda key: f"record {prefix}data/{key}")
