"""torch.save files read with torch.load: everything the torch-free reader leaves to torch.

This is the only reader that imports torch. A zip file holding a plain state dict is read by
`torch_zip` without torch; this reader serves everything else (legacy files, views, pickled
modules, files that torch.load must refuse): `torch_file.read_torch` chooses. Writing is
`torch_write`, which needs no torch either.

Reading uses `torch.load(map_location="cpu", weights_only=True)`, memory-mapped for zip files
(`mmap=True` exists for the zip format only; a legacy pre-1.6 file is read into memory). A file
that weights_only refuses would run pickle code when loaded: it raises `UnsafePickleError`
naming the global it asked for, unless `trust_pickle` is given. The state dict is found inside
the usual training wrappers (see `state_dict.WRAPPER_KEYS`); what was left out is recorded in
`Checkpoint.notes`, never dropped silently. A tensor entry's bytes are the tensor's own logical
C-order bytes (a view that is non-contiguous, offset into, or shares a bigger storage gives only
its own elements), produced when asked for: zero-copy for contiguous tensors.

Example:
    >>> with read_torch_load(Path("model.pt")) as ckpt:                    # doctest: +SKIP
    ...     print(ckpt.notes)
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from convmigrate.entries import ByteSource, Checkpoint, Entry, MemoryBytes, TensorEntry, ValueEntry
from convmigrate.errors import UnreadableCheckpointError, UnsafePickleError
from convmigrate.formats.input_file import open_input
from convmigrate.formats.state_dict import PLAIN_VALUE_TYPES, find_state_dict, state_dict_notes
from convmigrate.formats.torch_zip import zip_records
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
    (no data touched) whose storages know their offset in the file (see _RecordFile)."""

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
    except Exception as exc:  # torch raises RuntimeError, EOFError, pickle errors...
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


class _RecordFile:
    """A zip .pt opened by us, serving the bytes of the meta tensors torch.load built from it.

    torch.load(map_location="meta") reads only data.pkl and records in each storage the offset
    of its data in the file (`_checkpoint_offset`). Reading those bytes ourselves (with pread,
    formats/input_file.py), instead of through torch's memory map, keeps memory flat and turns a
    file that shrinks while it is read into an error instead of SIGBUS. Every offset is checked
    against the zip's own directory; a tensor this cannot serve (None from `source`) sends the
    reader back to torch.load(mmap=True).
    """

    def __init__(self, path: Path) -> None:
        self.file = open_input(path)
        self.records = self._record_sizes(path)

    def _record_sizes(self, path: Path) -> dict[int, int]:
        """Data offset -> stored size of every record, from the central directory and local headers."""
        try:
            with zipfile.ZipFile(path) as archive:
                infos = archive.infolist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return {}
        return dict(zip_records(self.file, infos).values())

    def close(self) -> None:
        self.file.close()

    def source(self, name: str, tensor: torch.Tensor) -> ByteSource | None:
        """The tensor's own C-order bytes from the file (a gathered copy when not contiguous), or None."""
        storage = tensor.untyped_storage()
        offset = getattr(storage, "_checkpoint_offset", None)
        if not isinstance(offset, int) or tensor.is_neg() or tensor.is_conj() or tensor.layout is not torch.strided:
            return None
        storage_bytes = storage.nbytes()
        if self.records.get(offset, -1) < storage_bytes:
            return None
        itemsize, first, shape, stride = tensor.element_size(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride()
        if tensor.numel() == 0:
            return self.file.spans([])
        last = first + sum((n - 1) * step for n, step in zip(shape, stride))
        if first < 0 or min(stride, default=0) < 0 or (last + 1) * itemsize > storage_bytes:
            return None
        start = offset + first * itemsize
        if tensor.is_contiguous():
            return self.file.spans([(start, tensor.numel() * itemsize)])
        elements_source = self.file.spans([(start, (last + 1 - first) * itemsize)])

        def gather() -> tuple[memoryview]:
            # A view into a bigger storage, not in C order: its own elements, copied (like contiguous()).
            elements = np.frombuffer(elements_source.read(0, elements_source.size), dtype=f"V{itemsize}")
            strided = np.lib.stride_tricks.as_strided(
                elements, shape, [step * itemsize for step in stride], writeable=False
            )
            return (memoryview(np.ascontiguousarray(strided).view(np.uint8).reshape(-1)),)

        return MemoryBytes(gather)


def read_torch_load(path: Path, *, trust_pickle: bool = False) -> Checkpoint:
    """Open a torch.save file (zip or legacy) with torch.load, tensors memory-mapped where possible.

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
        >>> with read_torch_load(Path("model.pt")) as ckpt:                 # doctest: +SKIP
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
    """read_torch_load's work; with `mapped`, tensor bytes are read by us from the zip records (None: cannot)."""
    notes: list[str] = []
    loaded = _load(path, zipped=zipped, trust_pickle=trust_pickle, notes=notes, meta=mapped)
    if not zipped:
        notes.append("legacy (pre-1.6) torch.save format: tensors were read into memory, not mapped")
    state = _find_state_dict(path, loaded, notes)
    tensors: dict[str, torch.Tensor] = {}
    entries: list[Entry] = []
    left_out: list[str] = []
    mapped_file = _RecordFile(path) if mapped and any(isinstance(v, torch.Tensor) and v.is_meta for v in state.values()) else None
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
                entry = TensorEntry(entry.name, entry.dtype, entry.shape, source)
            entries.append(entry)
        elif isinstance(value, PLAIN_VALUE_TYPES):
            entries.append(ValueEntry(name, value))
        else:
            left_out.append(f"{name!r} ({type(value).__name__})")
    notes += state_dict_notes(list(tensors), left_out)
    del loaded, state  # the tensors dict keeps the mapped tensors alive until close()
    checkpoint = Checkpoint(Format.TORCH, entries, notes=notes)
    checkpoint.add_closer(tensors.clear)
    if mapped_file is not None:
        checkpoint.add_closer(mapped_file.close)
    return checkpoint


__all__ = ["read_torch_load"]
