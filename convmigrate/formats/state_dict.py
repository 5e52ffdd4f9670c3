"""The state dict inside what a torch pickle holds: wrappers, whole models, `--select`.

Training code saves the model's state dict under a key of a bigger dict (Lightning's
"state_dict", the PyTorch recipe's "model_state_dict", DeepSpeed's "module" ...), several of
them in one file (a GAN's generator and discriminator, a model and its EMA), or the whole model
(`torch.save(model)`). This module finds it, with either reader's idea of objects (`Objects`):
the inert pickle reader's records and placeholders, or torch.load's real objects.

- Without `select`, the automatic choice: the first mapping holding tensors, looking through
  wrapper keys (`WRAPPER_KEYS` first, then the file's order) up to `MAX_WRAPPER_DEPTH` levels;
  a note names where it was found, the keys left beside it and the other state dicts the file
  holds (each reachable with `--select`).
- `select` ("discriminator", "model.ema") walks those keys; a key that is not there is a usage
  error naming the keys that are. A key may itself contain dots: the longest one that exists
  is taken first.
- A whole pickled nn.Module (a placeholder whose state has `_parameters`, `_buffers` and
  `_modules`) gives the names and order `model.state_dict()` gives: its parameters, its
  persistent buffers (not those in `_non_persistent_buffers_set`), then each submodule's, under
  "name.". Old-style weight norm (`weight_g` / `weight_v`) and parametrizations
  (`parametrizations.weight.original0`) are parameters like any other, so they come out as
  torch names them. state_dict hooks and get_extra_state are code: they are not run.

Every walk here visits each object once (a DAG of shared dicts costs its size, not its paths)
and is bounded (`STATE_DICT_MAX_ENTRIES`, `PICKLE_MAX_NESTING`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from convmigrate.entries import Entry, TensorEntry, ValueEntry
from convmigrate.errors import UnreadableCheckpointError, UsageError
from convmigrate.formats.pickle_reader import Global, Opaque, PickleError, TensorRecord, UnservedTensor, load_pickle
from convmigrate.limits import PICKLE_MAX_NESTING, STATE_DICT_MAX_ENTRIES, TORCH_OUTPUT_MAX_RATIO, TORCH_OUTPUT_SLACK

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
INT64 = (-(2**63), 2**63 - 1)  # a plain int value must fit every format's integer
DATA_PARALLEL_PREFIX = "module."
MAX_LISTED = 10  # names shown in one note


# --------------------------------------------------------------------------- objects
@dataclass(frozen=True)
class Objects:
    """What the search needs to know of a reader's objects.

    `members` gives the (key, value) pairs the search and --select walk into (None: a leaf);
    `module_state` the state dict of a whole model (None: not a model), which is not computed
    until the model is chosen (`is_module` says whether it is one).
    """

    is_tensor: Callable[[object], bool]
    is_module: Callable[[object], bool]
    module_state: Callable[[Path, object, list[str]], list[tuple[object, object]]]
    members: Callable[[object], list[tuple[object, object]] | None]
    describe: Callable[[object], str]


@dataclass
class StateDict:
    """The chosen state dict: (name, value) pairs in order, and what the reader noted."""

    items: list[tuple[object, object]]
    notes: list[str] = field(default_factory=list)


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def _key_text(key: object) -> str:
    """A key as a note shows it: repr of a short text or number, else its type."""
    if isinstance(key, str):
        return repr(key if len(key) <= 80 else key[:77] + "...")
    if isinstance(key, (int, float, bool)) and not (isinstance(key, int) and key.bit_length() > 64):
        return repr(key)
    return f"a {type(key).__name__} key"


def _a(what: str) -> str:
    """'an int', 'a dict'."""
    return f"{'an' if what[:1].lower() in 'aeiou' else 'a'} {what}"


def _where(keys: Sequence[object]) -> str:
    return "".join(f"[{_key_text(k)}]" for k in keys)


def _select_text(keys: Sequence[object]) -> str:
    return ".".join(str(k) if isinstance(k, (str, int)) else "?" for k in keys)


# --------------------------------------------------------------------------- the inert reader's objects
def _is_inert_tensor(value: object) -> bool:
    return isinstance(value, (TensorRecord, UnservedTensor))


def _module_parts(value: object) -> tuple[dict, dict, dict, dict] | None:
    """(state, _parameters, _buffers, _modules) of a pickled nn.Module, else None."""
    if not isinstance(value, Opaque) or not isinstance(value.state, dict):
        return None
    state = value.state
    parts = state.get("_parameters"), state.get("_buffers"), state.get("_modules")
    if not all(isinstance(part, dict) for part in parts):
        return None
    return state, *parts  # type: ignore[return-value]


def _is_inert_module(value: object) -> bool:
    return _module_parts(value) is not None


def _inert_members(value: object) -> list[tuple[object, object]] | None:
    if type(value) is dict:
        return list(value.items())
    if isinstance(value, Opaque):
        parts = _module_parts(value)
        if parts is not None:  # a model: its submodules (--select model.encoder)
            return [(k, v) for k, v in parts[3].items() if v is not None]
        state = value.state
        members: list[tuple[object, object]] = []
        for part in state if isinstance(state, tuple) and len(state) == 2 else (state,):
            if type(part) is dict:  # an object's attributes (and slots)
                members += part.items()
        return members + (value.items or [])
    return None


def _inert_describe(value: object) -> str:
    if isinstance(value, Opaque):
        return value.type_name
    if isinstance(value, Global):
        return f"the name {value}"
    return type(value).__name__


def _inert_module_state(path: Path, root: object, notes: list[str]) -> list[tuple[object, object]]:
    """model.state_dict() of a pickled module tree, rebuilt: same names, same order."""
    out: dict[object, object] = {}
    visits, hooked = 0, 0
    pending: list[tuple[object, str, int]] = [(root, "", 0)]
    while pending:
        module, prefix, depth = pending.pop()
        visits += 1
        if visits + len(out) > STATE_DICT_MAX_ENTRIES:
            raise UnreadableCheckpointError(
                path, f"its pickled module tree names more than {STATE_DICT_MAX_ENTRIES:,} tensors (STATE_DICT_MAX_ENTRIES)"
            )
        if depth > PICKLE_MAX_NESTING:
            raise UnreadableCheckpointError(
                path, f"its pickled module tree nests deeper than {PICKLE_MAX_NESTING} modules (is it cyclic?)"
            )
        parts = _module_parts(module)
        if parts is None:
            raise UnreadableCheckpointError(
                path, f"the pickled module {prefix.rstrip('.')!r} is a {_inert_describe(module)}, not a module"
            )
        state, parameters, buffers, children = parts
        skipped = state.get("_non_persistent_buffers_set")
        non_persistent = skipped if isinstance(skipped, (set, frozenset)) else set()
        for name, value in parameters.items():
            if value is not None:
                out[_joined(prefix, name)] = value
        for name, value in buffers.items():
            if value is not None and name not in non_persistent:
                out[_joined(prefix, name)] = value
        if state.get("_state_dict_hooks") or state.get("_state_dict_pre_hooks"):
            hooked += 1
        named = [(name, child) for name, child in children.items() if child is not None]
        pending += [(child, f"{_joined(prefix, name)}.", depth + 1) for name, child in reversed(named)]
    if hooked:
        notes.append(f"{hooked} pickled modules have state_dict hooks, which were not run (they are code)")
    return list(out.items())


def _joined(prefix: str, name: object) -> object:
    return prefix + name if isinstance(name, str) else (prefix, name)  # a non-text name is left out later


INERT = Objects(_is_inert_tensor, _is_inert_module, _inert_module_state, _inert_members, _inert_describe)


# --------------------------------------------------------------------------- finding it
def load_state_pickle(path: Path, data: bytes, persistent_load: Callable[[object], object] | None = None) -> object:
    """What a torch zip's data.pkl holds, read inertly; a hostile pickle is one-line error."""
    try:
        return load_pickle(data, persistent_load)
    except PickleError as exc:
        raise UnreadableCheckpointError(path, str(exc)) from None


