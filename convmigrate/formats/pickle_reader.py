"""torch pickles read inertly: no code from the file runs, no module it names is imported.

`torch.save` pickles its object with calls the unpickler is told to make: GLOBAL names a
function or class, REDUCE / NEWOBJ / NEWOBJ_EX call it, BUILD hands the result its state.
Python's unpickler imports and calls what the file names; torch's weights_only unpickler refuses
anything outside an allow-list (an omegaconf config, an argparse.Namespace, a whole model...).
This one does neither. It is its own opcode interpreter, and:

- a global on the allow-list (OrderedDict, set, torch's tensor and storage rebuild functions,
  dtypes) maps to a stand-in of this module that builds plain data or a `TensorRecord`;
- any other global becomes a `Global` placeholder, never imported; calling it makes an `Opaque`
  that records the call's arguments and, after BUILD / SETITEMS / APPENDS, its state and items,
  as plain data, so the state dict is found wherever it sits (`formats/state_dict.py`);
- stand-ins on the allow-list take no state, and its tables are read-only: a file cannot change
  what the next tensor or the next file means;
- every claimed length is checked against the bytes that remain before it is read, and nesting,
  memo size, object count and integer size are bounded (`convmigrate/limits.py`), so the work
  and memory are linear in the file's real size and capped.

What comes out is plain data (dicts, lists, tuples, sets, numbers, strings, bytes), `Global` /
`Opaque` placeholders, and a `TensorRecord` where each tensor was (storage record, dtype,
offset, shape, stride: never the bytes). A container module (`torch_zip`, `torch_legacy`)
supplies the persistent-id handler that names storages, and turns records into tensor entries.

    OrderedDict{name: _rebuild_tensor_v2(persistent_load(("storage", torch.FloatStorage,
                "0", "cpu", numel)), offset, size, stride, requires_grad, hooks)}
"""

from __future__ import annotations

import codecs
import math
import mmap
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from convmigrate.limits import (
    PICKLE_MAX_INT_BYTES,
    PICKLE_MAX_MEMO,
    PICKLE_MAX_NESTING,
    PICKLE_MAX_OBJECTS,
    TENSOR_MAX_DIM,
    TENSOR_MAX_DIMS,
)
from convmigrate.vocab import BY_TORCH_STORAGE, DTYPES, DType

HIGHEST_PROTOCOL = 5


class PickleError(ValueError):
    """The pickle is damaged, or claims more than it holds or than the limits allow (one line)."""


class PickleTruncated(PickleError):
    """The pickle needs bytes past the end of what it was given (a reader holding only part of a
    file may read more and try again)."""


# --------------------------------------------------------------------------- what comes out
@dataclass(frozen=True, slots=True)
class Global:
    """A global the file names that is not on the allow-list: a name, never imported or called."""

    module: str
    name: str

    def __str__(self) -> str:
        return f"{self.module}.{self.name}"


class Opaque:
    """What calling a placeholder would have made, recorded instead of made.

    `callee` is what was called (a `Global`, usually a class), `args` / `kwargs` what it was
    called with; BUILD sets `state` (for a plain Python object: its attribute dict), SETITEMS
    and APPENDS on it (a dict or list subclass) fill `items` and `appended`.
    """

    __slots__ = ("callee", "args", "kwargs", "state", "items", "appended")

    def __init__(self, callee: object, args: tuple, kwargs: Mapping | None = None) -> None:
        self.callee, self.args, self.kwargs = callee, args, kwargs
        self.state: object = None
        self.items: list[tuple[object, object]] | None = None  # made when first needed (memory)
        self.appended: list[object] | None = None

    @property
    def type_name(self) -> str:
        """The class or function that made it, as the file names it."""
        callee = self.callee
        return str(callee) if isinstance(callee, (Global, _Builder)) else f"a {type(callee).__name__}"

    def add_items(self, pairs: list[tuple[object, object]]) -> None:
        if self.items is None:
            self.items = []
        self.items.extend(pairs)

    def add_appended(self, values: list[object]) -> None:
        if self.appended is None:
            self.appended = []
        self.appended.extend(values)

    def __repr__(self) -> str:
        return f"<{self.type_name} object, not built>"


@dataclass(frozen=True, slots=True)
class StorageType:
    """torch.FloatStorage and friends (dtype None: an UntypedStorage, bytes)."""

    dtype: DType | None


@dataclass(slots=True, eq=False)
class StorageRecord:
    """A storage the pickle refers to by key: `numel` elements of `dtype` (bytes if untyped).

    `offset` (elements) is where a legacy storage view starts inside the storage `key`.
    `type_name` names the storage class for messages when its dtype is not one we carry.
    """

    key: str
    dtype: DType | None
    numel: int
    offset: int = 0
    type_name: str = ""

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize if self.dtype is not None else 1


