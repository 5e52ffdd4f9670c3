"""The two real frameworks, imported only by the features that run a model.

Everything else in convmigrate reads and writes checkpoints without torch or MindSpore. Running
the user's PyTorch model and MindSpore network (`compare`, `torch2ms --ms-model`, `ms2torch
--model`) needs them; without one, `require_*` raises one line saying which extra to install.

The factories are the user's own trusted code (`package.module:callable`, importable from the
current directory), called with no arguments, exactly like `python -c`.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from convmigrate.errors import MissingExtraError, UsageError
from convmigrate.vocab import DTYPES, DType


def require_torch(feature: str) -> Any:
    """The torch module, or MissingExtraError naming `feature` and the `torch` extra."""
    try:
        import torch
    except ImportError as exc:
        raise MissingExtraError("torch", feature) from exc
    return torch


def _mindspore_installed() -> bool:
    return importlib.util.find_spec("mindspore") is not None


def require_mindspore(feature: str) -> Any:
    """MindSpore on CPU in PyNative mode (forward hooks run only there), imported once.

    MindSpore 2.10 imports beside numpy 2 but fails at its first computation, so numpy 2 is
    refused up front with the same one line as a missing MindSpore.
    """
    if not _mindspore_installed():
        raise MissingExtraError("mindspore", feature)
    if int(np.__version__.split(".")[0]) >= 2:
        raise MissingExtraError("mindspore", feature, f"which cannot run beside numpy {np.__version__} (it needs numpy<2)")
    # MindSpore logs its warnings to stderr from C++ (GLOG); keep the user's setting if any.
    os.environ.setdefault("GLOG_v", "3")
    try:
        import mindspore
    except ImportError as exc:
        raise MissingExtraError("mindspore", feature, f"which fails to import ({exc})") from exc
    if mindspore.get_context("device_target") != "CPU":  # once the runtime runs, the device is fixed
        mindspore.set_device("CPU")
    if mindspore.get_context("mode") != mindspore.PYNATIVE_MODE:
        mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
    return mindspore


def build_torch_model(spec: str, option: str = "--torch-model") -> Any:
    """The user's PyTorch model, in inference mode (eval)."""
    from convmigrate.layers.model import build_model

    require_torch(option)
    return build_model(spec).eval()


def build_mindspore_network(spec: str, option: str = "--ms-model") -> Any:
    """The user's MindSpore network, in inference mode (set_train(False))."""
    from convmigrate.layers.model import load_factory

    mindspore = require_mindspore(option)
    factory = load_factory(spec)
    try:
        net = factory()
    except Exception as exc:  # the user's factory failed: name it, one line (as layers.model.build_model)
        raise UsageError(f"{spec}: calling the factory failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(net, mindspore.nn.Cell):
        raise UsageError(f"{spec}: returned {type(net).__name__}, not a mindspore.nn.Cell")
    net.set_train(False)
    return net


@dataclass(frozen=True)
class Slot:
    """A parameter (or persistent buffer) a network loads: its shape and dtype."""

    shape: tuple[int, ...]
    dtype: str  # DType name (PyTorch's spelling), or the framework's own if we have none


def torch_slots(model: Any) -> dict[str, Slot]:
    """What `load_state_dict(strict=True)` wants: every state-dict name, in module order."""
    return {name: Slot(tuple(t.shape), str(t.dtype).removeprefix("torch.")) for name, t in model.state_dict().items()}


def mindspore_slots(net: Any) -> dict[str, Slot]:
    """What `load_param_into_net` wants: each parameter's name (attribute path), in cell order."""
    return {name: Slot(tuple(p.shape), _mindspore_dtype_name(p.dtype)) for name, p in net.parameters_dict().items()}


def _mindspore_dtype_name(dtype: Any) -> str:
    by_mindspore = {d.mindspore: d.name for d in DTYPES.values()}
    return by_mindspore.get(str(dtype), str(dtype))


def slot_shapes(slots: dict[str, Slot]) -> dict[str, tuple[int, ...]]:
    return {name: slot.shape for name, slot in slots.items()}


def as_float_array(array: np.ndarray, dtype: DType) -> np.ndarray:
    """A checkpoint array as NumPy can compute with it (bfloat16 bits become float32)."""
    return dtype.to_float32(array) if dtype.name == "bfloat16" else array


def to_numpy(value: Any) -> np.ndarray | None:
    """A torch or MindSpore tensor (or a NumPy array) as a NumPy copy; None for anything else.

    A copy, because a later in-place operation (ReLU(inplace=True)) would change a recorded one.
    """
    if isinstance(value, np.ndarray):
        return value.copy()
    module = type(value).__module__
    if module.startswith("torch"):
        tensor = value.detach().cpu()
        if not tensor.dtype.is_floating_point or tensor.dtype.itemsize >= 4:
            return tensor.numpy().copy()
        return tensor.float().numpy()  # float16/bfloat16: compared in float32
    if module.startswith("mindspore") and hasattr(value, "asnumpy"):
        import mindspore

        if value.dtype in (mindspore.bfloat16, mindspore.float16):
            value = value.astype(mindspore.float32)
        return np.array(value.asnumpy(), copy=True)
    return None


def take_off_weight_norm(model: Any, source_names: set[str]) -> list[str]:
    """Remove weight norm, in memory, from each module whose weight the checkpoint holds folded.

    A MindSpore checkpoint holds a weight-normalised layer as its plain weight; convmigrate does
    not split a weight back into (g, v). Weight norm only re-parametrises the weight, so the
    model computes the same function with the plain weight in its place. Returns the modules.
    """
    torch = require_torch("compare")
    from torch.nn.utils import parametrize

    taken = []
    for name, module in list(model.named_modules()):
        prefix = f"{name}." if name else ""
        if f"{prefix}weight" not in source_names:
            continue
        if parametrize.is_parametrized(module, "weight") and any(
                type(p).__name__ == "_WeightNorm" for p in module.parametrizations.weight):
            if f"{prefix}parametrizations.weight.original0" not in source_names:
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
                taken.append(name)
        elif hasattr(module, "weight_g") and hasattr(module, "weight_v") and f"{prefix}weight_g" not in source_names:
            torch.nn.utils.remove_weight_norm(module)
            taken.append(name)
    return taken
