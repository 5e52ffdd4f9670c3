"""data.pkl of a state dict, written without torch, byte for byte as torch.save writes it.

torch.save pickles an OrderedDict {name: tensor} with pickle protocol 2. A tensor pickles as a
call of `torch._utils._rebuild_tensor_v2` (`_v3` with a dtype, for dtypes that have no legacy
storage class) whose first argument is a persistent id ("storage", storage class, key, "cpu",
numel) naming the zip record "data/<key>". Pickling torch's own objects would need torch in
the process (~1 s and ~250 MB to import here), only to write names of its classes; this module
writes the opcodes itself, following CPython's pickler: the same opcode choices, and every str,
tuple, reduced object and global memoized when first written (by identity, as pickle does), so
`test_writer_is_byte_identical_to_torch_save_but_for_the_serialization_id` holds.

The object graph is described with the small value types below; nothing here can run code
when the file is loaded that torch.save's own files would not run.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

# Pickle opcodes (protocol 2), named as in the pickle module.
PROTO, STOP, MARK = b"\x80", b".", b"("
NONE, NEWTRUE, NEWFALSE = b"N", b"\x88", b"\x89"
BININT, BININT1, BININT2, LONG1, LONG4 = b"J", b"K", b"M", b"\x8a", b"\x8b"
BINFLOAT, BINUNICODE = b"G", b"X"
EMPTY_TUPLE, TUPLE, TUPLE_OF_SIZE = b")", b"t", {1: b"\x85", 2: b"\x86", 3: b"\x87"}
GLOBAL, REDUCE, BINPERSID = b"c", b"R", b"Q"
SETITEM, SETITEMS = b"s", b"u"
BINPUT, LONG_BINPUT, BINGET, LONG_BINGET = b"q", b"r", b"h", b"j"

# pickle writes a dict's items in batches of this many, each between MARK and SETITEMS.
BATCH_SIZE = 1000


@dataclass(frozen=True)
class Global:
    """A module-level name (a class or function): one GLOBAL opcode, memoized by its name."""

    module: str
    name: str


@dataclass(eq=False)
class Call:
    """`function(*args)` at load time: what an object's __reduce__ returns."""

    function: Global
    args: tuple


@dataclass(eq=False)
class Persistent:
    """An object stored outside the pickle, referred to by `pid` (torch: a storage record)."""

    pid: tuple


@dataclass(eq=False)
class OrderedDictOf:
    """collections.OrderedDict(items), pickled as OrderedDict's __reduce__ has it."""

    items: Sequence[tuple[object, object]]


ORDERED_DICT = Global("collections", "OrderedDict")
REBUILD_TENSOR_V2 = Global("torch._utils", "_rebuild_tensor_v2")
REBUILD_TENSOR_V3 = Global("torch._utils", "_rebuild_tensor_v3")
UNTYPED_STORAGE = Global("torch.storage", "UntypedStorage")
# One object each, as in torch's code: the pickle memo refers back to their first copy.
STORAGE, CPU = "storage", "cpu"


def tensor_call(
    key: str, storage_class: str | None, dtype_name: str, numel: int, itemsize: int, shape: tuple[int, ...]
) -> Call:
    """What torch.save pickles for a contiguous tensor with its own storage, record "data/<key>"."""
    stride = tuple(_contiguous_strides(shape))
    hooks = OrderedDictOf(())  # backward hooks: always an empty OrderedDict in a saved tensor
    if storage_class is not None:
        storage = Persistent((STORAGE, Global("torch", storage_class), key, CPU, numel))
        return Call(REBUILD_TENSOR_V2, (storage, 0, shape, stride, False, hooks))
    # uint16/32/64: an untyped byte storage and the dtype, as torch.save writes them
    storage = Persistent((STORAGE, UNTYPED_STORAGE, key, CPU, numel * itemsize))
    return Call(REBUILD_TENSOR_V3, (storage, 0, shape, stride, False, hooks, Global("torch", dtype_name)))


