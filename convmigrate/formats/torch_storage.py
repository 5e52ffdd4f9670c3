"""Tensor entries served from the torch storages of an input file.

Both torch.save containers keep each storage's raw little-endian bytes in one piece of the file:
a zip record `data/<key>` (torch >= 1.6) or a stretch after the pickles (the legacy format).
Given where each storage lies, the state dict's tensor records become lazy `TensorEntry`s read
with pread (formats/input_file.py): a contiguous tensor is a span of the file (kernel copies
work on it); a view that is not (transposed, strided, expanded) or a negated one (torch's neg
bit) reads the bytes it reaches, once, and gives its own elements in C order. Every claim (the
storage's size, the view's reach) is checked against the bytes the file holds before an entry
exists, and the tensors' total size against the file's (`state_dict.check_output_size`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from convmigrate.entries import Checkpoint, MemoryBytes, TensorEntry
from convmigrate.errors import UnreadableCheckpointError
from convmigrate.formats.input_file import InputFile
from convmigrate.formats.pickle_reader import PickleError, TensorRecord
from convmigrate.formats.state_dict import StateDict, check_output_size, inert_entries
from convmigrate.vocab import Format


def _gathered(file: InputFile, tensor: TensorRecord, offset: int, length: int) -> Callable[[], Iterable[memoryview]]:
    """A view's own elements: its span read and gathered on first use, then kept (its size is
    bounded with the file's, see check_output_size)."""
    kept: list[memoryview] = []

    def produce() -> Iterable[memoryview]:
        if not kept:
            kept.append(tensor.own_bytes(file.spans([(offset, length)] if length else []).read(0, length)))
        return kept

    return produce


def storage_checkpoint(path: Path, state: StateDict, storages: Mapping[str, tuple[int, int]], file: InputFile,
                       where: Callable[[str], str] = lambda key: f"storage {key!r}") -> Checkpoint:
    """The checkpoint of `state`, its tensors served from `storages` (key -> (offset, size) in
    `file`, which the checkpoint closes). `where(key)` names a storage in messages."""

    def tensor_entry(name: str, tensor: TensorRecord) -> TensorEntry:
        storage = tensor.storage
        location = storages.get(storage.key)
        if location is None:
            raise UnreadableCheckpointError(path, f"tensor {name!r}: {where(storage.key)} is missing (or compressed)")
        start, size = location
        claimed = storage.numel * storage.itemsize
        if size < claimed:
            raise UnreadableCheckpointError(
                path, f"tensor {name!r}: {where(storage.key)} holds {size:,} bytes, the pickle claims {claimed:,}"
            )
        try:
            first, stop = tensor.byte_span()
        except PickleError as exc:
            raise UnreadableCheckpointError(path, f"tensor {name!r}: {exc}") from None
        if tensor.contiguous() and not tensor.negative:
            source = file.spans([(start + first, tensor.nbytes)] if tensor.nbytes else [])
            return TensorEntry(name, tensor.dtype, tensor.shape, source)
        return TensorEntry(name, tensor.dtype, tensor.shape, MemoryBytes(_gathered(file, tensor, start + first, stop - first)))

    try:
        entries = inert_entries(path, state, tensor_entry)
        check_output_size(path, file.size, entries)
    except BaseException:
        file.close()
        raise
    checkpoint = Checkpoint(Format.TORCH, entries, notes=state.notes)
    checkpoint.add_closer(file.close)
    return checkpoint


__all__ = ["storage_checkpoint"]
