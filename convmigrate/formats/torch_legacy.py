"""torch.save's legacy (pre-1.6) format read without torch, its tensors read in place.

PyTorch before 1.6 (and `torch.save(..., _use_new_zipfile_serialization=False)` since) writes
five pickles and then the storages' bytes, all in one stream:

    pickle  0x1950a86a20f9469cfc6c     the magic number (a LONG1)
    pickle  1001                       the protocol version
    pickle  {"protocol_version": 1001, "little_endian": True, "type_sizes": {...}}
    pickle  the object; each storage is a persistent id
            ("storage", torch.FloatStorage, key, location, numel, view_metadata)
            with view_metadata None or (view key, offset, size) for a storage view,
            and a whole model's classes as ("module", class, source file, source)
    pickle  [key, ...]                 the storage keys, in the order their bytes follow
    then per key: numel (8 bytes, little-endian), numel x element size raw little-endian bytes

The storages' bytes are little-endian whatever the machine that wrote them (torch swaps on
big-endian machines). Every count is checked against the bytes the file still holds, and
against the numel the pickle claimed for that storage (as torch.load checks it), before any
tensor exists. The pickles are read with `pickle_reader` (nothing the file names is imported or
run) from a window of the file that grows until the pickle ends, up to PICKLE_MAX_BYTES: only
the pickles are read into memory, never the storages after them.
"""

from __future__ import annotations

import struct
from pathlib import Path

from convmigrate.entries import Checkpoint
from convmigrate.errors import UnreadableCheckpointError
from convmigrate.formats.input_file import InputFile, open_input
from convmigrate.formats.pickle_reader import (
    PickleError,
    PickleTruncated,
    StorageRecord,
    Unpickler,
    storage_record,
)
from convmigrate.formats.state_dict import find_state_dict
from convmigrate.formats.torch_storage import storage_checkpoint
from convmigrate.limits import PICKLE_MAX_BYTES, MiB

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
_COUNT = struct.Struct("<q")
_FIRST_WINDOW = 1 * MiB  # most legacy pickles are far smaller; a bigger one is read again in a 4x window


class _LegacyStorages:
    """persistent_load of the legacy format: storages (and views of them) by key."""

    def __init__(self) -> None:
        self.roots: dict[str, StorageRecord] = {}

    def __call__(self, pid: object) -> object:
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module":
            return pid[1]  # a whole model's class, saved with its source: the class stand-in, never the source
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise PickleError("a persistent id of the legacy format is neither a storage nor a module")
        _, storage_type, key, _location, numel, view = pid
        root = storage_record(storage_type, key, numel, self.roots)
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3 and all(type(v) is int for v in view[1:])):
            raise PickleError(f"storage {key!r} has a view description that is not (key, offset, size)")
        _view_key, offset, size = view
        if offset < 0 or size < 0 or offset + size > root.numel:
            raise PickleError(f"a view of storage {key!r} ({offset} + {size} elements) reaches past its {root.numel}")
        return StorageRecord(root.key, root.dtype, root.numel, offset, root.type_name)


def _no_storages(pid: object) -> object:
    raise PickleError("a header pickle of the legacy format names a storage")


def _pickle(file: InputFile, start: int, storages: _LegacyStorages | None = None) -> tuple[object, int]:
    """The pickle at `start` and where it ends: read from a window that grows while it is short."""
    remain = file.size - start
    window = min(_FIRST_WINDOW, remain, PICKLE_MAX_BYTES)
    while True:
        machine = Unpickler(file.read_at(start, window), persistent_load=storages or _no_storages)
        try:
            return machine.load(), start + machine.position
        except PickleTruncated as exc:
            if window < min(remain, PICKLE_MAX_BYTES):
                window = min(4 * window, remain, PICKLE_MAX_BYTES)
                continue
            if window < remain:
                raise UnreadableCheckpointError(
                    file.path, f"its pickle at byte {start:,} is larger than {PICKLE_MAX_BYTES:,} bytes (PICKLE_MAX_BYTES)"
                ) from None
            raise UnreadableCheckpointError(file.path, str(exc)) from None
        except PickleError as exc:
            raise UnreadableCheckpointError(file.path, str(exc)) from None