def _contiguous_strides(shape: tuple[int, ...]) -> list[int]:
    """torch's strides of a contiguous tensor (a size-0 or size-1 dimension counts as 1)."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return strides[::-1]


class _Pickler:
    """Protocol-2 opcodes for the value types above and None, bool, int, float, str, tuple."""

    def __init__(self) -> None:
        self.out = bytearray(PROTO + b"\x02")
        self.memo: dict[object, int] = {}
        self.alive: list[object] = []  # memo keys are ids: keep their objects alive, as pickle does

    def dumps(self, obj: object) -> bytes:
        self.save(obj)
        self.out += STOP
        return bytes(self.out)

    def save(self, obj: object) -> None:
        # Atoms are never memoized (as in CPython's save()); everything else is looked up first.
        if obj is None:
            self.out += NONE
        elif obj is True or obj is False:
            self.out += NEWTRUE if obj else NEWFALSE
        elif type(obj) is int:
            self._int(obj)
        elif type(obj) is float:
            self.out += BINFLOAT + struct.pack(">d", obj)
        elif self._get(obj):
            pass
        elif type(obj) is str:
            encoded = obj.encode("utf-8", "surrogatepass")
            self.out += BINUNICODE + struct.pack("<I", len(encoded)) + encoded
            self._put(obj)
        elif type(obj) is tuple:
            self._tuple(obj)
        elif isinstance(obj, Global):
            self.out += GLOBAL + f"{obj.module}\n{obj.name}\n".encode()
            self._put(obj)
        elif isinstance(obj, Persistent):
            self.save(obj.pid)
            self.out += BINPERSID
        elif isinstance(obj, Call):
            self.save(obj.function)
            self.save(obj.args)
            self.out += REDUCE
            self._put(obj)
        elif isinstance(obj, OrderedDictOf):
            self.save(ORDERED_DICT)
            self.out += EMPTY_TUPLE + REDUCE
            self._put(obj)
            self._set_items(obj.items)
        else:
            raise TypeError(f"cannot pickle a {type(obj).__name__} into a state dict")

    def _key(self, obj: object) -> object:
        return obj if isinstance(obj, Global) else id(obj)

    def _get(self, obj: object) -> bool:
        index = self.memo.get(self._key(obj))
        if index is None:
            return False
        self.out += BINGET + bytes([index]) if index < 256 else LONG_BINGET + struct.pack("<I", index)
        return True

    def _put(self, obj: object) -> None:
        index = len(self.memo)
        self.memo[self._key(obj)] = index
        self.alive.append(obj)
        self.out += BINPUT + bytes([index]) if index < 256 else LONG_BINPUT + struct.pack("<I", index)

    def _int(self, value: int) -> None:
        if 0 <= value <= 0xFF:
            self.out += BININT1 + bytes([value])
        elif 0 <= value <= 0xFFFF:
            self.out += BININT2 + struct.pack("<H", value)
        elif -(2**31) <= value < 2**31:
            self.out += BININT + struct.pack("<i", value)
        else:  # pickle.encode_long: little-endian two's complement, as short as it can be
            size = (value.bit_length() >> 3) + 1
            encoded = value.to_bytes(size, "little", signed=True)
            if value < 0 and size > 1 and encoded[-1] == 0xFF and encoded[-2] & 0x80:
                encoded = encoded[:-1]
            if len(encoded) < 256:
                self.out += LONG1 + bytes([len(encoded)]) + encoded
            else:
                self.out += LONG4 + struct.pack("<i", len(encoded)) + encoded

    def _tuple(self, items: tuple) -> None:
        if not items:
            self.out += EMPTY_TUPLE  # the empty tuple is not memoized
            return
        if len(items) <= 3:
            for item in items:
                self.save(item)
            self.out += TUPLE_OF_SIZE[len(items)]
        else:
            self.out += MARK
            for item in items:
                self.save(item)
            self.out += TUPLE
        self._put(items)

    def _set_items(self, items: Sequence[tuple[object, object]]) -> None:
        """pickle's batch_dict: batches of BATCH_SIZE; a last batch of one item is a SETITEM."""
        for start in range(0, len(items), BATCH_SIZE):
            batch = items[start : start + BATCH_SIZE]
            if len(batch) == 1:
                self.save(batch[0][0])
                self.save(batch[0][1])
                self.out += SETITEM
                continue
            self.out += MARK
            for key, value in batch:
                self.save(key)
                self.save(value)
            self.out += SETITEMS


def state_dict_dumps(items: Sequence[tuple[str, object]]) -> bytes:
    """The pickle of OrderedDict(items): values are `tensor_call`s or plain bool/int/float/str."""
    return _Pickler().dumps(OrderedDictOf(items))


__all__ = ["state_dict_dumps", "tensor_call", "Global", "Call", "Persistent", "OrderedDictOf"]
