"""The state dict inside what a torch pickle holds: training wrappers, notes on what was left out.

Training code saves the model's state dict under a key of a bigger dict (Lightning's
"state_dict", the PyTorch recipe's "model_state_dict", DeepSpeed's "module" ...). Both torch
readers (without torch, and torch.load's) look for it here, with their own idea of a tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from convmigrate.errors import UnreadableCheckpointError

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
    mapping (torch_load: a whole pickled nn.Module into its state_dict(), noted in `notes`).
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


__all__ = ["find_state_dict", "state_dict_notes", "WRAPPER_KEYS", "PLAIN_VALUE_TYPES"]
