"""torch.save zip files read without importing torch, for the common case.

Importing torch costs about a second and torch's weights_only unpickler about a second per
10 000 tensors; neither is needed to read a state dict of dense tensors. This reader parses
`data.pkl` with an unpickler that knows only the globals such a file uses (allow-listed below,
each mapped to a stand-in that records shape, stride and storage), finds the state dict in the
usual wrappers, and serves each tensor's bytes from its own memory map of the zip records.

Anything else (another global, a non-contiguous view, a legacy file, a damaged archive, a
pickle that asks for code) is not judged here: `read_torch` hands the file to
`torch_file.read_torch`, which loads it with torch.load(weights_only=True), reports unsafe
pickles and keeps every other rule. This module never executes anything a file names.

    archive/data.pkl      OrderedDict{name: _rebuild_tensor_v2(persistent_load(("storage",
                          torch.FloatStorage, "0", "cpu", numel)), offset, size, stride, ...)}
    archive/data/0 ...    the storages' raw little-endian bytes, one record each
"""

from __future__ import annotations

import importlib
import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from convmigrate.entries import Checkpoint, Entry, TensorEntry, ValueEntry
from convmigrate.errors import UnreadableCheckpointError
from convmigrate.formats.filemap import MappedFile, map_file
from convmigrate.formats.pages import PageReleaser
from convmigrate.vocab import BY_TORCH_STORAGE, DTYPES, DType, Format

# Keys under which training code stores the model's state dict, tried in this order.
WRAPPER_KEYS: tuple[str, ...] = (
    "state_dict",  # PyTorch Lightning, most trainers
    "model_state_dict",  # PyTorch tutorials' checkpoint recipe
    "model",  # timm/DeiT train output, fairseq, detectron2
    "module",  # DeepSpeed
    "state",
    "ema",  # timm/YOLO exponential moving average
    "model_ema",
    "ema_state_dict",
    "net",
    "network",
    "weights",
    "params",  # BasicSR / ESRGAN
    "params_ema",
    "generator",  # GANs
)
MAX_WRAPPER_DEPTH = 3
PLAIN_VALUE_TYPES = (bool, int, float, str)
DATA_PARALLEL_PREFIX = "module."
_LOCAL_HEADER_SIZE = 30
ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"
# torch's legacy (pre-1.6) format opens with pickle protocol 2 and a LONG1 magic number.
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
PICKLE_PROTO = b"\x80"


def sniff(path: Path, head: bytes) -> bool:
    """A zip (torch >= 1.6), or a pickle (the legacy format starts with protocol 2 and a magic)."""
    return head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC, TORCH_LEGACY_MAGIC, PICKLE_PROTO))


# --------------------------------------------------------------------------- the state dict
def _holds_tensors(value: object, is_tensor: Callable[[object], bool], as_mapping: Callable, depth: int) -> bool:
    value = as_mapping(value, "", None)
    if not isinstance(value, Mapping) or depth > MAX_WRAPPER_DEPTH:
        return False
    return any(is_tensor(v) or _holds_tensors(v, is_tensor, as_mapping, depth + 1) for v in value.values())


def _as_is(value: object, where: str, notes: list[str] | None) -> object:
    return value


