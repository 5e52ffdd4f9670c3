"""torch.save's pickle (`data.pkl`) read without importing torch: stand-ins and tensor records.

An unpickler that knows only the globals a plain state dict uses (allow-listed below, each
mapped to a stand-in that records shape, stride and storage). What comes out is plain data
(dicts, lists, tuples, numbers, strings) with a `TensorRecord` where each tensor was: storage
key, dtype, offset, shape and stride, never the bytes. The container modules (`torch_zip`)
turn records into tensor entries; `state_dict` finds the state dict in what was loaded.

    OrderedDict{name: _rebuild_tensor_v2(persistent_load(("storage", torch.FloatStorage,
                "0", "cpu", numel)), offset, size, stride, requires_grad, hooks)}
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass

from convmigrate.vocab import BY_TORCH_STORAGE, DTYPES, DType


class NeedsTorch(Exception):
    """The file holds something only torch.load should judge."""


@dataclass(frozen=True)
class StorageType:
    dtype: DType | None  # None: an UntypedStorage (bytes; the dtype comes with the tensor)


@dataclass(frozen=True)
class StorageRecord:
    key: str
    dtype: DType | None
    numel: int  # elements of dtype (bytes for an untyped storage)


@dataclass(frozen=True)
class TensorRecord:
    storage: StorageRecord
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


def _rebuild_v2(storage: StorageRecord, offset: int, size: tuple, stride: tuple, requires_grad: bool = False,
                hooks: object = None, metadata: object = None) -> TensorRecord:
    if storage.dtype is None or metadata:
        raise NeedsTorch("a typed storage without extra tensor metadata was expected")
    return TensorRecord(storage, storage.dtype, int(offset), tuple(size), tuple(stride))


def _rebuild_v3(storage: StorageRecord, offset: int, size: tuple, stride: tuple, requires_grad: bool,
                hooks: object, dtype: DType, metadata: object = None) -> TensorRecord:
    if not isinstance(dtype, DType) or metadata:
        raise NeedsTorch("an untyped storage with a known dtype was expected")
    return TensorRecord(storage, dtype, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data: TensorRecord, requires_grad: bool, hooks: object) -> TensorRecord:
    return data  # nn.Parameter: the same bytes


# The only globals a plain state dict needs. Anything else goes to torch.load(weights_only).
_ALLOWED: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "UntypedStorage"): StorageType(None),
    ("torch.storage", "UntypedStorage"): StorageType(None),  # what torch 2.x writes for uint16/32/64
    **{("torch", storage): StorageType(dtype) for storage, dtype in BY_TORCH_STORAGE.items()},
    **{("torch", name): dtype for name, dtype in DTYPES.items()},  # dtype arguments of _v3
}


class _StateUnpickler(pickle.Unpickler):
    """Builds stand-ins for the allow-listed globals; refuses every other one."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise NeedsTorch(f"{module}.{name}") from None

    def persistent_load(self, saved_id: object) -> StorageRecord:
        if not (isinstance(saved_id, tuple) and len(saved_id) == 5 and saved_id[0] == "storage"):
            raise NeedsTorch("an unknown persistent id")
        _, storage_type, key, _location, numel = saved_id
        if not isinstance(storage_type, StorageType) or not isinstance(key, str) or not isinstance(numel, int):
            raise NeedsTorch("an unknown storage")
        return StorageRecord(key, storage_type.dtype, numel)


def load_pickle(data: bytes) -> object:
    """The objects of a torch pickle, tensors as `TensorRecord`s; NeedsTorch for anything else."""
    return _StateUnpickler(io.BytesIO(data)).load()


__all__ = ["load_pickle", "NeedsTorch", "TensorRecord", "StorageRecord", "StorageType"]