@dataclass(slots=True, eq=False)
class TensorRecord:
    """A dense tensor: `shape` / `stride` (elements) from `offset` into its storage's bytes."""

    storage: StorageRecord
    dtype: DType
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    negative: bool = False  # torch's neg bit (a view made by _neg_view): the values are negated

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

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

    def byte_span(self) -> tuple[int, int]:
        """[first, stop) of the bytes it reads inside its storage; PickleError past the storage."""
        storage, itemsize = self.storage, self.dtype.itemsize
        storage_bytes = storage.numel * storage.itemsize
        start = storage.offset * storage.itemsize + self.offset * itemsize
        if self.numel == 0:
            return start, start
        last = self.offset + sum((size - 1) * step for size, step in zip(self.shape, self.stride))
        stop = storage.offset * storage.itemsize + (last + 1) * itemsize
        if stop > storage_bytes:
            raise PickleError(
                f"a tensor of shape {self.shape} and stride {self.stride} from element {self.offset} reads "
                f"{stop} bytes of storage {storage.key!r}, which holds {storage_bytes}"
            )
        return start, stop

    def own_bytes(self, span: memoryview) -> memoryview:
        """Its own C-order bytes, given `span`, the bytes of its storage that `byte_span()` names:
        `span` itself when it is contiguous (no copy), else a copy of its elements only."""
        start, stop = self.byte_span()
        if len(span) != stop - start:
            raise ValueError(f"a span of {stop - start} bytes was expected, {len(span)} were given")
        if self.contiguous() and not self.negative:
            return span
        itemsize = self.dtype.itemsize
        elements = np.frombuffer(span, dtype=f"V{itemsize}") if stop > start else np.empty(0, f"V{itemsize}")
        strided = np.lib.stride_tricks.as_strided(
            elements, self.shape, [step * itemsize for step in self.stride], writeable=False
        )
        own = np.ascontiguousarray(strided).view(np.uint8).reshape(-1)
        if self.negative:
            own = _negated(own, self.dtype)
        return memoryview(own)


@dataclass(frozen=True, slots=True)
class UnservedTensor:
    """A tensor torch would build that is not a dense strided one (quantized, sparse, meta ...)."""

    kind: str


def _negated(raw: np.ndarray, dtype: DType) -> np.ndarray:
    """The bytes of -x: the sign bit flipped for floats (NaN too, as torch), wrapping for ints."""
    if dtype.is_floating:
        bits = raw.view(f"<u{dtype.itemsize}").copy()
        bits ^= np.array(1 << (8 * dtype.itemsize - 1), dtype=bits.dtype)
        return bits.view(np.uint8)
    return np.negative(raw.view(dtype.numpy)).view(np.uint8)


# --------------------------------------------------------------------------- the allow-list
@dataclass(frozen=True, slots=True)
class _Builder:
    """An allow-listed global: `build(machine, args)` makes plain data or a record from `args`."""

    name: str
    build: Callable[[Unpickler, tuple], object]

    def __str__(self) -> str:
        return self.name


