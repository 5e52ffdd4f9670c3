"""Proof that a converted checkpoint computes what the original did.

Every Conv1d / ConvTranspose1d weight of the original is paired with its converted counterpart
by the migration plan. Deterministic random inputs run through the original under its own
framework's semantics and through the converted weight under the other framework's semantics,
both with the bundled NumPy convolution (never torch's or MindSpore's kernels). Every other
tensor must be bit-identical (a created one must be zero).

Without layer hyperparameters the convs run as plain stride-1, unpadded convs (PyTorch
`padding=0` is MindSpore `pad_mode="valid"`): that checks every weight value lands where the
other framework reads it. With a layers JSON each conv runs with its real stride, padding,
dilation and groups, and the target side with the translated constructor, pre-pad and crop.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convmigrate import numerics
from convmigrate.entries import Checkpoint, Entry, TensorEntry, ValueEntry
from convmigrate.plan import Direction, Op, Plan, Step
from convmigrate.rules.names import split_name
from convmigrate.vocab import Framework

# (rtol, atol) by weight dtype, relative to the largest output magnitude. Both sides compute
# in float32 from the same values, so a correct conversion is off by rounding only; a wrong one
# (reversed kernel, misplaced axis) is off by the outputs' own size.
DEFAULT_TOLERANCE: dict[str, tuple[float, float]] = {
    "float64": (1e-9, 1e-12),
    "float32": (1e-5, 1e-6),
    "float16": (2e-3, 1e-4),  # a folded weight norm is rounded to float16
    "bfloat16": (1.6e-2, 1e-3),  # ... or to bfloat16
}
BATCH = 1  # one random input row per length: a misplaced weight changes every output row alike


@dataclass(frozen=True)
class ConvSetup:
    """One conv's hyperparameters in both frameworks (what `convmigrate layers` writes).

    `pre_pad` / `post_crop` apply on the target side, around the target framework's layer.
    """

    kind: str = "Conv1d"  # or "ConvTranspose1d"
    torch: Mapping[str, Any] = field(default_factory=dict)
    mindspore: Mapping[str, Any] = field(default_factory=lambda: {"pad_mode": "valid"})
    pre_pad: Any = None  # layers.spec.PrePad
    post_crop: Any = None  # layers.spec.PostCrop
    length_multiple: int | None = None
    described: bool = False  # True when the hyperparameters came from a layers JSON


PLAIN = ConvSetup()
PLAIN_TRANSPOSED = ConvSetup(kind="ConvTranspose1d")


def _plain_setup(weight_shape: tuple[int, ...], bias_shape: tuple[int, ...] | None) -> ConvSetup:
    """Without a layers JSON: a bias sized like axis 1, not axis 0, marks a transposed conv
    ((C_in, C_out/groups, K)); otherwise a plain conv reads the same weights equally well."""
    if bias_shape is not None and bias_shape[0] != weight_shape[0] and bias_shape[0] == weight_shape[1]:
        return PLAIN_TRANSPOSED
    return PLAIN


@dataclass
class LayerCheck:
    name: str
    kind: str
    weight: str  # the original's weight name (or its g/v names joined)
    target: str
    max_abs: float
    max_rel: float
    passed: bool
    detail: str = ""


@dataclass
class TensorCheck:
    source: str
    target: str
    passed: bool
    detail: str = ""


@dataclass
class Verification:
    layers: list[LayerCheck] = field(default_factory=list)
    tensors: list[TensorCheck] = field(default_factory=list)
    seed: int = 0

    def failures(self) -> list[str]:
        failed = [c.name for c in self.layers if not c.passed]
        return failed + [c.target for c in self.tensors if not c.passed]

    @property
    def passed(self) -> bool:
        return not self.failures()

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "seed": self.seed,
            "layers": [vars(c) for c in self.layers],
            "tensors": {
                "compared": len(self.tensors),
                "identical": sum(c.passed for c in self.tensors),
                "failed": [vars(c) for c in self.tensors if not c.passed],
            },
        }


# -- running a conv under one framework's semantics ---------------------------------------------
_FUNCTIONS: dict[tuple[str, str], Callable[..., np.ndarray]] = {
    ("torch", "Conv1d"): numerics.torch_conv1d,
    ("torch", "ConvTranspose1d"): numerics.torch_conv_transpose1d,
    ("mindspore", "Conv1d"): numerics.ms_conv1d,
    ("mindspore", "ConvTranspose1d"): numerics.ms_conv1d_transpose,
}


def _semantics(framework: Framework, weight: np.ndarray) -> str:
    """Which function reads `weight`: a 3-D weight is PyTorch's layout (mindspore.mint too)."""
    return "torch" if framework is Framework.TORCH or weight.ndim == 3 else "mindspore"