def _header(file: InputFile) -> int:
    """Where the object's pickle starts, after the magic number, version and sys_info."""
    magic, at = _pickle(file, 0)
    if magic != MAGIC_NUMBER:
        raise UnreadableCheckpointError(file.path, "is a pickle but not a torch.save file (it lacks torch's magic number)")
    version, at = _pickle(file, at)
    if version != PROTOCOL_VERSION:
        raise UnreadableCheckpointError(
            file.path, f"is a legacy torch.save file of protocol {version!r}; only {PROTOCOL_VERSION} exists"
        )
    sys_info, at = _pickle(file, at)
    if not isinstance(sys_info, dict):
        raise UnreadableCheckpointError(file.path, "is a legacy torch.save file whose sys_info is not a dict: it is damaged")
    return at


def _storage_bytes(file: InputFile, at: int, keys: object, storages: _LegacyStorages) -> dict[str, tuple[int, int]]:
    """key -> (offset, size) of each storage's bytes, every count checked against the file."""
    path = file.path
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise UnreadableCheckpointError(path, "is a legacy torch.save file whose storage keys are not a list of texts")
    located: dict[str, tuple[int, int]] = {}
    for key in keys:
        root = storages.roots.get(key)
        if root is None or key in located:
            raise UnreadableCheckpointError(path, f"lists storage {key!r} {'twice' if root else 'that its pickle never names'}")
        if at + _COUNT.size > file.size:
            raise UnreadableCheckpointError(path, f"ends before the size of storage {key!r} (at byte {at:,}): it is truncated")
        (count,) = _COUNT.unpack(file.read_at(at, _COUNT.size))
        at += _COUNT.size
        if count != root.numel:
            raise UnreadableCheckpointError(path, f"storage {key!r} holds {count:,} elements, its pickle claims {root.numel:,}")
        nbytes = count * root.itemsize
        if nbytes > file.size - at:
            raise UnreadableCheckpointError(
                path, f"storage {key!r} claims {nbytes:,} bytes at byte {at:,}, where {file.size - at:,} remain: it is truncated"
            )
        located[key] = (at, nbytes)
        at += nbytes
    return located


def _contents(file: InputFile) -> tuple[object, dict[str, tuple[int, int]]]:
    if not file.size:
        raise UnreadableCheckpointError(file.path, "is empty (0 bytes); it holds no checkpoint")
    storages = _LegacyStorages()
    loaded, at = _pickle(file, _header(file), storages)
    keys, at = _pickle(file, at)
    return loaded, _storage_bytes(file, at, keys, storages)


def read_legacy_contents(path: Path) -> tuple[object, dict[str, tuple[int, int]]]:
    """What the object's pickle holds (read inertly: tensors as records, nothing run) and where
    each storage's bytes lie in the file: key -> (offset, size), every claim checked."""
    with open_input(path) as file:
        return _contents(file)


def read_torch_legacy(path: Path, *, select: str | None = None) -> Checkpoint:
    """The checkpoint of a legacy torch.save file, read without torch, its tensors read in place.

    Example:
        >>> import torch
        >>> torch.save({"w": torch.ones(2)}, "old.pt", _use_new_zipfile_serialization=False)
        >>> with read_torch_legacy(Path("old.pt")) as checkpoint:
        ...     print([e.name for e in checkpoint.entries])
        ['w']
    """
    file = open_input(path)
    try:
        loaded, located = _contents(file)
        state = find_state_dict(path, loaded, select=select)
        state.notes.insert(0, "legacy (pre-1.6) torch.save format")
    except BaseException:
        file.close()
        raise
    return storage_checkpoint(path, state, located, file)


__all__ = ["read_torch_legacy", "read_legacy_contents", "MAGIC_NUMBER"]