def _int_in(value: object, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _dims(what: str, values: object) -> tuple[int, ...]:
    """A shape or stride the pickle claims, as ints from 0 to TENSOR_MAX_DIM (else PickleError)."""
    if type(values) is tuple and len(values) <= TENSOR_MAX_DIMS:
        try:  # int() of each, compared: fast in C; a float, text or object fails one or the other
            dims = tuple(map(int, values))
            if dims == values and (not dims or (min(dims) >= 0 and max(dims) <= TENSOR_MAX_DIM)):
                return dims
        except (TypeError, ValueError, OverflowError):
            pass
    if type(values) is tuple and len(values) > TENSOR_MAX_DIMS:
        raise PickleError(f"a tensor's {what} has {len(values)} dims (at most {TENSOR_MAX_DIMS}: TENSOR_MAX_DIMS)")
    raise PickleError(f"a tensor's {what} {_short(values)} is not a {what} (whole numbers from 0 to 2**63-1 expected)")


def _short(value: object, limit: int = 80) -> str:
    """repr() for a message: never deep, never long (containers only by their first items)."""
    if isinstance(value, tuple) and len(value) <= 8 and all(isinstance(v, (int, float, str, bool)) for v in value):
        text = repr(value)
    elif isinstance(value, (int, float, bool)) and not (isinstance(value, int) and value.bit_length() > 256):
        text = repr(value)
    elif isinstance(value, str):
        text = repr(value[:limit])
    else:
        text = f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tensor(storage: object, offset: object, size: object, stride: object, dtype: object, metadata: object = None) -> object:
    """A TensorRecord, every claim checked (the bytes are checked against the file later)."""
    if not isinstance(storage, StorageRecord):
        raise PickleError(f"a tensor is rebuilt from {_short(storage)}, not from a storage")
    shape, strides = _dims("shape", size), _dims("stride", stride)
    if len(strides) != len(shape):
        raise PickleError(f"a tensor's shape {shape} and stride {strides} differ in length")
    if not _int_in(offset, 0, TENSOR_MAX_DIM):
        raise PickleError(f"a tensor's storage offset {_short(offset)} is not a whole number from 0 to 2**63-1")
    negative = False
    if metadata:
        if not isinstance(metadata, dict) or not set(metadata) <= {"neg", "conj"}:
            raise PickleError(f"a tensor carries metadata {_short(metadata)} this reader does not know")
        if metadata.get("conj"):
            return UnservedTensor("a conjugate view (complex)")
        negative = bool(metadata.get("neg"))
        if negative and isinstance(dtype, DType) and dtype.name == "bool":
            raise PickleError("a bool tensor carries torch's negative bit, which bool tensors cannot have")
    if not isinstance(dtype, DType):
        return UnservedTensor(f"a tensor of {storage.type_name or _short(dtype)}")
    if storage.dtype is not None and storage.dtype is not dtype:
        raise PickleError(f"a {dtype.name} tensor is rebuilt from a {storage.dtype.name} storage")
    return TensorRecord(storage, dtype, offset, shape, strides, negative)


def _rebuild_tensor_v2(_: Unpickler, args: tuple) -> object:
    # (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]); the
    # pre-1.0 _rebuild_tensor has the first four only.
    if not 4 <= len(args) <= 7:
        raise PickleError(f"_rebuild_tensor_v2 is called with {len(args)} arguments")
    storage = args[0]
    dtype = storage.dtype if isinstance(storage, StorageRecord) else None
    return _tensor(storage, args[1], args[2], args[3], dtype, args[6] if len(args) == 7 else None)


def _rebuild_tensor_v3(_: Unpickler, args: tuple) -> object:
    # (untyped storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype[, metadata])
    if not 7 <= len(args) <= 8:
        raise PickleError(f"_rebuild_tensor_v3 is called with {len(args)} arguments")
    return _tensor(args[0], args[1], args[2], args[3], args[6], args[7] if len(args) == 8 else None)


def _rebuild_parameter(_: Unpickler, args: tuple) -> object:
    # nn.Parameter(data, requires_grad, hooks[, state]): the same bytes as its data.
    if args and isinstance(args[0], (TensorRecord, UnservedTensor)):
        return args[0]
    return Opaque(Global("torch._utils", "_rebuild_parameter"), args)


def _rebuild_from_type(machine: Unpickler, args: tuple) -> object:
    # A tensor subclass (or a Parameter with Python state): (func, type, args, state); the
    # tensor is what func builds from args, the subclass and its state are left aside.
    if len(args) == 4 and isinstance(args[0], _Builder) and isinstance(args[2], tuple):
        return args[0].build(machine, args[2])
    return Opaque(Global("torch._tensor", "_rebuild_from_type_v2"), args)


def _unserved(kind: str) -> _Builder:
    return _Builder(f"torch._utils ({kind})", lambda _machine, _args: UnservedTensor(kind))


def _ordered_dict(machine: Unpickler, args: tuple) -> object:
    if not args:
        machine.count(1)
        return {}
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        pairs = args[0]
        machine.count(len(pairs))
        if all(isinstance(p, tuple) and len(p) == 2 for p in pairs):
            made: dict = {}
            for key, value in pairs:
                made[machine.key(key)] = value
            return made
    return Opaque(Global("collections", "OrderedDict"), args)


def _set(frozen: bool) -> Callable[[Unpickler, tuple], object]:
    def build(machine: Unpickler, args: tuple) -> object:
        items = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else () if not args else None
        if items is None:
            return Opaque(Global("builtins", "frozenset" if frozen else "set"), args)
        machine.count(len(items) + 1)
        made = {machine.key(item) for item in items}
        return frozenset(made) if frozen else made

    return build


def _codecs_encode(machine: Unpickler, args: tuple) -> object:
    # How protocol 2 pickles bytes: _codecs.encode("\x00\xff...", "latin1").
    if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
        machine.count(1, nbytes=len(args[0]))
        try:
            return codecs.encode(args[0], "latin-1")
        except UnicodeEncodeError:
            raise PickleError("_codecs.encode is given a text that is not latin-1") from None
    return Opaque(Global("_codecs", "encode"), args)


def _bytes(machine: Unpickler, args: tuple) -> object:
    # How protocols 0-2 pickle b"": bytes(). (Other bytes come as _codecs.encode.)
    return b"" if not args else Opaque(Global("builtins", "bytes"), args)


def _size(_: Unpickler, args: tuple) -> object:
    # torch.Size((2, 3)) -> (2, 3): a shape as some code pickles it.
    if len(args) == 1 and isinstance(args[0], tuple):
        return args[0]
    return Opaque(Global("torch", "Size"), args)


def _reconstructor(_: Unpickler, args: tuple) -> object:
    # copyreg._reconstructor(cls, base, state): protocol 0/1's way to make an instance of cls.
    if len(args) == 3:
        return Opaque(args[0], (), None)
    return Opaque(Global("copyreg", "_reconstructor"), args)


def _newobj(_: Unpickler, args: tuple) -> object:
    return Opaque(args[0], args[1:]) if args else Opaque(Global("copyreg", "__newobj__"), args)


_TENSOR_BUILDERS = {
    "_rebuild_tensor": _rebuild_tensor_v2,
    "_rebuild_tensor_v2": _rebuild_tensor_v2,
    "_rebuild_tensor_v3": _rebuild_tensor_v3,
    "_rebuild_parameter": _rebuild_parameter,
    "_rebuild_parameter_with_state": _rebuild_parameter,
}
# torch's other tensor kinds: recognised, so that a state dict holding one says what it is.
_UNSERVED = {
    "_rebuild_qtensor": "a quantized tensor",
    "_rebuild_sparse_tensor": "a sparse tensor",
    "_rebuild_nested_tensor": "a nested tensor",
    "_rebuild_meta_tensor_no_storage": "a meta tensor (no data)",
    "_rebuild_wrapper_subclass": "a tensor subclass without storage",
    "_rebuild_device_tensor_from_cpu_tensor": "a tensor of a device without storage",
    "_rebuild_device_tensor_from_numpy": "a tensor of a device without storage",
}

# The allow-list: (module, name) -> stand-in. Read-only: no file can add to it or change it.
ALLOWED: Mapping[tuple[str, str], object] = MappingProxyType({
    ("collections", "OrderedDict"): _Builder("collections.OrderedDict", _ordered_dict),
    **{(module, "set"): _Builder("builtins.set", _set(frozen=False)) for module in ("builtins", "__builtin__")},
    **{(module, "frozenset"): _Builder("builtins.frozenset", _set(frozen=True)) for module in ("builtins", "__builtin__")},
    ("_codecs", "encode"): _Builder("_codecs.encode", _codecs_encode),
    **{(module, "bytes"): _Builder("builtins.bytes", _bytes) for module in ("builtins", "__builtin__")},
    **{(module, "_reconstructor"): _Builder("copyreg._reconstructor", _reconstructor) for module in ("copyreg", "copy_reg")},
    **{(module, "__newobj__"): _Builder("copyreg.__newobj__", _newobj) for module in ("copyreg", "copy_reg")},
    ("torch", "Size"): _Builder("torch.Size", _size),
    **{("torch._utils", name): _Builder(f"torch._utils.{name}", build) for name, build in _TENSOR_BUILDERS.items()},
    **{("torch._utils", name): _unserved(kind) for name, kind in _UNSERVED.items()},
    **{("torch._tensor", name): _Builder(f"torch._tensor.{name}", _rebuild_from_type)
       for name in ("_rebuild_from_type", "_rebuild_from_type_v2")},
    ("torch", "UntypedStorage"): StorageType(None),
    ("torch.storage", "UntypedStorage"): StorageType(None),  # what torch 2.x writes for uint16/32/64
    **{("torch", storage): StorageType(dtype) for storage, dtype in BY_TORCH_STORAGE.items()},
    **{("torch", name): dtype for name, dtype in DTYPES.items()},  # dtype arguments of _v3
})


def stand_in(module: str, name: str) -> object:
    """What GLOBAL module.name becomes: its allow-listed stand-in, else a `Global` placeholder."""
    return ALLOWED.get((module, name)) or Global(module, name)


# --------------------------------------------------------------------------- persistent ids
def zip_storages() -> Callable[[object], object]:
    """persistent_load of a torch zip: ("storage", storage type, key, location, numel), the
    first record of each key kept (as torch.load keeps it)."""
    seen: dict[str, StorageRecord] = {}

    def persistent_load(pid: object) -> object:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise PickleError(f"a persistent id {_short(pid)} is not a storage of a torch zip")
        _, storage_type, key, _location, numel = pid
        return storage_record(storage_type, key, numel, seen)

    return persistent_load


def storage_record(storage_type: object, key: object, numel: object, seen: dict[str, StorageRecord]) -> StorageRecord:
    """The storage a persistent id names, its claims checked (its bytes are checked later)."""
    if not isinstance(key, str) or not _int_in(numel, 0, TENSOR_MAX_DIM):
        raise PickleError(f"a storage is named {_short(key)} with {_short(numel)} elements")
    if key in seen:
        return seen[key]
    if isinstance(storage_type, StorageType):
        record = StorageRecord(key, storage_type.dtype, numel)
    else:  # a storage class we do not carry (complex, quantized ...): a tensor of it says so
        record = StorageRecord(key, None, numel, type_name=f"storage {_short(str(storage_type))}")
    seen[key] = record
    return record


# --------------------------------------------------------------------------- the machine
# Types a tuple item may have without making the tuple deeper or unhashable.
_FLAT = frozenset({int, str, float, bool, bytes, type(None), Global, Opaque, TensorRecord, StorageRecord, StorageType, DType,
                   _Builder, UnservedTensor})


class Unpickler:
    """One pickle read from `data[start:]` up to its STOP; `position` is where it ended.

    `data` is bytes or a memory map (a legacy file's pickles precede its tensor bytes).
    """

    def __init__(self, data: bytes | mmap.mmap, *, start: int = 0,
                 persistent_load: Callable[[object], object] | None = None) -> None:
        self.data = data
        self.position = start
        self.persistent_load = persistent_load or zip_storages()
        self.objects = 0  # made by stand-ins (the opcode loop keeps its own count)
        self.nbytes = 0
        self.byte_budget = len(data) - start  # bytes built from references (_codecs.encode)
        self.tuple_depth: dict[int, tuple[tuple, int, bool]] = {}  # id -> (tuple, depth, hashable)

    # ----------------------------------------------------------------- bounds
    def count(self, objects: int, nbytes: int = 0) -> None:
        """Charge objects a stand-in makes (and bytes it makes from references) to the limits."""
        self.objects += objects
        if self.objects > PICKLE_MAX_OBJECTS:
            _too_many_objects()
        if nbytes:
            self.nbytes += nbytes
            if self.nbytes > self.byte_budget:
                raise PickleError(f"the pickle makes more bytes than it holds ({self.byte_budget:,})")

    def make_tuple(self, items: tuple) -> tuple:
        """A tuple, with its depth and hashability known at once (they never change)."""
        depth, hashable = 1, True
        for item in items:
            kind = type(item)
            if kind in _FLAT:
                continue
            if kind is tuple:
                known = self.tuple_depth.get(id(item))
                if known is not None:
                    depth = max(depth, known[1] + 1)
                    hashable = hashable and known[2]
                else:
                    depth = max(depth, 2)
            elif kind in (list, dict, set):
                hashable = False
        if depth > PICKLE_MAX_NESTING:
            raise PickleError(f"the pickle nests tuples deeper than {PICKLE_MAX_NESTING} levels (PICKLE_MAX_NESTING)")
        if depth > 1 or not hashable:
            self.tuple_depth[id(items)] = (items, depth, hashable)
        return items

    def key(self, key: object) -> object:
        """`key` if it can be a dict key or set item: hashing it is shallow and cannot fail."""
        kind = type(key)
        if kind is str or kind is int:
            return key
        if kind is tuple:
            known = self.tuple_depth.get(id(key))
            if known is None or known[2]:
                return key
        elif kind in _FLAT or kind is frozenset:
            return key
        raise PickleError(f"the pickle uses {_short(key)} as a dict key or set item, which cannot be one")

    # ----------------------------------------------------------------- reading
    def _take(self, pos: int, size: int) -> bytes:
        """`size` bytes from `pos` (checked against what remains first); position moves past them."""
        remain = len(self.data) - pos
        if size < 0:
            raise PickleError(f"the pickle claims {size:,} bytes at byte {pos:,}")
        if size > remain:
            raise PickleTruncated(f"the pickle claims {size:,} bytes at byte {pos:,}, where {remain:,} remain")
        self.position = pos + size
        return self.data[pos : self.position]

    def _line(self, pos: int) -> bytes:
        end = self.data.find(b"\n", pos)  # bytes and mmap both find from an offset
        if end < 0:
            raise PickleTruncated(f"the pickle ends inside a text argument at byte {pos:,}")
        self.position = end + 1
        return bytes(self.data[pos:end])

    def load(self) -> object:
        """The pickled object (PickleError for a damaged or hostile pickle, one line)."""
        try:
            return self._run()
        except RecursionError:
            raise PickleError(f"the pickle nests deeper than this reader follows (PICKLE_MAX_NESTING {PICKLE_MAX_NESTING})") from None

    def _run(self) -> object:  # one opcode per branch, the most frequent first
        data, unpack_from = self.data, struct.unpack_from
        memo: dict[int, object] = {}
        stack: list = []
        metastack: list[list] = []
        make_tuple, key, text, take = self.make_tuple, self.key, _text, self._take
        end, pos = len(data), self.position
        objects, budget = 0, PICKLE_MAX_OBJECTS  # opcodes that make an object; checked when one does
        try:
            while True:
                if pos >= end:
                    raise PickleTruncated("the pickle ends before its STOP opcode")
                op = data[pos]
                pos += 1
                if op == 0x4B:  # K BININT1
                    stack.append(data[pos])
                    pos += 1
                    continue
                if op == 0x71 or op == 0x72 or op == 0x94:  # q BINPUT, r LONG_BINPUT, MEMOIZE
                    if op == 0x71:
                        index = data[pos]
                        pos += 1
                    elif op == 0x72:
                        (index,) = unpack_from("<I", data, pos)
                        pos += 4
                    else:
                        index = len(memo)
                    if len(memo) >= PICKLE_MAX_MEMO and index not in memo:
                        raise PickleError(f"the pickle's memo grows past {PICKLE_MAX_MEMO:,} entries (PICKLE_MAX_MEMO)")
                    memo[index] = stack[-1]
                    continue
                if op == 0x68 or op == 0x6A:  # h BINGET, j LONG_BINGET
                    if op == 0x68:
                        index = data[pos]
                        pos += 1
                    else:
                        (index,) = unpack_from("<I", data, pos)
                        pos += 4
                    if index not in memo:
                        raise PickleError(f"the pickle refers to memo entry {index}, which it never stored")
                    stack.append(memo[index])
                    continue
                objects += 1  # every opcode below makes at most one object (or none)
                if objects > budget:
                    _too_many_objects()
                if op in _SIZED:  # a length, then that many bytes: text, bytes or an integer
                    length, made = _SIZED[op]
                    (size,) = length.unpack_from(data, pos)
                    pos += length.size
                    if made is int and size > PICKLE_MAX_INT_BYTES:
                        raise PickleError(f"the pickle holds an integer of {size:,} bytes (at most {PICKLE_MAX_INT_BYTES}: "
                                          "PICKLE_MAX_INT_BYTES)")
                    raw = take(pos, size)
                    pos = self.position
                    stack.append(text(raw) if made is str else bytes(raw) if made is bytes else int.from_bytes(raw, "little", signed=True))
                elif op == 0x28:  # ( MARK
                    if len(metastack) >= PICKLE_MAX_NESTING:
                        raise PickleError(f"the pickle nests MARKs deeper than {PICKLE_MAX_NESTING} (PICKLE_MAX_NESTING)")
                    metastack.append(stack)
                    stack = []
                elif op == 0x74:  # t TUPLE
                    items = make_tuple(tuple(stack))
                    stack = metastack.pop()
                    stack.append(items)
                elif 0x85 <= op <= 0x87:  # TUPLE1, TUPLE2, TUPLE3
                    size = op - 0x84
                    if len(stack) < size:
                        raise PickleError(f"the pickle's TUPLE{size} finds {len(stack)} items on the stack")
                    items = make_tuple(tuple(stack[-size:]))
                    del stack[-size:]
                    stack.append(items)
                elif op == 0x52:  # R REDUCE
                    args = stack.pop()
                    stack[-1] = self._call(stack[-1], args)
                    budget = PICKLE_MAX_OBJECTS - self.objects
                elif op == 0x29:  # ) EMPTY_TUPLE
                    stack.append(())
                elif op == 0x89 or op == 0x88:  # NEWFALSE, NEWTRUE
                    stack.append(op == 0x88)
                elif op == 0x4E:  # N NONE
                    stack.append(None)
                elif op == 0x51:  # Q BINPERSID
                    stack[-1] = self.persistent_load(stack[-1])
                elif op == 0x4D:  # M BININT2
                    (value,) = unpack_from("<H", data, pos)
                    pos += 2
                    stack.append(value)
                elif op == 0x4A:  # J BININT
                    (value,) = unpack_from("<i", data, pos)
                    pos += 4
                    stack.append(value)
                elif op == 0x75:  # u SETITEMS
                    items = stack
                    stack = metastack.pop()
                    self._set_items(stack[-1], items)
                elif op == 0x73:  # s SETITEM
                    value = stack.pop()
                    item_key = stack.pop()
                    self._set_items(stack[-1], [item_key, value])
                elif op == 0x7D:  # } EMPTY_DICT
                    stack.append({})
                elif op == 0x5D:  # ] EMPTY_LIST
                    stack.append([])
                elif op == 0x65:  # e APPENDS
                    items = stack
                    stack = metastack.pop()
                    self._append(stack[-1], items)
                elif op == 0x61:  # a APPEND
                    value = stack.pop()
                    self._append(stack[-1], [value])
                elif op == 0x63:  # c GLOBAL: "module\nname\n"
                    module = text(self._line(pos), "a module name")
                    name = text(self._line(self.position), "a global's name")
                    pos = self.position
                    stack.append(stand_in(module, name))
                elif op == 0x93:  # STACK_GLOBAL
                    name = stack.pop()
                    module = stack.pop()
                    if type(module) is not str or type(name) is not str:
                        raise PickleError("the pickle's STACK_GLOBAL names a global with something other than text")
                    stack.append(stand_in(module, name))
                elif op == 0x62:  # b BUILD
                    state = stack.pop()
                    self._build(stack[-1], state)
                elif op == 0x81:  # NEWOBJ: cls.__new__(cls, *args), recorded
                    args = stack.pop()
                    if type(args) is not tuple:
                        raise PickleError("the pickle's NEWOBJ is given arguments that are not a tuple")
                    stack[-1] = Opaque(stack[-1], args)
                elif op == 0x92:  # NEWOBJ_EX
                    kwargs = stack.pop()
                    args = stack.pop()
                    if type(args) is not tuple or type(kwargs) is not dict:
                        raise PickleError("the pickle's NEWOBJ_EX is given arguments that are not a tuple and a dict")
                    stack[-1] = Opaque(stack[-1], args, kwargs)
                elif op == 0x47:  # G BINFLOAT
                    (value,) = unpack_from(">d", data, pos)
                    pos += 8
                    stack.append(value)
                elif op == 0x2E:  # . STOP: the top of the stack, as Python's unpickler returns it
                    self.position = pos
                    if not stack:
                        raise PickleError("the pickle stops with nothing on its stack")
                    return stack[-1]
                elif op == 0x80:  # PROTO
                    if data[pos] > HIGHEST_PROTOCOL:
                        raise PickleError(f"the pickle is of protocol {data[pos]} (this reader knows 0 to {HIGHEST_PROTOCOL})")
                    pos += 1
                elif op == 0x95:  # FRAME: how many bytes follow, a hint; only checked
                    (size,) = unpack_from("<Q", data, pos)
                    pos += 8
                    if size > end - pos:
                        raise PickleTruncated(f"the pickle claims a frame of {size:,} bytes at byte {pos:,}, where {end - pos:,} remain")
                elif op == 0x30:  # 0 POP
                    if stack:
                        stack.pop()
                    else:
                        stack = metastack.pop()
                elif op == 0x31:  # 1 POP_MARK
                    stack = metastack.pop()
                elif op == 0x32:  # 2 DUP
                    stack.append(stack[-1])
                elif op == 0x6C:  # l LIST
                    items = stack
                    stack = metastack.pop()
                    stack.append(items)
                elif op == 0x64:  # d DICT
                    items = stack
                    stack = metastack.pop()
                    made: dict = {}
                    self._set_items(made, items)
                    stack.append(made)
                elif op == 0x8F:  # EMPTY_SET
                    stack.append(set())
                elif op == 0x90:  # ADDITEMS
                    items = stack
                    stack = metastack.pop()
                    target = stack[-1]
                    if type(target) is set:
                        target.update(key(item) for item in items)
                    elif type(target) is Opaque:
                        target.add_appended(items)
                    else:
                        raise PickleError(f"the pickle adds set items to {_stand_in_name(target)}")
                elif op == 0x91:  # FROZENSET
                    items = stack
                    stack = metastack.pop()
                    stack.append(frozenset(key(item) for item in items))
                elif op in _EXTENSIONS:  # EXT1, EXT2, EXT4: a code of copyreg's registry, never looked up
                    (code,) = _EXTENSIONS[op].unpack_from(data, pos)
                    pos += _EXTENSIONS[op].size
                    stack.append(Global("copyreg extension", str(code)))
                elif op in _TEXT_OPCODES:
                    stack = self._text_opcode(op, pos, stack, metastack, memo)
                    pos = self.position
                    budget = PICKLE_MAX_OBJECTS - self.objects
                elif op == 0x97:  # NEXT_BUFFER
                    raise PickleError("the pickle refers to out-of-band buffers (protocol 5), which a file cannot carry")
                elif op == 0x98:  # READONLY_BUFFER: the buffer on the stack stays as it is
                    pass
                else:
                    raise PickleError(f"the pickle holds byte 0x{op:02x} at byte {pos - 1:,}, which is no pickle opcode")
        except (IndexError, struct.error) as exc:
            if isinstance(exc, struct.error) or pos >= end:  # an opcode's argument runs past the end
                raise PickleTruncated(f"the pickle ends inside an opcode's argument at byte {pos:,}") from None
            raise PickleError(f"the pickle is damaged near byte {pos:,} (its stack or its MARKs do not add up)") from None

    def _text_opcode(self, op: int, pos: int, stack: list, metastack: list[list], memo: dict[int, object]) -> list:
        """Protocol 0's opcodes, whose arguments are lines of text; returns the current stack."""
        if op == 0x49:  # I INT ("00"/"01" were False/True)
            line = self._line(pos)
            stack.append(line == b"01" if line in (b"00", b"01") else _decimal(line))
        elif op == 0x4C:  # L LONG
            stack.append(_decimal(self._line(pos)))
        elif op == 0x46:  # F FLOAT
            line = self._line(pos)
            try:
                stack.append(float(line))
            except ValueError:
                raise PickleError(f"the pickle holds {_short(line.decode('latin-1'))} where a float belongs") from None
        elif op == 0x53:  # S STRING: a quoted Python 2 str
            line = self._line(pos)
            if len(line) < 2 or line[:1] != line[-1:] or line[:1] not in (b"'", b'"'):
                raise PickleError("the pickle's STRING argument is not quoted")
            try:
                stack.append(_text(codecs.escape_decode(line[1:-1])[0]))
            except ValueError:
                raise PickleError("the pickle's STRING argument has a bad escape") from None
        elif op == 0x56:  # V UNICODE
            try:
                stack.append(str(self._line(pos), "raw-unicode-escape"))
            except UnicodeDecodeError:
                raise PickleError("the pickle's UNICODE argument has a bad escape") from None
        elif op == 0x67:  # g GET
            index = _decimal(self._line(pos))
            if index not in memo:
                raise PickleError(f"the pickle refers to memo entry {index}, which it never stored")
            stack.append(memo[index])
        elif op == 0x70:  # p PUT
            index = _decimal(self._line(pos))
            if index < 0:
                raise PickleError("the pickle's PUT has a negative index")
            if len(memo) >= PICKLE_MAX_MEMO and index not in memo:
                raise PickleError(f"the pickle's memo grows past {PICKLE_MAX_MEMO:,} entries (PICKLE_MAX_MEMO)")
            memo[index] = stack[-1]
        elif op == 0x50:  # P PERSID
            stack.append(self.persistent_load(_text(self._line(pos), "a persistent id")))
        elif op == 0x69:  # i INST: module, name, then the arguments since the MARK
            module = _text(self._line(pos), "a module name")
            name = _text(self._line(self.position), "a global's name")
            args = self.make_tuple(tuple(stack))
            stack = metastack.pop()
            stack.append(self._call(stand_in(module, name), args))
        else:  # o OBJ: the class and its arguments since the MARK
            items = stack
            stack = metastack.pop()
            stack.append(self._call(items[0], self.make_tuple(tuple(items[1:]))))
            self.position = pos  # every other branch moved it past its line of text
        return stack

    # ----------------------------------------------------------------- calls, never made
    def _call(self, callee: object, args: object) -> object:
        """REDUCE: an allow-listed stand-in builds; anything else is recorded, not called."""
        if type(args) is not tuple:
            raise PickleError(f"the pickle calls {_stand_in_name(callee)} with {_short(args)} instead of an argument tuple")
        if type(callee) is _Builder:
            return callee.build(self, args)
        return Opaque(callee, args)

    def _build(self, target: object, state: object) -> None:
        """BUILD: a placeholder records its state; a dict the pickle made may be given some
        (OrderedDict keeps `_metadata` there: dropped); nothing else takes any."""
        if type(target) is Opaque:
            target.state = state
        elif type(target) is dict or state is None or (type(state) is dict and not state):
            return
        else:
            raise PickleError(f"the pickle's BUILD gives state to {_stand_in_name(target)}, which takes no state")

    def _set_items(self, target: object, items: list) -> None:
        if len(items) % 2:
            raise PickleError("the pickle sets a dict item without a value (an odd number of items)")
        if type(target) is dict:
            key = self.key
            for index in range(0, len(items), 2):
                target[key(items[index])] = items[index + 1]
        elif type(target) is Opaque:
            target.add_items(list(zip(items[::2], items[1::2])))
        else:
            raise PickleError(f"the pickle sets dict items on {_stand_in_name(target)}")

    def _append(self, target: object, items: list) -> None:
        if type(target) is list:
            target.extend(items)
        elif type(target) is Opaque:
            target.add_appended(items)
        else:
            raise PickleError(f"the pickle appends to {_stand_in_name(target)}")


_TEXT_OPCODES = frozenset(b"ILFSVgpPio")
_BYTE, _U32, _I32, _U64 = struct.Struct("B"), struct.Struct("<I"), struct.Struct("<i"), struct.Struct("<Q")
# Opcodes whose argument is a length and then that many bytes: the length's format, what they make.
_SIZED: dict[int, tuple[struct.Struct, type]] = {
    0x58: (_U32, str),  # X BINUNICODE
    0x8C: (_BYTE, str),  # SHORT_BINUNICODE
    0x8D: (_U64, str),  # BINUNICODE8
    0x54: (_I32, str),  # T BINSTRING (a Python 2 str)
    0x55: (_BYTE, str),  # U SHORT_BINSTRING
    0x42: (_U32, bytes),  # B BINBYTES
    0x43: (_BYTE, bytes),  # C SHORT_BINBYTES
    0x8E: (_U64, bytes),  # BINBYTES8
    0x96: (_U64, bytes),  # BYTEARRAY8 (kept as bytes: nothing here changes it)
    0x8A: (_BYTE, int),  # LONG1: a little-endian two's complement integer
    0x8B: (_I32, int),  # LONG4
}
_EXTENSIONS = {0x82: _BYTE, 0x83: struct.Struct("<H"), 0x84: _I32}


def _too_many_objects() -> None:
    raise PickleError(f"the pickle builds more than {PICKLE_MAX_OBJECTS:,} objects (PICKLE_MAX_OBJECTS)")


def _text(raw: bytes, what: str = "a text") -> str:
    try:
        return str(raw, "utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise PickleError(f"{what} in the pickle is not UTF-8") from None


def _decimal(line: bytes) -> int:
    digits = line[:-1] if line.endswith(b"L") else line
    if len(digits) > 3 * PICKLE_MAX_INT_BYTES:
        raise PickleError(f"the pickle holds an integer of {len(digits):,} digits (PICKLE_MAX_INT_BYTES)")
    try:
        return int(digits)
    except ValueError:
        raise PickleError(f"the pickle holds {_short(line.decode('latin-1'))} where an integer belongs") from None


def _stand_in_name(target: object) -> str:
    if isinstance(target, DType):
        return f"torch.{target.name}"
    if isinstance(target, (_Builder, Global)):
        return str(target)
    if isinstance(target, StorageType):
        return f"torch.{target.dtype.torch_storage if target.dtype else 'UntypedStorage'}"
    return f"a {type(target).__name__}"


def load_pickle(data: bytes | mmap.mmap, persistent_load: Callable[[object], object] | None = None) -> object:
    """The object a torch zip's data.pkl holds, tensors as `TensorRecord`s (PickleError if not).

    Example:
        >>> load_pickle(b"\\x80\\x02}q\\x00X\\x01\\x00\\x00\\x00aK\\x01s.")
        {'a': 1}
    """
    return Unpickler(data, persistent_load=persistent_load).load()


__all__ = [
    "load_pickle", "Unpickler", "PickleError", "PickleTruncated", "Global", "Opaque", "TensorRecord", "StorageRecord", "StorageType",
    "UnservedTensor", "zip_storages", "storage_record", "ALLOWED",
]