def _ranked(members: list[tuple[object, object]]) -> list[tuple[object, object]]:
    """Wrapper keys first (in WRAPPER_KEYS' order), then the rest in the file's order."""
    order = {key: rank for rank, key in enumerate(WRAPPER_KEYS)}
    known = [pair for pair in members if isinstance(pair[0], str) and pair[0] in order]
    rest = [pair for pair in members if not (isinstance(pair[0], str) and pair[0] in order)]
    return sorted(known, key=lambda pair: order[pair[0]]) + rest  # type: ignore[index]


def _holds_tensors(members: list[tuple[object, object]], objects: Objects) -> bool:
    return any(objects.is_tensor(v) for _, v in members)


def _is_state_dict(members: list[tuple[object, object]], objects: Objects) -> bool:
    """Holds tensors and is no wrapper: a training checkpoint may keep a tensor (an RNG state)
    beside "model_state_dict", but no state dict has a wrapper key naming a state dict."""
    if not _holds_tensors(members, objects):
        return False
    for key, value in members:
        if isinstance(key, str) and key in WRAPPER_KEYS and not objects.is_tensor(value):
            if objects.is_module(value) or _holds_tensors(objects.members(value) or [], objects):
                return False
    return True


def _state_dicts(root: object, objects: Objects) -> list[tuple[tuple[object, ...], object]]:
    """Every state dict (or whole model) below `root` within MAX_WRAPPER_DEPTH keys, each
    object visited once, in the order of the automatic choice (wrapper keys first, then the
    file's order, level by level; the first is the choice)."""
    found: list[tuple[tuple[int, ...], tuple[object, ...], object]] = []
    seen = {id(root)}
    queue: deque[tuple[object, tuple[object, ...], tuple[int, ...]]] = deque([(root, (), ())])
    while queue:
        node, keys, ranks = queue.popleft()
        members = objects.members(node) if not objects.is_module(node) else None
        if keys and (objects.is_module(node) or (members is not None and _is_state_dict(members, objects))):
            found.append((ranks, keys, node))
            continue
        if members is None or len(keys) >= MAX_WRAPPER_DEPTH:
            continue
        for rank, (key, value) in enumerate(_ranked(members)):
            # Text keys only: an optimizer's per-parameter state (keyed 0, 1 ...) is no state dict.
            if isinstance(key, str) and id(value) not in seen:
                seen.add(id(value))
                queue.append((value, (*keys, key), (*ranks, rank)))
    found.sort(key=lambda row: row[0])
    return [(keys, node) for _, keys, node in found]