def find_state_dict(
    path: Path,
    loaded: object,
    notes: list[str],
    is_tensor: Callable[[object], bool],
    as_mapping: Callable[[object, str, list[str] | None], object] = _as_is,
    where: str = "",
    depth: int = 0,
) -> Mapping:
    """The mapping of names to tensors inside `loaded`, noting which wrapper key it came from.

    `is_tensor` says what a tensor is to the caller; `as_mapping` may turn a value into a
    mapping (torch_file: a whole pickled nn.Module into its state_dict(), noted in `notes`).
    """
    loaded = as_mapping(loaded, where, notes)
    if not isinstance(loaded, Mapping):
        raise UnreadableCheckpointError(path, f"holds a {type(loaded).__name__}{where}, not a state dict (a mapping of names to tensors)")
    if any(is_tensor(v) for v in loaded.values()):
        return loaded
    if all(isinstance(v, PLAIN_VALUE_TYPES) for v in loaded.values()):
        notes.append(f"the state dict{where} holds no tensors, only {len(loaded)} plain values")
        return loaded  # e.g. what we write for a checkpoint of values only
    keys = [k for k in WRAPPER_KEYS if k in loaded] + [k for k in loaded if k not in WRAPPER_KEYS]
    for key in keys:
        if depth < MAX_WRAPPER_DEPTH and _holds_tensors(loaded[key], is_tensor, as_mapping, 0):
            others = [repr(k) for k in loaded if k != key]
            left_out = f"; left out the other keys: {', '.join(others)}" if others else ""
            notes.append(f"state dict found under {where}[{key!r}]{left_out}")
            return find_state_dict(path, loaded[key], notes, is_tensor, as_mapping, f"{where}[{key!r}]", depth + 1)
    top = ", ".join(repr(k) for k in list(loaded)[:10]) or "none"
    raise UnreadableCheckpointError(path, f"holds no tensors{where} (keys: {top}); it is not a model checkpoint")


def state_dict_notes(tensor_names: list[str], left_out: list[str]) -> list[str]:
    """What the reader tells the user about entries it left out and DataParallel prefixes."""
    notes = []
    if left_out:
        notes.append(f"left out {len(left_out)} entries that are neither tensors nor plain values: {', '.join(left_out)}")
    if tensor_names and all(name.startswith(DATA_PARALLEL_PREFIX) for name in tensor_names):
        notes.append("every tensor name starts with 'module.' (saved from DataParallel/DistributedDataParallel); kept as is")
    return notes


# --------------------------------------------------------------------------- zip records
def zip_records(file: MappedFile, infos: list[zipfile.ZipInfo]) -> dict[str, tuple[int, int]]:
    """Record name -> (data offset, stored size) for every uncompressed record that fits.

    Local headers are read with pread, not through the map: touching 4 000 headers spread over
    a 2 GB file would fault ~64 KiB around each into this process (+66 MiB peak RSS here).
    """
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


# --------------------------------------------------------------------------- the unpickler
class NeedsTorch(Exception):
    """The file holds something only torch.load should judge."""


@dataclass(frozen=True)
class _StorageType:
    dtype: DType | None  # None: an UntypedStorage (bytes; the dtype comes with the tensor)


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: DType | None
    numel: int  # elements of dtype (bytes for an untyped storage)


@dataclass(frozen=True)
class _Tensor:
    storage: _Storage
    dtype: DType
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def contiguous(self) -> bool:
        """torch's is_contiguous: strides of C order, ignoring axes of size 1; empty is contiguous."""
        if 0 in self.shape:
            return True
        expected = 1
        for size, step in zip(reversed(self.shape), reversed(self.stride)):
            if size != 1 and step != expected:
                return False
            expected *= size
        return True


def _rebuild_v2(storage: _Storage, offset: int, size: tuple, stride: tuple, requires_grad: bool = False,
                hooks: object = None, metadata: object = None) -> _Tensor:
    if storage.dtype is None or metadata:
        raise NeedsTorch("a typed storage without extra tensor metadata was expected")
    return _Tensor(storage, storage.dtype, int(offset), tuple(size), tuple(stride))


def _rebuild_v3(storage: _Storage, offset: int, size: tuple, stride: tuple, requires_grad: bool,
                hooks: object, dtype: DType, metadata: object = None) -> _Tensor:
    if not isinstance(dtype, DType) or metadata:
        raise NeedsTorch("an untyped storage with a known dtype was expected")
    return _Tensor(storage, dtype, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data: _Tensor, requires_grad: bool, hooks: object) -> _Tensor:
    return data  # nn.Parameter: the same bytes


# The only globals a plain state dict needs. Anything else goes to torch.load(weights_only).
_ALLOWED: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "UntypedStorage"): _StorageType(None),
    ("torch.storage", "UntypedStorage"): _StorageType(None),  # what torch 2.x writes for uint16/32/64
    **{("torch", storage): _StorageType(dtype) for storage, dtype in BY_TORCH_STORAGE.items()},
    **{("torch", name): dtype for name, dtype in DTYPES.items()},  # dtype arguments of _v3
}


