"""The mutation test (issue 11): a correct conversion verifies; exactly one damage never does.

A random model (every layer kind the rules know, every float dtype, weight norm folded or kept,
training state) is saved by the real framework (torch.save; mindspore.save_checkpoint for the
MindSpore half), converted by `run_migration` (the library behind torch2ms / ms2torch), and then
exactly one damage is done to the converted file: a tensor dropped, renamed, added, given another
dtype, changed by one ulp, its axes swapped, its kernel reversed, or one half of a kept weight
norm changed. `convmigrate verify` (the in-process CLI) must exit 1 naming that tensor and its
layer; with no damage, exit 0.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from convmigrate.entries import Entry, TensorEntry
from convmigrate.formats import open_checkpoint, write_checkpoint
from convmigrate.migrate import MigrationRequest, run_migration
from convmigrate.plan import Direction, Op, Plan
from convmigrate.rules.extras import is_training_extra
from convmigrate.rules.names import split_name
from convmigrate.vocab import DTYPES
from tests.conftest import run_cli

# 2 x 260 examples in CI, the same ones every run (each converts, damages and verifies one small
# model: ~50 ms); MUTATION_EXAMPLES=N explores N fresh ones per direction.
EXAMPLES = int(os.environ.get("MUTATION_EXAMPLES", 260))
FLOATS = ("float32", "float16", "bfloat16", "float64")
KINDS = ("conv1d", "conv_transpose1d", "conv2d", "linear", "batch_norm", "norm", "embedding", "prelu",
         "weight_norm_conv", "weight_norm_linear", "training_state")
DAMAGES = ("drop", "rename", "extra", "dtype", "ulp", "swap_axes", "reverse_kernel", "weight_norm_half")
# Another dtype for each: a float for a float, an int for an int.
OTHER_DTYPE = {"float32": "float64", "float64": "float32", "float16": "float32", "bfloat16": "float16", "int64": "int32"}

Model = dict[str, tuple[str, tuple[int, ...]]]  # name -> (dtype, shape), in the source framework's names


@st.composite
def models(draw: st.DrawFn, framework: str) -> Model:
    """A few layers of random kinds, shapes and dtypes, named as `framework` names them."""
    torch_side = framework == "torch"
    model: Model = {}
    sizes = st.integers(1, 4)
    for index in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(KINDS))
        dtype = draw(st.sampled_from(FLOATS))
        out, inp, k = draw(sizes), draw(sizes), draw(sizes)
        unit = () if torch_side else (1,)  # MindSpore's nn.Conv1d keeps a unit third axis
        layer = f"l{index}"
        if kind in ("conv1d", "conv_transpose1d"):
            layer = f"{'up' if kind == 'conv_transpose1d' else 'conv'}{index}"
            model[f"{layer}.weight"] = (dtype, (out, inp, *unit, k))
            if draw(st.booleans()):  # (C_out, ...) for a conv; (C_in, C_out, ...) for a transposed one
                model[f"{layer}.bias"] = (dtype, (inp if kind == "conv_transpose1d" else out,))
        elif kind == "conv2d":
            model[f"{layer}.weight"] = (dtype, (out, inp, draw(sizes), k))
            model[f"{layer}.bias"] = (dtype, (out,))
        elif kind == "linear":
            model[f"fc{index}.weight"] = (dtype, (out, inp))
            model[f"fc{index}.bias"] = (dtype, (out,))
        elif kind == "batch_norm":
            names = ("weight", "bias", "running_mean", "running_var") if torch_side else \
                ("gamma", "beta", "moving_mean", "moving_variance")
            model.update({f"bn{index}.{name}": (dtype, (out,)) for name in names})
            if torch_side:
                model[f"bn{index}.num_batches_tracked"] = ("int64", ())
        elif kind == "norm":  # LayerNorm / GroupNorm, LayerNorm([1, n]) too
            shape = draw(st.sampled_from([(out,), (1, out)]))
            names = ("weight", "bias") if torch_side else ("gamma", "beta")
            model.update({f"ln{index}.{name}": (dtype, shape) for name in names})
        elif kind == "embedding":
            model[f"emb{index}.{'weight' if torch_side else 'embedding_table'}"] = (dtype, (out + 2, inp))
        elif kind == "prelu":
            model[f"act{index}.{'weight' if torch_side else 'w'}"] = (dtype, draw(st.sampled_from([(1,), (out,)])))
        elif kind == "weight_norm_conv":
            layer = f"tcn{index}"
            if torch_side and draw(st.booleans()):  # torch.nn.utils.parametrizations.weight_norm, dim 0 or 2
                g_shape = draw(st.sampled_from([(out, 1, 1), (1, 1, k)]))
                model[f"{layer}.parametrizations.weight.original0"] = (dtype, g_shape)
                model[f"{layer}.parametrizations.weight.original1"] = (dtype, (out, inp, k))
            else:  # torch.nn.utils.weight_norm, or a MindOne cell's pair with the unit axis
                model[f"{layer}.weight_g"] = (dtype, (out, 1, *unit, 1))
                model[f"{layer}.weight_v"] = (dtype, (out, inp, *unit, k))
            model[f"{layer}.bias"] = (dtype, (out,))
        elif kind == "weight_norm_linear":
            model[f"proj{index}.weight_g"] = (dtype, (out, 1))
            model[f"proj{index}.weight_v"] = (dtype, (out, inp))
            model[f"proj{index}.bias"] = (dtype, (out,))
        else:  # training state, dropped unless --keep-extras
            model[draw(st.sampled_from(["global_step", "epoch_num"]))] = ("int64", ())
            if not torch_side:
                model["learning_rate"] = ("float32", ())
    return model


def values(model: Model, seed: int) -> dict[str, tuple[str, np.ndarray]]:
    """Random normal values (float32 before their dtype's rounding); counters small integers."""
    rng = np.random.default_rng(seed)
    return {name: (dtype, rng.integers(0, 100, shape) if dtype == "int64" else rng.standard_normal(shape).astype(np.float32))
            for name, (dtype, shape) in model.items()}


def save_torch(model: Model, seed: int, path: Path) -> None:
    torch.save({name: torch.from_numpy(np.asarray(array)).to(getattr(torch, dtype))
                for name, (dtype, array) in values(model, seed).items()}, path)


def save_mindspore(ms, model: Model, seed: int, path: Path) -> None:
    ms.save_checkpoint([{"name": name, "data": ms.Tensor(np.asarray(array), dtype=getattr(ms, dtype))}
                        for name, (dtype, array) in values(model, seed).items()], str(path))


@dataclass
class Damage:
    what: str
    tensor: str  # the tensor verify must name (the new one, for an extra)
    entries: list[Entry]


def _array(entry: TensorEntry) -> np.ndarray:
    return np.array(entry.array())  # a writable copy, in the dtype's storage (bfloat16 as uint16)


def _replaced(entries: list[Entry], name: str, new: Entry | None) -> list[Entry]:
    return [new if e.name == name else e for e in entries if new is not None or e.name != name]


def _ulp(array: np.ndarray, flat_index: int) -> np.ndarray:
    """One ulp up at one element: the next representable value (its bits + 1, for a float)."""
    bits = array.reshape(-1).view(f"u{array.itemsize}" if array.dtype.kind == "f" or array.dtype == np.uint16 else array.dtype)
    bits[flat_index] += bits.dtype.type(1)  # (a Python 1 would make a uint64 a float64 under numpy 1)
    return array


def damages(plan: Plan, entries: list[Entry]) -> dict[str, list[tuple]]:
    """For each damage, the (tensor, arguments) it can be done to and still change the file.

    A computed tensor (a folded weight norm) is proven by numerics alone, so only damages far
    beyond rounding apply to it: not one ulp, and a reversal or swap that moves its values."""
    computed = {str(s.target) for s in plan.written if s.op is Op.FOLD_WEIGHT_NORM}
    kept_pairs = {str(s.target) for s in plan.written if s.op is not Op.FOLD_WEIGHT_NORM and s.sources
                  and any(n.endswith(("weight_g", "weight_v", "original0", "original1")) for n in s.sources)}
    tensors = [e for e in entries if isinstance(e, TensorEntry)]
    options: dict[str, list[tuple]] = {d: [] for d in DAMAGES}
    for entry in tensors:
        array = _array(entry)
        far = (lambda changed: not np.array_equal(changed, array)) if entry.name not in computed else \
            (lambda changed: _moves(entry, changed, array))
        if not is_training_extra(entry.name):  # (training state: a drop the verdict allows, and lists)
            options["drop"].append((entry.name,))
        options["rename"].append((entry.name,))
        options["dtype"].append((entry.name,))
        if entry.numel and entry.name not in computed:
            options["ulp"].append((entry.name, entry.numel - 1))
            if entry.name in kept_pairs:
                options["weight_norm_half"].append((entry.name, 0))
        for i in range(array.ndim):
            for j in range(i + 1, array.ndim):
                swapped = np.swapaxes(array, i, j)
                if swapped.shape != array.shape or far(swapped):
                    options["swap_axes"].append((entry.name, i, j))
        if array.ndim >= 3 and far(array[..., ::-1]):
            options["reverse_kernel"].append((entry.name,))
    options["extra"].append(("extra_tensor",))
    return {d: o for d, o in options.items() if o}


def _moves(entry: TensorEntry, changed: np.ndarray, array: np.ndarray) -> bool:
    """A change of a computed tensor's values well beyond its dtype's rounding."""
    if changed.shape != array.shape:
        return True
    before, after = entry.dtype.to_float32(array), entry.dtype.to_float32(np.ascontiguousarray(changed))
    return float(np.max(np.abs(after - before))) >= 0.25 * float(np.max(np.abs(before)))


def damage(what: str, args: tuple, entries: list[Entry]) -> Damage:
    by_name = {e.name: e for e in entries}
    name = args[0]
    entry = by_name.get(name)
    if what == "drop":
        return Damage(what, name, _replaced(entries, name, None))
    if what == "rename":  # named by its new name (training state: the drop the verdict allows) or its old one
        new_name = name + "_renamed"
        return Damage(what, new_name if is_training_extra(name) else name,
                      [e.renamed(new_name) if e.name == name else e for e in entries])  # type: ignore[union-attr]
    if what == "extra":
        return Damage(what, name, [*entries, TensorEntry.from_array(name, np.arange(3, dtype=np.float32))])
    assert isinstance(entry, TensorEntry)
    array = _array(entry)
    if what == "dtype":
        other = DTYPES[OTHER_DTYPE[entry.dtype.name]]
        changed = other.from_float32(entry.dtype.to_float32(array)) if entry.dtype.is_floating else array.astype(other.numpy)
        return Damage(what, name, _replaced(entries, name, TensorEntry.from_array(name, changed, other)))
    if what in ("ulp", "weight_norm_half"):
        changed = _ulp(array, args[1])
    elif what == "swap_axes":
        changed = np.ascontiguousarray(np.swapaxes(array, args[1], args[2]))
    else:  # reverse_kernel
        changed = np.ascontiguousarray(array[..., ::-1])
    return Damage(what, name, _replaced(entries, name, TensorEntry.from_array(name, changed, entry.dtype)))


def expected_layer(name: str) -> str:
    """The layer verify names for a converted tensor: its prefix (a parametrization's module)."""
    return name.split(".parametrizations.")[0] if ".parametrizations." in name else split_name(name)[0] or "(root)"


def convert_damage_verify(data: st.DataObject, source: Path, direction: Direction) -> None:
    folder = source.parent
    target_format = data.draw(st.sampled_from(["ckpt", "safetensors"] if direction is Direction.TORCH_TO_MS
                                              else ["pt", "safetensors"]), label="format")
    converted = folder / f"converted.{target_format}"
    result = run_migration(MigrationRequest(
        input=source, output=converted, direction=direction, fsync=False,
        fold_weight_norm=data.draw(st.booleans(), label="fold weight norm"),
        keep_extras=data.draw(st.booleans(), label="keep extras")))
    assert result.written, (result.plan.failures(), result.verification)

    damaged = folder / f"damaged.{target_format}"
    with open_checkpoint(converted) as checkpoint:
        options = damages(result.plan, checkpoint.entries)
        what = data.draw(st.sampled_from(["none", *options]), label="damage")
        event(f"damage: {what}")
        if what == "none":
            damaged = converted
        else:
            done = damage(what, data.draw(st.sampled_from(options[what]), label="tensor"), checkpoint.entries)
            write_checkpoint(damaged, done.entries, checkpoint.format, durable=False)

    verdict = run_cli("verify", source, damaged)
    if what == "none":
        assert verdict.exit_code == 0, verdict.stdout + verdict.stderr
        return
    shown = f"{what} {done.tensor}:\n{verdict.stdout}{verdict.stderr}"
    assert verdict.exit_code == 1, shown
    error = verdict.stderr.strip().splitlines()[-1]
    assert f"{done.tensor} (layer {expected_layer(done.tensor)})" in error, shown


SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize="MUTATION_EXAMPLES" not in os.environ, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(model=models("torch"), seed=st.integers(0, 2**16), data=st.data())
def test_one_damage_to_a_torch2ms_conversion_always_fails_verify(tmp_path_factory, model, seed, data) -> None:
    folder = tmp_path_factory.getbasetemp() / uuid.uuid4().hex
    folder.mkdir()
    save_torch(model, seed, folder / "model.pt")
    convert_damage_verify(data, folder / "model.pt", Direction.TORCH_TO_MS)


@SETTINGS
@given(model=models("mindspore"), seed=st.integers(0, 2**16), data=st.data())
def test_one_damage_to_a_ms2torch_conversion_always_fails_verify(ms, tmp_path_factory, model, seed, data) -> None:
    folder = tmp_path_factory.getbasetemp() / uuid.uuid4().hex
    folder.mkdir()
    save_mindspore(ms, model, seed, folder / "model.ckpt")
    convert_damage_verify(data, folder / "model.ckpt", Direction.MS_TO_TORCH)