def _select(path: Path, root: object, select: str, objects: Objects) -> tuple[object, tuple[object, ...]]:
    """The object `select` names: keys separated by dots, the longest existing key first."""
    node, keys, rest = root, (), select.split(".")
    while rest:
        members = objects.members(node)
        if members is None and isinstance(node, (list, tuple)):
            members = list(enumerate(node))
        where = _where(keys) or "the file's top level"
        if members is None:
            raise UsageError(f"--select {select}: {path}: {where} is {_a(objects.describe(node))}, which has no keys")
        by_text = {k if isinstance(k, str) else str(k): (k, v) for k, v in members if isinstance(k, (str, int))}
        for size in range(len(rest), 0, -1):
            wanted = ".".join(rest[:size])
            if wanted in by_text:
                key, node = by_text[wanted]
                keys, rest = (*keys, key), rest[size:]
                break
        else:
            known = [_key_text(k) for k, _ in members]
            raise UsageError(
                f"--select {select}: {path}: {where} has no key {rest[0]!r}; its keys are: {_listed(known) or 'none'}"
            )
    return node, keys


def find_state_dict(path: Path, loaded: object, objects: Objects = INERT, select: str | None = None) -> StateDict:
    """The state dict in `loaded` (the file's top object), as (name, value) pairs, with notes.

    Raises:
        UsageError: `select` names a key that is not there, or something that is no state dict.
        UnreadableCheckpointError: the file holds no state dict.
    """
    notes: list[str] = []
    node, keys = _select(path, loaded, select, objects) if select else (loaded, ())
    if select and objects.is_tensor(node):
        raise UsageError(f"--select {select}: {path}: {_where(keys)} is a tensor, not a state dict; select the mapping holding it")
    if objects.is_module(node):
        return StateDict(_whole_model(path, node, keys, objects, notes), notes)
    members = objects.members(node)
    if members is None:
        if select:
            raise UsageError(f"--select {select}: {path}: {_where(keys)} is {_a(objects.describe(node))}, not a state dict")
        raise UnreadableCheckpointError(path, f"holds {_a(objects.describe(node))}, not a state dict (a mapping of names to tensors)")
    if _is_state_dict(members, objects):
        return StateDict(members, notes)
    if not keys and all(isinstance(v, PLAIN_VALUE_TYPES) for _, v in members):
        notes.append(f"the state dict holds no tensors, only {len(members)} plain values")
        return StateDict(members, notes)  # e.g. what we write for a checkpoint of values only
    candidates = _state_dicts(node, objects)
    if not candidates:
        top = _listed([_key_text(k) for k, _ in members]) or "none"
        # The search stops MAX_WRAPPER_DEPTH keys down: a state dict deeper than that is named with --select.
        deeper = f"within {MAX_WRAPPER_DEPTH} keys (keys: {top}); a state dict further down is read with --select KEY.KEY..."
        if select:
            raise UsageError(f"--select {select}: {path}: {_where(keys)} holds no tensors {deeper}")
        raise UnreadableCheckpointError(path, f"holds no tensors {deeper}, or it is not a model checkpoint")
    (below, chosen), others = candidates[0], candidates[1:]
    _note_choice(loaded, (*keys, *below), others, keys, objects, notes)
    if objects.is_module(chosen):
        return StateDict(_whole_model(path, chosen, (*keys, *below), objects, notes), notes)
    return StateDict(objects.members(chosen) or [], notes)


