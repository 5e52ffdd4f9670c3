"""The inputs both networks run on: random float32 tensors of given shapes, or arrays from an .npz.

`--input 2,4,50` is a standard-normal float32 tensor of shape (2, 4, 50), drawn from one seeded
generator in the order given; several are positional arguments of the forward call. An .npz
(`numpy.savez`) adds its `arr_0, arr_1, ...` as further positional arguments and every other name
as a keyword argument: integer inputs such as token ids come this way.

An .npz is a zip of .npy files that the user hands us, so it is read with the same care as a
checkpoint: no pickles, and each array's claimed shape is checked against the limits and against
the member's size before anything is allocated.
"""

from __future__ import annotations

import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convmigrate.errors import UnreadableCheckpointError, UsageError
from convmigrate.limits import COMPARE_MAX_INPUT_ARRAYS, COMPARE_MAX_INPUT_BYTES

_SHAPE = re.compile(r"^\s*\d+\s*(,\s*\d+\s*)*,?\s*$")
_POSITIONAL = re.compile(r"^arr_(\d+)$")


@dataclass
class ForwardInputs:
    """The arguments of one forward call, as NumPy arrays: positional, then keyword."""

    args: list[tuple[str, np.ndarray]]  # (label, array): "input 0", "npz arr_0"
    kwargs: dict[str, np.ndarray]

    def describe(self) -> list[dict]:
        arrays = [*self.args, *((f"{name} (keyword)", a) for name, a in self.kwargs.items())]
        return [{"name": label, "shape": list(a.shape), "dtype": str(a.dtype)} for label, a in arrays]


def parse_shape(text: str) -> tuple[int, ...]:
    """'2,4,50' -> (2, 4, 50). Every dimension at least 1."""
    if not _SHAPE.match(text):
        raise UsageError(f"--input {text!r}: a shape is written as comma-separated sizes, e.g. 2,4,50")
    shape = tuple(int(part) for part in text.split(",") if part.strip())
    if any(size < 1 for size in shape):
        raise UsageError(f"--input {text!r}: every size must be at least 1")
    return shape


def random_inputs(shapes: list[tuple[int, ...]], seed: int) -> list[np.ndarray]:
    """Standard-normal float32 arrays, one generator for all of them in order."""
    total = sum(math.prod(shape) * 4 for shape in shapes)
    if total > COMPARE_MAX_INPUT_BYTES:
        raise UsageError(f"--input: {total:,} bytes of inputs exceed COMPARE_MAX_INPUT_BYTES ({COMPARE_MAX_INPUT_BYTES:,})")
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape, dtype=np.float32) for shape in shapes]


def read_npz(path: Path) -> tuple[list[tuple[str, np.ndarray]], dict[str, np.ndarray]]:
    """The positional (`arr_N`, in order) and named arrays of an .npz, without pickles."""
    arrays: dict[str, np.ndarray] = {}
    budget = COMPARE_MAX_INPUT_BYTES
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > COMPARE_MAX_INPUT_ARRAYS:
                raise UnreadableCheckpointError(path, f"{len(members)} arrays exceed COMPARE_MAX_INPUT_ARRAYS ({COMPARE_MAX_INPUT_ARRAYS})")
            for info in members:
                name = info.filename.removesuffix(".npy")
                if name == info.filename or not name.isidentifier():
                    raise UnreadableCheckpointError(path, f"{info.filename!r} is not an array of numpy.savez (name.npy)")
                if info.file_size > budget:
                    raise UnreadableCheckpointError(path, f"{name}: {info.file_size:,} bytes exceed COMPARE_MAX_INPUT_BYTES ({COMPARE_MAX_INPUT_BYTES:,}) with the other inputs")
                with archive.open(info) as member:
                    arrays[name] = _read_npy(path, name, member, info.file_size)
                budget -= info.file_size
    except zipfile.BadZipFile as exc:
        raise UnreadableCheckpointError(path, f"not an .npz (numpy.savez) file: {exc}") from exc
    except OSError as exc:
        raise UnreadableCheckpointError(path, f"cannot read: {exc}") from exc
    positional = sorted((int(m.group(1)), name) for name in arrays if (m := _POSITIONAL.match(name)))
    if [index for index, _ in positional] != list(range(len(positional))):
        raise UnreadableCheckpointError(path, f"positional arrays must be arr_0, arr_1, ... without gaps; found {', '.join(n for _, n in positional)}")
    args = [(f"{path.name}:{name}", arrays.pop(name)) for _, name in positional]
    return args, arrays


def _read_npy(path: Path, name: str, member, size: int) -> np.ndarray:
    """One .npy member: its header's dtype and shape must account for exactly its bytes."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(member)
        reader = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
        if reader is None:
            raise ValueError(f"unsupported .npy version {version}")
        shape, fortran_order, dtype = reader(member)
    except ValueError as exc:
        raise UnreadableCheckpointError(path, f"{name}: not a .npy array ({exc})") from exc
    if dtype.hasobject:
        raise UnreadableCheckpointError(path, f"{name}: holds Python objects (a pickle); only numeric arrays are read")
    nbytes = math.prod(shape) * dtype.itemsize
    header = member.tell()
    if header + nbytes != size:
        raise UnreadableCheckpointError(path, f"{name}: {dtype} {list(shape)} needs {nbytes:,} bytes, the file holds {size - header:,}")
    data = member.read(nbytes)
    if len(data) != nbytes:
        raise UnreadableCheckpointError(path, f"{name}: truncated ({len(data):,} of {nbytes:,} bytes)")
    flat = np.frombuffer(data, dtype=dtype)
    array = flat.reshape(shape[::-1]).T if fortran_order else flat.reshape(shape)
    return np.ascontiguousarray(array).astype(dtype.newbyteorder("="), copy=False)


def forward_inputs(shapes: list[str], npz: Path | None, seed: int) -> ForwardInputs:
    """`--input` shapes first (positional), then the .npz's positional and named arrays."""
    if not shapes and npz is None:
        raise UsageError("give the forward call's inputs: --input SHAPE (repeatable) or --inputs FILE.npz")
    args = [(f"input {i}", array) for i, array in enumerate(random_inputs([parse_shape(s) for s in shapes], seed))]
    kwargs: dict[str, np.ndarray] = {}
    if npz is not None:
        npz_args, kwargs = read_npz(npz)
        args += npz_args
    total = sum(a.nbytes for _, a in args) + sum(a.nbytes for a in kwargs.values())
    if total > COMPARE_MAX_INPUT_BYTES:
        raise UsageError(f"inputs: {total:,} bytes exceed COMPARE_MAX_INPUT_BYTES ({COMPARE_MAX_INPUT_BYTES:,})")
    return ForwardInputs(args, kwargs)