@functools.cache
def _parameters(function: Callable[..., np.ndarray]) -> frozenset[str]:
    """The keyword names `function` takes (inspect.signature costs ~75 us: once per function)."""
    return frozenset(inspect.signature(function).parameters)


def _run(semantics: str, setup: ConvSetup, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    function = _FUNCTIONS[(semantics, setup.kind)]
    kwargs = setup.torch if semantics == "torch" else setup.mindspore
    accepted = _parameters(function)
    return function(x, weight, bias, **{k: v for k, v in kwargs.items() if k in accepted and k not in ("weight", "bias")})


def _groups(setup: ConvSetup) -> int:
    return int(setup.torch.get("groups", setup.mindspore.get("group", 1)))


def _input_lengths(setup: ConvSetup, kernel: int) -> list[int]:
    """Lengths long enough for the kernel and any padding: two (odd and even) for a described
    layer, whose padding may depend on the length; one for a plain stride-1 unpadded conv, where
    every output reads every weight the same way at any length."""
    dilation = int(setup.torch.get("dilation", 1))
    stride = int(setup.torch.get("stride", 1))
    span = (kernel - 1) * dilation + 1
    pad = setup.pre_pad.left + setup.pre_pad.right if setup.pre_pad is not None else 0
    first = max(span + 3, pad + 2, 8)
    lengths = [first, first + stride + 2] if setup.described else [first]
    if setup.length_multiple:
        m = setup.length_multiple
        lengths = [m * -(-n // m) for n in lengths]
    return lengths


def _target_output(setup: ConvSetup, semantics: str, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    if not setup.described:
        return _run(semantics, setup, x, weight, bias)
    from convmigrate.layers.verify import apply_post_crop, apply_pre_pad

    return apply_post_crop(_run(semantics, setup, apply_pre_pad(x, setup.pre_pad), weight, bias), setup.post_crop, bias)


def _float(entry: TensorEntry) -> np.ndarray:
    array = entry.array()
    if array.dtype == np.float32:
        return array  # already float32: a read-only view of the file, no copy
    return np.asarray(entry.dtype.to_float32(array), dtype=np.float32)


def check_conv(
    name: str,
    setup: ConvSetup,
    source_framework: Framework,
    original_weight: np.ndarray,
    converted_weight: np.ndarray,
    original_bias: np.ndarray | None,
    converted_bias: np.ndarray | None,
    tolerance: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[float, float, bool, str]:
    """Run both sides; (max abs error, max relative error, passed, detail)."""
    target_framework = Framework.MINDSPORE if source_framework is Framework.TORCH else Framework.TORCH
    source_sem = _semantics(source_framework, original_weight)
    target_sem = _semantics(target_framework, converted_weight)
    kernel = original_weight.shape[-1]
    groups = _groups(setup)
    in_channels = original_weight.shape[0] if setup.kind == "ConvTranspose1d" else original_weight.shape[1] * groups
    worst_abs = worst_rel = 0.0
    rtol, atol = tolerance
    for length in _input_lengths(setup, kernel):
        x = rng.standard_normal((BATCH, in_channels, length)).astype(np.float32)
        try:
            expected = np.asarray(_run(source_sem, setup, x, original_weight, original_bias), dtype=np.float64)
            got = np.asarray(_target_output(setup, target_sem, x, converted_weight, converted_bias), dtype=np.float64)
        except ValueError as exc:
            return float("inf"), float("inf"), False, f"the converted layer cannot run: {exc}"
        if got.shape != expected.shape:
            return float("inf"), float("inf"), False, f"output shape {got.shape} != original {expected.shape} (length {length})"
        error = float(np.max(np.abs(got - expected), initial=0.0))
        scale = float(np.max(np.abs(expected), initial=0.0))
        worst_abs = max(worst_abs, error)
        worst_rel = max(worst_rel, error / scale if scale else (0.0 if error == 0 else float("inf")))
        if not np.isfinite(error) or error > atol + rtol * scale:
            return worst_abs, worst_rel, False, f"outputs differ by {error:.3g} (scale {scale:.3g}) at length {length}"
    return worst_abs, worst_rel, True, ""


# -- pairing tensors by the plan ----------------------------------------------------------------
def _same_bytes(a: TensorEntry, b: TensorEntry) -> bool:
    """Byte-for-byte equality, walking both chunk streams without copying either."""
    if a.nbytes != b.nbytes or a.dtype != b.dtype:
        return False
    chunks_b = b.chunks()
    piece_b = memoryview(b"")
    for piece_a in a.chunks():
        while len(piece_a):
            if not len(piece_b):
                piece_b = next(chunks_b, None)
                if piece_b is None:
                    return False
                continue
            n = min(len(piece_a), len(piece_b))
            if not np.array_equal(np.frombuffer(piece_a[:n], np.uint8), np.frombuffer(piece_b[:n], np.uint8)):
                return False
            piece_a, piece_b = piece_a[n:], piece_b[n:]
    return not len(piece_b) and next(chunks_b, None) is None


def _check_tensor(step: Step, original: Mapping[str, Entry], converted: Mapping[str, Entry]) -> TensorCheck:
    target = str(step.target)
    got = converted.get(target)
    if got is None:
        return TensorCheck(", ".join(step.sources), target, False, "missing from the converted checkpoint")
    if step.op is Op.CREATE:
        ok = isinstance(got, TensorEntry) and not np.any(got.array())
        return TensorCheck("", target, ok, "" if ok else "a created parameter must be zero")
    source = original[step.sources[0]]
    if isinstance(source, ValueEntry) or isinstance(got, ValueEntry):
        ok = isinstance(source, ValueEntry) and isinstance(got, ValueEntry) and source.value == got.value
        return TensorCheck(source.name, target, ok, "" if ok else "value differs")
    if list(got.shape) != list(step.target_shape or source.shape):
        return TensorCheck(source.name, target, False, f"shape {got.shape}, planned {tuple(step.target_shape or ())}")
    ok = _same_bytes(source, got)
    return TensorCheck(source.name, target, ok, "" if ok else f"bytes differ ({source.dtype.name} -> {got.dtype.name})")


def _is_conv_weight(step: Step) -> bool:
    return step.layer_kind == "Conv1d" and split_name(str(step.target))[1] == "weight" and step.op is not Op.DROP


def verify_migration(
    plan: Plan,
    original: Checkpoint,
    converted: Checkpoint,
    *,
    layers: Mapping[str, ConvSetup] | None = None,
    tolerance: tuple[float | None, float | None] = (None, None),
    seed: int = 0,
) -> Verification:
    """Check every written step of `plan`: convs numerically, everything else bit for bit.

    `layers` maps a layer name (the weight's prefix) to its hyperparameters; `tolerance` is
    (rtol, atol), None for the dtype's default.
    """
    source_framework = plan.direction.source
    by_original = {e.name: e for e in original.entries}
    by_converted = {e.name: e for e in converted.entries}
    targets = {str(s.target): s for s in plan.written}
    result = Verification(seed=seed)
    rng = np.random.default_rng(seed)  # one stream for all layers, in plan order: deterministic
    for step in plan.written:
        if not _is_conv_weight(step):
            if step.op is not Op.FOLD_WEIGHT_NORM:
                result.tensors.append(_check_tensor(step, by_original, by_converted))
            continue
        layer = split_name(str(step.target))[0]
        got = by_converted.get(str(step.target))
        original_weight = _original_weight(step, by_original)
        bias_step = targets.get(f"{layer}.bias" if layer else "bias")
        original_bias = converted_bias = None
        if bias_step is not None and bias_step.sources and bias_step.target in by_converted:
            original_bias = _float(by_original[bias_step.sources[0]])  # type: ignore[arg-type]
            converted_bias = _float(by_converted[str(bias_step.target)])  # type: ignore[arg-type]
        setup = (layers or {}).get(layer) or _plain_setup(
            original_weight.shape, original_bias.shape if original_bias is not None else None
        )
        check = LayerCheck(layer or "(root)", setup.kind, ", ".join(step.sources), str(step.target), 0.0, 0.0, False)
        result.layers.append(check)
        if not isinstance(got, TensorEntry):
            check.detail = "missing from the converted checkpoint"
            continue
        dtype = got.dtype.name
        default_rtol, default_atol = DEFAULT_TOLERANCE.get(dtype, DEFAULT_TOLERANCE["float32"])
        rtol = tolerance[0] if tolerance[0] is not None else default_rtol
        atol = tolerance[1] if tolerance[1] is not None else default_atol
        check.max_abs, check.max_rel, check.passed, check.detail = check_conv(
            check.name, setup, source_framework, original_weight, _float(got), original_bias, converted_bias,
            (rtol, atol), rng,
        )
        # The weights were read through memory maps: give those pages back before the next layer.
        for entry in (got, *(by_original.get(name) for name in step.sources)):
            if isinstance(entry, TensorEntry):
                entry.release_pages()
    return result


def _original_weight(step: Step, by_original: Mapping[str, Entry]) -> np.ndarray:
    """The weight the original layer computes with: a weight-normalised one is g * v / ||v||."""
    if step.op is Op.FOLD_WEIGHT_NORM:
        g, v = (_float(by_original[n]) for n in step.sources)  # type: ignore[arg-type]
        # Independent of the planner's fold: the norm runs over every axis where g has size 1,
        # which is what torch's norm_except_dim means.
        axes = tuple(a for a in range(v.ndim) if g.ndim != v.ndim or g.shape[a] == 1)
        norm = np.sqrt(np.sum(v.astype(np.float64) ** 2, axis=axes, keepdims=True))
        return (g.astype(np.float64) * v / norm).astype(np.float32)
    source = by_original[step.sources[0]]
    assert isinstance(source, TensorEntry)
    return _float(source)


def setups_from_layers(path: Any, direction: Direction) -> dict[str, ConvSetup]:
    """Each conv of a layers JSON, translated for `direction`, keyed by its layer name."""
    from convmigrate.layers import translate_source

    target = Framework.MINDSPORE if direction is Direction.TORCH_TO_MS else Framework.TORCH
    return {spec.name: setup_from_spec(spec) for spec in translate_source(str(path), to=target) if spec.kind.is_conv}


def setup_from_spec(spec: Any) -> ConvSetup:
    """A translated conv (layers.LayerSpec) as verification runs it."""
    return ConvSetup(spec.kind.value, spec.torch, spec.mindspore, spec.pre_pad, spec.post_crop,
                     spec.length_multiple, described=True)


def direction_between(original: Checkpoint, converted: Checkpoint) -> Direction:
    """torch2ms when the original is a PyTorch file, ms2torch when it is MindSpore's."""
    from convmigrate.vocab import Format

    mindspore_formats = (Format.CKPT, Format.MS_SAFETENSORS)
    if original.format in mindspore_formats:
        return Direction.MS_TO_TORCH
    if converted.format in mindspore_formats or original.format is Format.TORCH:
        return Direction.TORCH_TO_MS
    return Direction.MS_TO_TORCH if converted.format is Format.TORCH else Direction.TORCH_TO_MS
