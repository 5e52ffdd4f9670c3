"""Loading weights into each network strictly, naming every parameter that has no tensor and
every tensor that has no parameter at once (the frameworks' own loaders stop at the first
shape error, or only warn).

PyTorch: `load_state_dict(strict=True)` after the names and shapes are checked here.
MindSpore: `load_param_into_net(strict_load=True)`, whose two lists of names left out are
merged with the same checks; a float dtype other than the parameter's is cast (as PyTorch's
`load_state_dict` does) and noted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from convmigrate.compare.frameworks import (
    Slot,
    as_float_array,
    mindspore_slots,
    require_mindspore,
    require_torch,
    torch_slots,
)
from convmigrate.compare.results import LoadResult
from convmigrate.entries import Checkpoint
from convmigrate.plan import Plan
from convmigrate.rules.names import join_name, split_name
from convmigrate.vocab import DTYPES, Framework, ProblemCode

_FLOATS = {d.mindspore for d in DTYPES.values() if d.is_floating}  # MindSpore's dtype names


def _check(result: LoadResult, slots: Mapping[str, Slot], shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Fill missing / unexpected / mismatched; return the names that fit."""
    fitting = []
    for name, shape in shapes.items():
        slot = slots.get(name)
        if slot is None:
            result.unexpected.append(name)
        elif tuple(shape) != slot.shape:
            result.mismatched.append(f"{name}: network {_shape(slot.shape)}, weights {_shape(shape)}")
        else:
            fitting.append(name)
    result.missing = [name for name in slots if name not in shapes]
    return fitting


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def checkpoint_arrays(checkpoint: Checkpoint) -> dict[str, np.ndarray]:
    """Every tensor of an opened checkpoint as a NumPy array in memory (bfloat16 as float32);
    plain values left out. Copies: the checkpoint's memory maps close with it."""
    return {entry.name: np.array(as_float_array(entry.array(), entry.dtype)) for entry in checkpoint.tensors()}


def load_result_from_plan(plan: Plan, slots: Mapping[str, Slot], framework: Framework) -> LoadResult:
    """What the conversion, planned against the network's own names and shapes, could not place.

    Nothing was written, so nothing is loaded: the plan already names each parameter that no
    tensor fills ("missing") and each tensor the network has no place for ("unexpected").
    """
    result = LoadResult(framework, f"converted by {plan.direction.value} (not written)")
    for problem in plan.failures():
        if problem.code is ProblemCode.MISSING:
            result.missing.append(problem.name)
        elif problem.code is ProblemCode.UNEXPECTED:
            result.unexpected.append(problem.name)
        else:
            result.mismatched.append(f"{problem.name}: {problem.message.removeprefix(problem.name + ': ')}")
    if not plan.failures():
        result.notes.append("the conversion was not written")
    if framework is Framework.MINDSPORE:
        result.notes += _bias_hints(result.unexpected, slots)
    return result


def load_torch(model: Any, tensors: Mapping[str, Any], source: str) -> LoadResult:
    """Load `tensors` (torch tensors or NumPy arrays) into `model` with strict=True."""
    torch = require_torch("compare")
    result = LoadResult(Framework.TORCH, source)
    fitting = _check(result, torch_slots(model), {name: tuple(t.shape) for name, t in tensors.items()})
    if result.ok:
        state = {name: torch.from_numpy(t) if isinstance(t, np.ndarray) else t for name, t in tensors.items()}
        model.load_state_dict(state, strict=True)
        result.loaded = len(fitting)
    return result


def mindspore_parameters(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """NumPy arrays as the named Parameters `load_param_into_net` takes."""
    mindspore = require_mindspore("compare")
    return {name: mindspore.Parameter(mindspore.Tensor(np.array(a)), name=name) for name, a in arrays.items()}


def load_mindspore(net: Any, parameters: Mapping[str, Any], source: str) -> LoadResult:
    """Load `parameters` (name -> Parameter, as mindspore.load_checkpoint returns) into `net`."""
    mindspore = require_mindspore("compare")
    result = LoadResult(Framework.MINDSPORE, source)
    slots = mindspore_slots(net)
    network = net.parameters_dict()
    fitting = _check(result, slots, {name: tuple(p.shape) for name, p in parameters.items()})
    result.notes += _bias_hints(result.unexpected, slots)
    if not result.ok:
        return result
    chosen = {}
    for name in fitting:
        value, want = parameters[name], network[name].dtype
        if value.dtype != want:
            if not {str(value.dtype), str(want)} <= _FLOATS:
                result.mismatched.append(f"{name}: network {want}, weights {value.dtype}")
                continue
            result.notes.append(f"{name}: {value.dtype} cast to the network's {want}")
            value = mindspore.Parameter(value.astype(want), name=name)
        chosen[name] = value
    if not result.ok:
        return result
    try:
        not_loaded, unused = mindspore.load_param_into_net(net, chosen, strict_load=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        result.mismatched.append(f"load_param_into_net: {str(exc).strip().splitlines()[0]}")
        return result
    result.missing += [n for n in not_loaded if n not in result.missing]
    result.unexpected += [n for n in unused if n not in result.unexpected]
    result.loaded = len(chosen) - len(unused)
    return result


def _bias_hints(unexpected: list[str], slots: Mapping[str, Slot]) -> list[str]:
    """A bias with no home beside a weight that loads: a conv built without has_bias=True."""
    hints = []
    for name in unexpected:
        layer, suffix = split_name(name)
        if suffix == "bias" and join_name(layer, "weight") in slots:
            hints.append(f"{name}: the MindSpore layer {layer or '(root)'} has a weight but no bias; "
                         "MindSpore's nn.Conv1d and Conv1dTranspose default to has_bias=False")
    return hints
