"""safetensors files: a lazy reader and a streaming writer. No torch here.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON, then the data
region. The JSON maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
(offsets relative to the data region) plus an optional "__metadata__" object of str -> str.

Reading: the header length is checked against the file and SAFETENSORS_MAX_HEADER, the JSON is
parsed by the bounded loader (`convmigrate/untrusted.py`: depth, number length, duplicate
keys), and each record is checked here (dtype codes, shapes within MAX_DIMS/MAX_DIM_PRODUCT,
offsets that match each tensor's size and tile the data region exactly); anything wrong is one
`UnreadableCheckpointError` line. Record keys beyond dtype/shape/data_offsets are ignored, as
the safetensors library ignores them. Tensor bytes are read from the open file when asked for
(formats/input_file.py). Entries come in header order (the order of the JSON object, which for files the
safetensors library wrote is also the data order). A file whose metadata holds
{"format": "ms"} (MindSpore's `save_checkpoint(format="safetensors")`) is `MS_SAFETENSORS`.

Sharded checkpoints: `read_safetensors` on a `*.index.json` (transformers' layout: {"metadata":
{...}, "weight_map": {tensor name: shard file}}) opens every shard (no data is read) and returns
the entries in the index's `weight_map` order. Metadata is each shard's `__metadata__`, then the
index's "metadata" on top (values made strings, e.g. "total_size"). A missing shard, a tensor the
index lists but its shard lacks, or a shard tensor the index does not list is an error. Shards
are plain file names in the index's own folder (never another index): an index never makes us read a
file outside it (no paths, no `..`, no symlink leading out), and an error never shows bytes of
a file that is not part of the checkpoint.

Writing: header first (dtypes and shapes come from the lazy entries), padded with spaces to a
multiple of 8 bytes, then each tensor's bytes streamed in order. Tensors are laid out the way
`safetensors.numpy.save_file` lays them out (largest element alignment first, then by name), so
every tensor starts aligned to its itemsize and, for the same tensors and at most one metadata
key, the file is byte-identical to the library's. Metadata keys are written sorted (the library
writes them in hash order, which varies from run to run).

Plain values (`ValueEntry`) have no place in safetensors' tensor table, so they are written into
`__metadata__` as `convmigrate.value.<name>` = JSON of the value, and read back as `ValueEntry`
(after the tensors, in name order) rather than as metadata.

Example:
    >>> import numpy
    >>> entries = [TensorEntry.from_array("conv.weight", numpy.ones((2, 1, 3), numpy.float16))]
    >>> with open("model.safetensors", "wb") as stream:
    ...     write_safetensors(stream, entries, metadata={"format": "pt"})
    >>> with read_safetensors(Path("model.safetensors")) as ckpt:
    ...     ckpt.tensors()[0].array()
    array([[[1., 1., 1.]],
    <BLANKLINE>
           [[1., 1., 1.]]], dtype=float16)
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from convmigrate.entries import Checkpoint, Entry, TensorEntry, ValueEntry
from convmigrate.errors import UnreadableCheckpointError, UsageError, WriteError
from convmigrate.formats.bytecopy import TensorBytesWriter
from convmigrate.formats.input_file import InputFile, open_input
from convmigrate.limits import (
    MAX_DIMS,
    MAX_ENTRIES,
    SAFETENSORS_INDEX_MAX_BYTES,
    SAFETENSORS_MAX_HEADER,
    SAFETENSORS_MAX_SHARDS,
    shape_problem,
)
from convmigrate.untrusted import UntrustedTextError, load_json
from convmigrate.vocab import BY_SAFETENSORS, Format

METADATA_KEY = "__metadata__"
VALUE_PREFIX = "convmigrate.value."  # __metadata__ key prefix that carries a ValueEntry
MS_FORMAT = {"format": "ms"}  # what MindSpore's save_checkpoint(format="safetensors") writes
HEADER_ALIGNMENT = 8  # the library pads the JSON with spaces so the data starts 8-aligned
INDEX_SUFFIX = ".index.json"

# The safetensors library's Dtype enum order (Rust `derive(Ord)`), which its writer sorts by,
# largest first: BOOL < U8 < I8 < I16 < U16 < F16 < BF16 < I32 < U32 < F32 < F64 < I64 < U64.
# Measured with safetensors 0.8: save_file puts U64, I64, F64, F32, U32, I32, BF16, F16, U16,
# I16, I8, U8, BOOL in that order, ties broken by name.
_LIBRARY_DTYPE_RANK: dict[str, int] = {
    code: rank
    for rank, code in enumerate(("BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"))
}


# --------------------------------------------------------------------------- detecting

_JSON_WHITESPACE = b" \t\n\r"


def sniff(path: Path, head: bytes) -> bool:
    """An 8-byte header length followed by a JSON object, or a sharded index.

    The safetensors library accepts JSON whitespace before the header's `{`, so do we. The
    length is not judged here: the reader refuses a wrong one with a message that says so.
    """
    if path.name.endswith(INDEX_SUFFIX):
        read_index(path)  # refuses, in one line, an index that is not one
        return True
    if len(head) < 10:
        return False
    (header_size,) = struct.unpack("<Q", head[:8])
    # `{` then `"` or `}`: a .ckpt whose tensor name puts a lone `{` at byte 8 is not taken for
    # one (found by the round-trip property test: a tensor named "L0.t{").
    json_start = head[8:].lstrip(_JSON_WHITESPACE)
    return header_size >= 2 and json_start[:1] == b"{" and json_start[1:].lstrip(_JSON_WHITESPACE)[:1] in (b'"', b"}")


# --------------------------------------------------------------------------- reading


def _bad(path: Path, problem: str) -> UnreadableCheckpointError:
    return UnreadableCheckpointError(path, f"damaged safetensors file: {problem}")


def _parse_header(path: Path, file: InputFile) -> tuple[int, dict]:
    """(data region start, header dict) after checking the length prefix against the file."""
    file_size = file.size
    if file_size < 8:
        raise _bad(path, f"{file_size} bytes is too short for the 8-byte header length")
    (header_size,) = struct.unpack("<Q", file.read_at(0, 8))
    if 8 + header_size > file_size:
        raise _bad(path, f"header length {header_size} runs past the end of the {file_size}-byte file")
    if header_size > SAFETENSORS_MAX_HEADER:
        raise _bad(path, f"header length {header_size} exceeds the {SAFETENSORS_MAX_HEADER:,}-byte limit (SAFETENSORS_MAX_HEADER)")
    try:
        header = load_json(file.read_at(8, header_size), max_bytes=SAFETENSORS_MAX_HEADER)
    except UntrustedTextError as exc:
        raise _bad(path, f"header: {exc}") from None
    if not isinstance(header, dict):
        raise _bad(path, "header is not a JSON object")
    return 8 + header_size, header


def _check_metadata(path: Path, metadata: object) -> dict[str, str]:
    if metadata is None:  # the library reads "__metadata__": null as no metadata
        return {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _bad(path, "__metadata__ must be an object of string values")
    return dict(metadata)


_RECORD_KEYS = ("dtype", "shape", "data_offsets")


def _check_tensor(path: Path, name: str, info: object) -> tuple[str, tuple[int, ...], int, int]:
    """(dtype code, shape, begin, end) of one header record, or an error naming the tensor.

    Keys beyond dtype/shape/data_offsets are ignored, as the safetensors library ignores them.
    """
    if not isinstance(info, dict) or not all(key in info for key in _RECORD_KEYS):
        raise _bad(path, f"tensor {name!r}: record must have dtype, shape and data_offsets")
    code, shape, offsets = (info[key] for key in _RECORD_KEYS)
    if not isinstance(code, str) or code not in BY_SAFETENSORS:
        known = ", ".join(BY_SAFETENSORS)
        raise UnreadableCheckpointError(path, f"tensor {name!r} has dtype {code!r}, which convmigrate does not carry ({known})")
    dtype = BY_SAFETENSORS[code]
    if not isinstance(shape, list):
        raise _bad(path, f"tensor {name!r}: shape is not a list of non-negative integers")
    if len(shape) > MAX_DIMS:  # before looking at each dim: a million claimed dims cost nothing
        raise _bad(path, f"tensor {name!r}: shape claims {shape_problem(shape, dtype.itemsize)}")
    if not all(type(s) is int and s >= 0 for s in shape):
        raise _bad(path, f"tensor {name!r}: shape is not a list of non-negative integers")
    problem = shape_problem(shape, dtype.itemsize)
    if problem is not None:
        raise _bad(path, f"tensor {name!r}: shape {shape} claims {problem}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int and o >= 0 for o in offsets)):
        raise _bad(path, f"tensor {name!r}: data_offsets {offsets!r} is not [begin, end]")
    begin, end = offsets
    expected = math.prod(shape) * dtype.itemsize
    if end - begin != expected:
        raise _bad(path, f"tensor {name!r}: data_offsets {offsets} hold {end - begin} bytes, {code} {shape} needs {expected}")
    return code, tuple(shape), begin, end


def _check_tiling(path: Path, spans: list[tuple[int, int, str]], data_size: int) -> None:
    """The tensors' byte ranges must cover the data region exactly once, with no gap."""
    cursor = 0
    for begin, end, name in sorted(spans):
        if begin != cursor:
            problem = "overlaps the previous tensor" if begin < cursor else f"leaves a gap at data byte {cursor}"
            raise _bad(path, f"tensor {name!r} at data bytes [{begin}, {end}) {problem}")
        cursor = end
    if cursor != data_size:
        if cursor > data_size:
            raise _bad(path, f"tensor data needs {cursor} bytes but the file holds {data_size} after the header (truncated?)")
        raise _bad(path, f"{data_size - cursor} bytes after the last tensor belong to no tensor")