class _StateUnpickler(pickle.Unpickler):
    """Builds stand-ins for the allow-listed globals; refuses every other one."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise NeedsTorch(f"{module}.{name}") from None

    def persistent_load(self, saved_id: object) -> _Storage:
        if not (isinstance(saved_id, tuple) and len(saved_id) == 5 and saved_id[0] == "storage"):
            raise NeedsTorch("an unknown persistent id")
        _, storage_type, key, _location, numel = saved_id
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not isinstance(numel, int):
            raise NeedsTorch("an unknown storage")
        return _Storage(key, storage_type.dtype, numel)


# --------------------------------------------------------------------------- reading
def _data_pickle(infos: list[zipfile.ZipInfo]) -> zipfile.ZipInfo | None:
    found = [i for i in infos if i.filename == "data.pkl" or i.filename.endswith("/data.pkl")]
    return found[0] if len(found) == 1 else None


def _sources(records: dict[str, tuple[int, int]], prefix: str, mapped_file: MappedFile):
    """(source_for(name, tensor), close) over one read-only map of the file."""
    mapped = mapped_file.data
    view = memoryview(mapped) if mapped is not None else memoryview(b"")

    def open_view(name: str) -> memoryview:
        if mapped_file.closed:
            raise ValueError(f"{name}: the checkpoint was closed")
        return view

    def source_for(name: str, tensor: _Tensor) -> Callable[[], tuple[memoryview]]:
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
        start = record[0] + first
        return lambda: (open_view(name)[start : start + nbytes],)

    return source_for, mapped_file.closer(view)


def read_torch_zip(path: Path) -> Checkpoint | None:
    """The checkpoint, read without torch; None when torch.load must judge the file."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            pickle_info = _data_pickle(infos)
            if pickle_info is None:
                return None
            data = archive.read(pickle_info)
        loaded = _StateUnpickler(io.BytesIO(data)).load()
    except (NeedsTorch, zipfile.BadZipFile, OSError, EOFError, ValueError, TypeError, KeyError,
            AttributeError, IndexError, pickle.UnpicklingError, RecursionError, struct.error):
        return None  # torch.load gives the precise verdict (unsafe, damaged, unsupported)
    prefix = pickle_info.filename[: -len("data.pkl")]
    notes: list[str] = []
    try:
        state = find_state_dict(path, loaded, notes, lambda v: isinstance(v, _Tensor))
    except UnreadableCheckpointError:
        return None  # the same verdict comes from torch_file, with torch's own view of the file
    mapped_file = map_file(path)
    mapped = mapped_file.data
    records = zip_records(mapped_file, infos)
    source_for, close = _sources(records, prefix, mapped_file)
    releaser = PageReleaser.for_map(mapped)
    release = releaser.release if releaser is not None else None
    entries: list[Entry] = []
    left_out: list[str] = []
    try:
        for name, value in state.items():
            if not isinstance(name, str):
                left_out.append(f"{name!r} (a {type(name).__name__} key)")
            elif isinstance(value, _Tensor):
                entries.append(
                    TensorEntry(name, value.dtype, value.shape, source_for(name, value), release, mapped_file.locate)
                )
            elif isinstance(value, PLAIN_VALUE_TYPES):
                entries.append(ValueEntry(name, value))
            else:
                left_out.append(f"{name!r} ({type(value).__name__})")
    except NeedsTorch:
        close()
        return None
    notes += state_dict_notes([e.name for e in entries if isinstance(e, TensorEntry)], left_out)
    checkpoint = Checkpoint(Format.TORCH, entries, notes=notes)
    checkpoint.add_closer(close)
    return checkpoint


def read_torch(path: Path, *, trust_pickle: bool = False) -> Checkpoint:
    """Open a torch.save file: without torch when it is a plain state dict, else via torch.load.

    Example:
        >>> with read_torch(Path("model.pt")) as checkpoint:                # doctest: +SKIP
        ...     print(len(checkpoint.entries))
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        checkpoint = read_torch_zip(path)
        if checkpoint is not None:
            return checkpoint
    return importlib.import_module("convmigrate.formats.torch_file").read_torch(path, trust_pickle=trust_pickle)
