"""Run both networks once with forward hooks on every layer, and pair their layers' outputs.

The PyTorch model runs first; a hook on every module keeps a copy of each call's outputs (in
execution order: a module's hook fires when its forward returns, so a layer comes before the
block that contains it). The MindSpore network runs second; a hook on every cell compares each
call's outputs at once with the PyTorch call it is paired with — same layer name (as the
conversion mapped it), same call number — so MindSpore's side is never stored.

Pre-hooks keep the stack of layers being run, so a network that raises is reported with the
innermost layer it was running.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convmigrate.compare.differences import Difference, compare_many
from convmigrate.compare.frameworks import require_mindspore, require_torch, to_numpy
from convmigrate.compare.inputs import ForwardInputs
from convmigrate.compare.results import LayerComparison, LayerStatus
from convmigrate.limits import COMPARE_MAX_RECORDED_BYTES


def flatten(value: Any, path: str = "") -> list[tuple[str, np.ndarray]]:
    """Every tensor in a (nested) output, with its path: 'output', '0', '1.h', 'last_hidden_state'.

    Tuples and lists by position, dicts (transformers' ModelOutput too) by key; None and other
    non-tensors are left out.
    """
    array = to_numpy(value)
    if array is not None:
        return [(path or "output", array)]
    if isinstance(value, Mapping):
        items: Any = value.items()
    elif isinstance(value, (tuple, list)):
        items = enumerate(value)
    else:
        return []
    flat: list[tuple[str, np.ndarray]] = []
    for key, item in items:
        flat += flatten(item, f"{path}.{key}" if path else str(key))
    return flat


class NetworkFailed(Exception):
    """A forward call raised; `layer` is the innermost layer that was running. A MindSpore
    failure carries the layers compared before it."""

    def __init__(self, layer: str | None, error: BaseException) -> None:
        self.layer, self.error = layer, error
        text = str(error).strip()
        self.summary = f"{type(error).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
        self.layers: list[LayerComparison] = []
        self.only_in_mindspore: list[str] = []
        super().__init__(self.summary)


@dataclass
class TorchCall:
    name: str
    call: int
    kind: str
    tensors: list[np.ndarray] | None  # None: over the recording budget


@dataclass
class TorchRun:
    outputs: list[tuple[str, np.ndarray]]
    calls: list[TorchCall]
    leaves: set[str] = field(default_factory=set)  # modules without children
    warnings: list[str] = field(default_factory=list)


def _warning_texts(caught: list[warnings.WarningMessage]) -> list[str]:
    """The user's model's warnings, once each, as notes (not loose lines in the output)."""
    return list(dict.fromkeys(f"{w.category.__name__}: {(str(w.message).splitlines() or [''])[0]}" for w in caught))


def _hooked_modules(model: Any) -> dict[Any, str]:
    """Every named module but the root and weight-norm parametrizations (which compute weights)."""
    return {module: name for name, module in model.named_modules()
            if name and "parametrizations" not in name.split(".")}


def run_torch(model: Any, inputs: ForwardInputs, budget: int = COMPARE_MAX_RECORDED_BYTES) -> TorchRun:
    """Run the PyTorch model in inference mode, recording every module call's outputs."""
    torch = require_torch("compare")
    names = _hooked_modules(model)
    calls: list[TorchCall] = []
    counts: Counter[str] = Counter()
    stack: list[str] = []
    recorded = 0

    def enter(module: Any, _args: Any) -> None:
        stack.append(names[module])

    def leave(module: Any, _args: Any, output: Any) -> None:
        nonlocal recorded
        name = names[module]
        if stack and stack[-1] == name:
            stack.pop()
        tensors: list[np.ndarray] | None = [a for _, a in flatten(output)]
        size = sum(t.nbytes for t in tensors or ())
        if recorded + size > budget:
            tensors = None
        else:
            recorded += size
        calls.append(TorchCall(name, counts[name], type(module).__name__, tensors))
        counts[name] += 1

    handles = [h for module in names for h in (module.register_forward_pre_hook(enter), module.register_forward_hook(leave))]
    args = [torch.from_numpy(array.copy()) for _, array in inputs.args]
    kwargs = {key: torch.from_numpy(array.copy()) for key, array in inputs.kwargs.items()}
    try:
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            output = model(*args, **kwargs)
    except Exception as exc:
        raise NetworkFailed(stack[-1] if stack else None, exc) from exc
    finally:
        for handle in handles:
            handle.remove()
    leaves = {name for module, name in names.items() if next(iter(module.children()), None) is None}
    return TorchRun(flatten(output), calls, leaves, _warning_texts(caught))


@dataclass
class MindSporeRun:
    outputs: list[tuple[str, np.ndarray]]
    layers: list[LayerComparison]
    only_in_mindspore: list[str]  # cells with no PyTorch module of their name
    warnings: list[str] = field(default_factory=list)


def run_mindspore(net: Any, inputs: ForwardInputs, torch_run: TorchRun, pair: Callable[[str], str],
                  tolerance: tuple[float, float]) -> MindSporeRun:
    """Run the MindSpore network, comparing each cell call with its paired PyTorch call.

    `pair(torch module name)` is the MindSpore cell name the conversion gave that layer.
    Raises NetworkFailed (with the layers compared so far in `.layers`) if the network raises.
    """
    mindspore = require_mindspore("compare")
    rtol, atol = tolerance
    cells = {}
    for name, cell in net.cells_and_names():
        if name:
            cells.setdefault(id(cell), (cell, name))
    torch_of = {pair(call.name): call.name for call in torch_run.calls}
    by_key = {(call.name, call.call): call for call in torch_run.calls}
    compared: dict[tuple[str, int], tuple[str, str, Difference]] = {}  # torch key -> (cell, class, diff)
    counts: Counter[str] = Counter()
    seen: set[str] = set()
    stack: list[str] = []

    def enter(cell: Any, _inputs: Any) -> None:
        stack.append(cells[id(cell)][1])

    def leave(cell: Any, _inputs: Any, output: Any) -> None:
        name = cells[id(cell)][1]
        if stack and stack[-1] == name:
            stack.pop()
        seen.add(name)
        call = counts[name]
        counts[name] += 1
        torch_name = torch_of.get(name)
        recorded = by_key.get((torch_name, call)) if torch_name is not None else None
        if recorded is None or recorded.tensors is None:
            return
        got = [a for _, a in flatten(output)]
        compared[(recorded.name, call)] = (name, type(cell).__name__, compare_many(recorded.tensors, got, rtol, atol))

    handles = [h for cell, _name in cells.values()
               for h in (cell.register_forward_pre_hook(enter), cell.register_forward_hook(leave))]
    args = [mindspore.Tensor(array.copy()) for _, array in inputs.args]
    kwargs = {key: mindspore.Tensor(array.copy()) for key, array in inputs.kwargs.items()}
    failure: NetworkFailed | None = None
    output: Any = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            output = net(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the user's network may raise anything: it is the finding
            # Named by the innermost cell paired with a PyTorch layer (not LSTM's internal `rnn`).
            paired = [name for name in stack if name in torch_of]
            failure = NetworkFailed(paired[-1] if paired else (stack[-1] if stack else None), exc)
        finally:
            for handle in handles:
                handle.remove()
    layers = _ledger(torch_run, pair, compared, cells_named={n for _c, n in cells.values()})
    only = [name for _cell, name in cells.values()
            if name not in torch_of and name in seen and not _inside_leaf(name, torch_of, torch_run.leaves)]
    if failure is not None:
        failure.layers, failure.only_in_mindspore = layers, only
        raise failure
    return MindSporeRun(flatten(output), layers, only, _warning_texts(caught))


def _inside_leaf(name: str, torch_of: Mapping[str, str], leaves: set[str]) -> bool:
    """A cell inside a cell paired with a PyTorch leaf module (LSTM's inner `rnn`): an internal."""
    parts = name.split(".")
    return any(torch_of.get(".".join(parts[:i])) in leaves for i in range(1, len(parts)))


def _ledger(torch_run: TorchRun, pair: Callable[[str], str], compared: Mapping[tuple[str, int], tuple[str, str, Difference]],
            cells_named: set[str]) -> list[LayerComparison]:
    """Every PyTorch call in execution order, with what MindSpore did at that place."""
    layers = []
    for call in torch_run.calls:
        ms_name = pair(call.name)
        found = compared.get((call.name, call.call))
        if found is not None:
            cell_name, cell_class, difference = found
            status = LayerStatus.OK if difference.passed else (
                LayerStatus.DIFFERS if difference.comparable else LayerStatus.SHAPE)
            layers.append(LayerComparison(call.name, call.call, call.kind, cell_name, cell_class, status, difference))
        elif call.tensors is None:
            layers.append(LayerComparison(call.name, call.call, call.kind, ms_name, None, LayerStatus.NOT_RECORDED, None))
        elif ms_name not in cells_named:
            layers.append(LayerComparison(call.name, call.call, call.kind, None, None, LayerStatus.NO_CELL, None))
        else:
            layers.append(LayerComparison(call.name, call.call, call.kind, ms_name, None, LayerStatus.NOT_RUN, None))
    return layers