# json.dumps writes a non-finite float value (a training checkpoint's best_loss = inf) as one of
# these words, which are not JSON: a value whose whole text is one of them is that float.
_NON_FINITE = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}


def _values_from_metadata(path: Path, metadata: dict[str, str]) -> list[ValueEntry]:
    values = []
    for key in sorted(k for k in metadata if k.startswith(VALUE_PREFIX)):
        text = metadata.pop(key)
        if text in _NON_FINITE:
            values.append(ValueEntry(key.removeprefix(VALUE_PREFIX), _NON_FINITE[text]))
            continue
        try:
            value = load_json(text, max_bytes=SAFETENSORS_MAX_HEADER)
        except UntrustedTextError as exc:
            raise _bad(path, f"metadata {key!r} is not the JSON of a value ({exc})") from None
        if not isinstance(value, (str, int, float, bool)):
            raise _bad(path, f"metadata {key!r} holds {type(value).__name__}, not a str, int, float or bool")
        values.append(ValueEntry(key.removeprefix(VALUE_PREFIX), value))
    return values


def _open_file(path: Path, real_path: Path | None = None) -> tuple[list[TensorEntry], dict[str, str], Callable[[], None]]:
    """Tensors (header order), raw metadata and the closer of one safetensors file.

    `real_path` is what to open when it differs from the `path` that messages name (a shard
    reached through a symlink inside its index's folder).
    """
    file = open_input(real_path or path)
    try:
        data_start, header = _parse_header(path, file)
        metadata = _check_metadata(path, header.pop(METADATA_KEY, None))
        if len(header) > MAX_ENTRIES:
            raise _bad(path, f"header lists {len(header):,} tensors, more than the limit of {MAX_ENTRIES:,} (MAX_ENTRIES)")
        records = [(name, *_check_tensor(path, name, info)) for name, info in header.items()]
        _check_tiling(path, [(begin, end, name) for name, _, _, begin, end in records], file.size - data_start)
    except BaseException:
        file.close()
        raise
    entries = [
        TensorEntry(name, BY_SAFETENSORS[code], shape, file.spans([(data_start + begin, end - begin)]))
        for name, code, shape, begin, end in records
    ]
    return entries, metadata, file.close


