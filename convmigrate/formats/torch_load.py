"""torch.save files read with torch.load, running their pickle: `--trust-pickle` only.

The inert reader (`torch_zip`, `torch_legacy`) reads every torch.save file's tensors without
running anything. What it cannot give is a tensor that the file's own code builds (a custom
factory function, a tensor subclass's reducer): such an entry is left out with a note. For a
file the user trusts, this reader loads it with `torch.load(weights_only=False)`, which imports
the classes the pickle names and runs its code, then finds the state dict (wrappers, whole
models via `state_dict()`, `--select`) as the inert reader does. It needs the `torch` extra;
`torch_file` imports this module only then.

A tensor entry's bytes are the tensor's own logical C-order bytes (a view that is
non-contiguous, offset into, or shares a bigger storage gives only its own elements), produced
when asked for: zero-copy for contiguous tensors. Zip files are memory-mapped by torch.

Example:
    >>> with read_torch_load(Path("fixtures/tiny_tcn.pt")) as ckpt:
    ...     ckpt.tensors()[0].name, ckpt.tensors()[0].array().shape
    ('stem.weight', (8, 2, 3))
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from convmigrate.entries import Checkpoint, Entry, TensorEntry, ValueEntry
from convmigrate.errors import UnreadableCheckpointError
from convmigrate.formats.state_dict import Objects, check_output_size, find_state_dict, plain_value, state_dict_notes
from convmigrate.formats.torch_zip import EMPTY_ZIP_MAGIC, ZIP_MAGIC, maps_in_place
from convmigrate.vocab import DTYPES, Format


def _load(path: Path, notes: list[str]) -> object:
    """torch.load of a trusted file; torch's warnings become notes, its errors one line."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with open(path, "rb") as stream:  # a file object: judged by content, whatever its name
                zipped = stream.read(len(ZIP_MAGIC)) in (ZIP_MAGIC, EMPTY_ZIP_MAGIC)
                stream.seek(0)
                if zipped:
                    # mmap=True would read a deflated record raw (wrong tensors): only where they lie as they are.
                    loaded = torch.load(str(path), map_location="cpu", weights_only=False, mmap=maps_in_place(path))
                else:
                    notes.append("legacy (pre-1.6) torch.save format: tensors were read into memory, not mapped")
                    loaded = torch.load(stream, map_location="cpu", weights_only=False)
    except Exception as exc:  # the file's own code raises anything; torch raises RuntimeError, EOFError...
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UnreadableCheckpointError(path, f"torch.load cannot read it ({type(exc).__name__}: {first_line})") from exc
    notes.extend(f"torch.load warned: {(str(w.message).strip().splitlines() or [w.category.__name__])[0]}" for w in caught)
    return loaded


def _members(value: object) -> list[tuple[object, object]] | None:
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, torch.nn.Module):
        return list(value.named_children())
    if isinstance(value, torch.Tensor) or not hasattr(value, "__dict__") or isinstance(value, type):
        return None
    return list(vars(value).items())  # an object's attributes, as the inert reader sees its state


def _module_state(path: Path, module: object, notes: list[str]) -> list[tuple[object, object]]:
    assert isinstance(module, torch.nn.Module)
    return list(module.state_dict().items())


TORCH_OBJECTS = Objects(
    is_tensor=lambda value: isinstance(value, torch.Tensor),
    is_module=lambda value: isinstance(value, torch.nn.Module),
    module_state=_module_state,
    members=_members,
    describe=lambda value: type(value).__name__,
)


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
    if tensor.layout is not torch.strided or tensor.is_quantized or tensor.is_meta:
        kind = "quantized" if tensor.is_quantized else "meta (no data)" if tensor.is_meta else str(tensor.layout)
        raise UnreadableCheckpointError(path, f"tensor {name!r} is {kind}; only dense tensors can be converted")
    tensors[name] = tensor
    return TensorEntry(name, dtype, tuple(tensor.shape), _source(tensors, name))


def read_torch_load(path: Path, *, select: str | None = None) -> Checkpoint:
    """Open a trusted torch.save file (zip or legacy) with torch.load, running its pickle.

    Returns:
        A TORCH Checkpoint of the state dict's tensors and plain values, in the file's order;
        notes say where the state dict was found and what was left out.

    Raises:
        UnreadableCheckpointError: torch cannot load it, or it holds no state dict.
        UsageError: `select` names a key that is not there.
    """
    path = Path(path)
    notes: list[str] = ["--trust-pickle: loaded with torch.load, which ran the file's pickle code"]
    loaded = _load(path, notes)
    state = find_state_dict(path, loaded, TORCH_OBJECTS, select)
    tensors: dict[str, torch.Tensor] = {}
    entries: list[Entry] = []
    left_out: list[str] = []
    for name, value in state.items:
        if not isinstance(name, str):
            left_out.append(f"{name!r} (a {type(name).__name__} key)")
        elif isinstance(value, torch.Tensor):
            entries.append(_tensor_entry(path, name, value, tensors))
        elif plain_value(value):
            entries.append(ValueEntry(name, value))  # type: ignore[arg-type]
        else:
            left_out.append(f"{name!r} ({type(value).__name__})")
    check_output_size(path, path.stat().st_size, entries)
    notes += state.notes + state_dict_notes(list(tensors), left_out)
    del loaded, state  # the tensors dict keeps the tensors alive until close()
    checkpoint = Checkpoint(Format.TORCH, entries, notes=notes)
    checkpoint.add_closer(tensors.clear)
    return checkpoint


__all__ = ["read_torch_load", "TORCH_OBJECTS"]