def _note_choice(root: object, keys: tuple[object, ...], others: list, selected: tuple[object, ...],
                 objects: Objects, notes: list[str]) -> None:
    """Where the state dict was found, what was left beside it, and the other state dicts."""
    node = root
    for depth, key in enumerate(keys):
        members = objects.members(node) or []
        if depth >= len(selected):
            beside = [_key_text(k) for k, _ in members if k is not key]
            left = f"; left out the other keys: {_listed(beside)}" if beside else ""
            notes.append(f"state dict found under {_where(keys[: depth + 1])}{left}")
        node = next((v for k, v in members if k is key), None)
    if others:
        names = [_select_text((*selected, *below)) for below, _ in others]
        notes.append(f"the file holds other state dicts, left out: {_listed(names)} (read one with --select KEY)")


def _whole_model(path: Path, model: object, keys: tuple[object, ...], objects: Objects, notes: list[str]) -> list:
    notes.append(
        f"file{_where(keys)} holds a whole pickled {_model_name(model, objects)} module; read as the state dict "
        "its state_dict() gives (the same names, in the same order)"
    )
    return objects.module_state(path, model, notes)


def _model_name(model: object, objects: Objects) -> str:
    name = objects.describe(model)
    return name.rsplit(".", 1)[-1]


# --------------------------------------------------------------------------- entries
def state_dict_notes(tensor_names: list[str], left_out: list[str], code_built: int = 0) -> list[str]:
    """What the reader tells the user about entries it left out and DataParallel prefixes."""
    notes = []
    if left_out:
        notes.append(f"left out {len(left_out)} entries that are neither tensors nor plain values: {_listed(left_out)}")
    if code_built:
        notes.append(
            f"{code_built} of them would be built by code in the file, which convmigrate does not run; if one is "
            "a tensor, --trust-pickle loads the file with torch.load, running that code (only for files you trust)"
        )
    if tensor_names and all(name.startswith(DATA_PARALLEL_PREFIX) for name in tensor_names):
        notes.append("every tensor name starts with 'module.' (saved from DataParallel/DistributedDataParallel); kept as is")
    return notes


def plain_value(value: object) -> bool:
    """A value every format can carry beside the tensors: bool, float, str, or an int64."""
    if type(value) is int:
        return INT64[0] <= value <= INT64[1]
    return isinstance(value, PLAIN_VALUE_TYPES)


def inert_entries(path: Path, state: StateDict, tensor_entry: Callable[[str, TensorRecord], TensorEntry]) -> list[Entry]:
    """The entries of a state dict read by the inert reader; notes go to `state.notes`.

    Tensors become `tensor_entry(name, record)` (the container serves their bytes); plain
    values stay; everything else is left out with a note naming it.
    """
    entries: list[Entry] = []
    left_out: list[str] = []
    code_built = 0
    for name, value in state.items:
        if not isinstance(name, str):
            left_out.append(f"{_key_text(name)} (a {type(name).__name__} key)")
        elif isinstance(value, TensorRecord):
            entries.append(tensor_entry(name, value))
        elif isinstance(value, UnservedTensor):
            raise UnreadableCheckpointError(path, f"tensor {name!r} is {value.kind}; only dense tensors can be converted")
        elif plain_value(value):
            entries.append(ValueEntry(name, value))  # type: ignore[arg-type]
        else:
            if isinstance(value, Opaque):
                code_built += 1
            left_out.append(f"{_key_text(name)} ({_inert_describe(value) if not isinstance(value, int) else 'an integer beyond 64 bits'})")
    state.notes += state_dict_notes([e.name for e in entries if isinstance(e, TensorEntry)], left_out, code_built)
    return entries


def check_output_size(path: Path, file_size: int, entries: Iterable[Entry]) -> None:
    """Refuse a file whose tensors, each written out whole, would take far more than the file.

    Views and tied weights share one storage in the file; every format we write stores each
    tensor's own bytes, so 1 000 views of one 1 MiB storage would write 1 GB (and hash, verify
    and convert it). Bounded by TORCH_OUTPUT_MAX_RATIO x the file + TORCH_OUTPUT_SLACK.
    """
    total = 0
    bound = TORCH_OUTPUT_MAX_RATIO * file_size + TORCH_OUTPUT_SLACK
    for entry in entries:
        if isinstance(entry, TensorEntry):
            total += entry.nbytes
            if total > bound:
                raise UnreadableCheckpointError(
                    path,
                    f"its tensors would take more than {bound:,} bytes written out ({TORCH_OUTPUT_MAX_RATIO} x its "
                    f"{file_size:,} bytes + {TORCH_OUTPUT_SLACK:,}: TORCH_OUTPUT_MAX_RATIO): many tensors view the "
                    "same storage, and each is written out whole",
                )


__all__ = [
    "find_state_dict", "load_state_pickle", "inert_entries", "check_output_size", "state_dict_notes", "plain_value", "StateDict", "Objects",
    "INERT", "WRAPPER_KEYS", "PLAIN_VALUE_TYPES",
]