def _format_of(metadata: dict[str, str]) -> Format:
    return Format.MS_SAFETENSORS if metadata.get("format") == MS_FORMAT["format"] else Format.SAFETENSORS


def read_safetensors(path: Path) -> Checkpoint:
    """Open a safetensors file, or a sharded `*.index.json`; tensor bytes are read when asked for.

    Args:
        path: a `.safetensors` file or a transformers-style `*.safetensors.index.json`.

    Returns:
        A Checkpoint (SAFETENSORS, or MS_SAFETENSORS when metadata says {"format": "ms"})
        whose tensors read their bytes from the open file. Close it to close the file.

    Example:
        >>> import numpy
        >>> with open("one.safetensors", "wb") as stream:
        ...     write_safetensors(stream, [TensorEntry.from_array("w", numpy.zeros((4, 2, 3), numpy.float32))], metadata={})
        >>> with read_safetensors(Path("one.safetensors")) as ckpt:
        ...     [(t.name, t.dtype.name, t.shape) for t in ckpt.tensors()]
        [('w', 'float32', (4, 2, 3))]
    """
    path = Path(path)
    if path.name.endswith(INDEX_SUFFIX):
        return _read_sharded(path)
    return _open_shard(path)


def read_index(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(weight map, index metadata as strings) of a sharded index, every shard name checked."""
    try:
        with open(path, "rb") as stream:
            text = stream.read(SAFETENSORS_INDEX_MAX_BYTES + 1)
        index = load_json(text, max_bytes=SAFETENSORS_INDEX_MAX_BYTES)
    except OSError as exc:
        raise UnreadableCheckpointError(path, f"cannot be read ({exc.strerror})") from exc
    except UntrustedTextError as exc:
        limit = " (SAFETENSORS_INDEX_MAX_BYTES)" if len(text) > SAFETENSORS_INDEX_MAX_BYTES else ""
        raise UnreadableCheckpointError(path, f"is not a readable JSON index ({exc}){limit}") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise UnreadableCheckpointError(path, "is not a sharded safetensors index ('weight_map' of name -> shard file)")
    extra = index.get("metadata")
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise UnreadableCheckpointError(path, "index 'metadata' is not an object")
    if len(weight_map) > MAX_ENTRIES:
        raise UnreadableCheckpointError(path, f"lists {len(weight_map):,} tensors, more than the limit of {MAX_ENTRIES:,} (MAX_ENTRIES)")
    shards = dict.fromkeys(weight_map.values())
    if len(shards) > SAFETENSORS_MAX_SHARDS:
        raise UnreadableCheckpointError(
            path, f"names {len(shards)} shard files, more than the limit of {SAFETENSORS_MAX_SHARDS} (SAFETENSORS_MAX_SHARDS)"
        )
    for shard_name in shards:
        _check_shard_name(path, shard_name)
    return weight_map, {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()}


def _check_shard_name(index: Path, name: str) -> None:
    """A shard is named by a plain file name: no folder, no `..`, not an index (itself or another)."""
    plain = name not in ("", ".", "..") and not any(c in name for c in "/\\\0") and not name.endswith(".index.json")
    if not plain:
        raise UnreadableCheckpointError(
            index, f"shard {name!r} is not a file name beside the index; an index may only name files in its own folder"
        )


def shard_path(index: Path, name: str) -> Path:
    """The real path of shard `name`: a regular file directly in the index's folder.

    A symlink is followed only when its target is also directly in that folder (an alias
    within the checkpoint); one leading anywhere else is refused, so that an index cannot make
    us read, and copy into an output, a file that is not part of the checkpoint. A target that
    is an index (this one or another) is refused too: opening it as a shard would join it again.

    A race is left open: the readers open the returned path by name, so whoever can write into
    the folder while we run could swap the checked file for a symlink between this check and the
    open. Such a writer already decides the checkpoint's bytes; what they would gain is a copy of
    a file outside the folder that they could not read themselves. Closing it needs the open to
    be `openat(folder, name, O_NOFOLLOW)` with the identity checked against this one.
    """
    listed = index.parent / name
    real_folder = os.path.realpath(index.parent)
    real = os.path.realpath(listed)
    if os.path.dirname(real) != real_folder:
        raise UnreadableCheckpointError(
            index, f"shard {name!r} is a symlink to a file outside {index.parent}; copy the shards into one folder"
        )
    try:
        status = os.stat(real)
    except OSError:
        raise UnreadableCheckpointError(index, f"shard {name!r} listed in the index is missing from {index.parent}") from None
    if not stat.S_ISREG(status.st_mode):
        raise UnreadableCheckpointError(index, f"shard {name!r} is not a regular file")
    if real.endswith(INDEX_SUFFIX) or _same_file(status, index):
        raise UnreadableCheckpointError(index, f"shard {name!r} is an index (a symlink to {os.path.basename(real)!r}); "
                                        "an index names weight files")
    return Path(real)


def _same_file(status: os.stat_result, path: Path) -> bool:
    try:
        return os.path.samestat(status, os.stat(path))
    except OSError:
        return False


def _open_shard(path: Path, real_path: Path | None = None) -> Checkpoint:
    """One safetensors file (a model, or a shard reached as `real_path`) as a Checkpoint."""
    entries, metadata, close = _open_file(path, real_path)
    values = _values_from_metadata(path, metadata)
    checkpoint = Checkpoint(_format_of(metadata), [*entries, *values], metadata)
    checkpoint.add_closer(close)
    return checkpoint


def _read_sharded(path: Path) -> Checkpoint:
    from convmigrate.formats.shards import join_shards

    return join_shards(path, _open_shard, _format_of)


# --------------------------------------------------------------------------- writing


def _library_order(tensors: Sequence[TensorEntry]) -> list[TensorEntry]:
    """The safetensors library's data order: largest dtype first, then by name."""
    return sorted(tensors, key=lambda t: (-_LIBRARY_DTYPE_RANK[t.dtype.safetensors], t.name))


def _metadata_with_values(entries: Iterable[Entry], metadata: dict[str, str]) -> dict[str, str]:
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise UsageError(f"entry name {entry.name!r} appears twice; safetensors names must be unique")
        seen.add(entry.name)
    merged = dict(metadata)
    for key, value in merged.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise UsageError(f"safetensors metadata must be strings; {key!r} is {type(value).__name__}")
    for entry in entries:
        if isinstance(entry, ValueEntry):
            merged[VALUE_PREFIX + entry.name] = json.dumps(entry.value, ensure_ascii=False)
    return dict(sorted(merged.items()))


def safetensors_header(tensors: Sequence[TensorEntry], metadata: dict[str, str]) -> bytes:
    """The 8-byte length and space-padded JSON header for `tensors`, already in data order."""
    header: dict[str, object] = {}
    if metadata:
        header[METADATA_KEY] = metadata
    offset = 0
    for tensor in tensors:
        if tensor.name in header:
            raise UsageError(f"tensor name {tensor.name!r} appears twice; safetensors names must be unique")
        if not tensor.name.isascii():
            try:
                tensor.name.encode("utf-8")
            except UnicodeEncodeError as exc:  # a lone surrogate, read from a pickle
                raise WriteError(f"{tensor.name!r}: the name is not valid Unicode ({exc.reason}); safetensors "
                                 "cannot hold it: write a .pt") from exc
        header[tensor.name] = {"dtype": tensor.dtype.safetensors, "shape": list(tensor.shape), "data_offsets": [offset, offset + tensor.nbytes]}
        offset += tensor.nbytes
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % HEADER_ALIGNMENT)
    return struct.pack("<Q", len(text)) + text


