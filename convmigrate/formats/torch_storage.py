"""Tensor entries served from the torch storages of an input file.

Both torch.save containers keep each storage's raw bytes in one piece of the file: a zip record
`data/<key>` (torch >= 1.6) or a stretch after the pickles (the legacy format). Where they lie
as they are, a storage is (offset, size) in the file; a zip record that is deflated or
big-endian is a `StorageBytes` (torch_zip) that inflates or swaps them.
Given where each storage lies, the state dict's tensor records become lazy `TensorEntry`s read
with pread (formats/input_file.py): a contiguous tensor is a span of the file (kernel copies
work on it); a view that is not (transposed, strided, expanded) or a negated one (torch's neg
bit) reads the bytes it reaches, once, and gives its own elements in C order. Every claim (the
storage's size, the view's reach) is checked against the bytes the file holds before an entry
exists, and the tensors' total size against the file's (`state_dict.check_output_size`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from convmigrate.entries import ByteSource, Checkpoint, MemoryBytes, TensorEntry
from convmigrate.errors import UnreadableCheckpointError
from convmigrate.formats.input_file import InputFile
from convmigrate.formats.pickle_reader import PickleError, TensorRecord
from convmigrate.formats.state_dict import StateDict, check_output_size, inert_entries
from convmigrate.vocab import Format


class StorageBytes(Protocol):
    """Where one storage's bytes are: their size, and a source for a range of them."""

    size: int

    def source(self, name: str, tensor: TensorRecord, first: int, length: int) -> ByteSource:
        """Bytes [first, first + length) of `tensor`'s storage (`name` for messages)."""
        ...


@dataclass(frozen=True)
class FileStorage:
    """A storage whose bytes lie as they are in `file`, from `offset`."""

    file: InputFile
    offset: int
    size: int

    def source(self, name: str, tensor: TensorRecord, first: int, length: int) -> ByteSource:
        return self.file.spans([(self.offset + first, length)] if length else [])


def _gathered(span: ByteSource, tensor: TensorRecord, length: int) -> Callable[[], Iterable[memoryview]]:
    """A view's own elements: its span read and gathered on first use, then kept (its size is
    bounded with the file's, see check_output_size)."""
    kept: list[memoryview] = []

    def produce() -> Iterable[memoryview]:
        if not kept:
            kept.append(tensor.own_bytes(span.read(0, length)))
        return kept

    return produce


def storage_checkpoint(path: Path, state: StateDict, storages: Mapping[str, tuple[int, int] | StorageBytes],
                       file: InputFile, where: Callable[[str], str] = lambda key: f"storage {key!r}") -> Checkpoint:
    """The checkpoint of `state`, its tensors served from `storages` (key -> (offset, size) in
    `file`, or a `StorageBytes`), `file` closed with the checkpoint. `where(key)` names a storage
    in messages."""

    def tensor_entry(name: str, tensor: TensorRecord) -> TensorEntry:
        storage = tensor.storage
        location = storages.get(storage.key)
        if location is None:
            raise UnreadableCheckpointError(path, f"tensor {name!r}: {where(storage.key)} is missing")
        if isinstance(location, tuple):
            location = FileStorage(file, *location)
        size = location.size
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
            return TensorEntry(name, tensor.dtype, tensor.shape, location.source(name, tensor, first, tensor.nbytes))
        span = location.source(name, tensor, first, stop - first)
        return TensorEntry(name, tensor.dtype, tensor.shape, MemoryBytes(_gathered(span, tensor, stop - first)))

    try:
        entries = inert_entries(path, state, tensor_entry)
        check_output_size(path, file.size, entries)
    except BaseException:
        file.close()
        raise
    checkpoint = Checkpoint(Format.TORCH, entries, notes=state.notes)
    checkpoint.add_closer(file.close)
    return checkpoint


__all__ = ["storage_checkpoint", "StorageBytes", "FileStorage"]