def write_safetensors(
    stream: BinaryIO,
    entries: Sequence[Entry],
    *,
    metadata: dict[str, str],
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """Write `entries` as one safetensors file, streaming one tensor at a time.

    Args:
        stream: a binary file positioned at its start.
        entries: tensors (laid out in the library's order) and plain values (kept in metadata
            as `convmigrate.value.<name>`).
        metadata: str -> str, written sorted into `__metadata__`.
        on_bytes: called with the size of every tensor chunk written (progress).

    Example:
        >>> import io, numpy
        >>> stream = io.BytesIO()
        >>> write_safetensors(stream, [TensorEntry.from_array("w", numpy.zeros(2, numpy.int8))], metadata={})
        >>> len(stream.getvalue()), stream.getvalue()[8:64]  # 8-byte length, header padded to 8, data
        (66, b'{"w":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}}   ')
    """
    tensors = _library_order([e for e in entries if isinstance(e, TensorEntry)])
    stream.write(safetensors_header(tensors, _metadata_with_values(entries, metadata)))
    out = TensorBytesWriter(stream)
    for tensor in tensors:
        out.write_entry(tensor, on_bytes=on_bytes)


def write_ms_safetensors(
    stream: BinaryIO,
    entries: Sequence[Entry],
    *,
    metadata: dict[str, str],
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """`write_safetensors` with {"format": "ms"} in the metadata, as MindSpore writes it."""
    write_safetensors(stream, entries, metadata={**metadata, **MS_FORMAT}, on_bytes=on_bytes)


__all__ = ["read_safetensors", "write_safetensors", "write_ms_safetensors", "safetensors_header", "VALUE_PREFIX"]
