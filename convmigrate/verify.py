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
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
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
# Checks run on this many threads, results kept in plan order: NumPy's matmul and comparisons
# release the GIL, so a second core verifies while the first walks the plan.
VERIFY_THREADS = 2
THREAD_MIN_BYTES = 1024 * 1024  # tensors from this size are checked on the threads
SMALL_CONV_STACK = 64  # smaller plain convs of one shape are checked this many at a time


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


Outcome = tuple[float, float, bool, str]  # max abs error, max relative error, passed, detail


def original_side(
    setup: ConvSetup,
    source_framework: Framework,
    original_weight: np.ndarray,
    original_bias: np.ndarray | None,
    rng: np.random.Generator,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The random inputs and the original layer's outputs for them (float64)."""
    source_sem = _semantics(source_framework, original_weight)
    groups = _groups(setup)
    in_channels = original_weight.shape[0] if setup.kind == "ConvTranspose1d" else original_weight.shape[1] * groups
    pairs = []
    for length in _input_lengths(setup, original_weight.shape[-1]):
        x = rng.standard_normal((BATCH, in_channels, length)).astype(np.float32)
        pairs.append((x, np.asarray(_run(source_sem, setup, x, original_weight, original_bias), dtype=np.float64)))
    return pairs


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
    blocks: int = 1,
    prepared: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[Outcome]:
    """Run both sides; one outcome per block of output channels.

    `blocks` > 1 checks that many independent layers at once: their weights stacked along
    the output axis and run as one conv with `groups=blocks` (see `_Verifier.small_convs`).
    `prepared` holds (input, original output) pairs from `original_side` (then
    `original_weight` and `original_bias` are not read again).
    """
    target_framework = Framework.MINDSPORE if source_framework is Framework.TORCH else Framework.TORCH
    target_sem = _semantics(target_framework, converted_weight)
    if prepared is None:
        try:
            prepared = original_side(setup, source_framework, original_weight, original_bias, rng)
        except ValueError as exc:
            return [(float("inf"), float("inf"), False, f"the original layer cannot run: {exc}")] * blocks
    worst_abs, worst_rel = np.zeros(blocks), np.zeros(blocks)
    details = [""] * blocks
    rtol, atol = tolerance
    for x, expected in prepared:
        length = x.shape[-1]
        try:
            got = np.asarray(_target_output(setup, target_sem, x, converted_weight, converted_bias), dtype=np.float64)
        except ValueError as exc:
            return [(float("inf"), float("inf"), False, f"the converted layer cannot run: {exc}")] * blocks
        if got.shape != expected.shape:
            return [(float("inf"), float("inf"), False, f"output shape {got.shape} != original {expected.shape} (length {length})")] * blocks
        by_block = (blocks, -1)  # (N, blocks*C_out, L) -> each block's outputs in one row
        error = np.abs(got - expected).transpose(1, 0, 2).reshape(by_block).max(axis=1, initial=0.0)
        scale = np.abs(expected).transpose(1, 0, 2).reshape(by_block).max(axis=1, initial=0.0)
        worst_abs = np.maximum(worst_abs, error)
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(scale > 0, error / np.where(scale > 0, scale, 1), np.where(error == 0, 0.0, np.inf))
        worst_rel = np.maximum(worst_rel, relative)
        for block in np.flatnonzero(~np.isfinite(error) | (error > atol + rtol * scale)):
            if not details[block]:
                details[block] = f"outputs differ by {error[block]:.3g} (scale {scale[block]:.3g}) at length {length}"
    return [(float(worst_abs[i]), float(worst_rel[i]), not details[i], details[i]) for i in range(blocks)]


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
    return _Verifier(plan, original, layers or {}, tolerance, seed).run(converted)


class BackgroundVerification:
    """verify_migration in two halves, for a migration that is still writing its output.

    `start` runs the original's side of the big convs (random inputs and the original
    layers' outputs: half the arithmetic, and every read of the original's conv weights) on a
    thread while the output is written; `finish(converted)` checks the complete output
    against those results and does everything else. The outcome is verify_migration's.
    """

    def __init__(
        self,
        plan: Plan,
        original: Checkpoint,
        *,
        layers: Mapping[str, ConvSetup] | None = None,
        tolerance: tuple[float | None, float | None] = (None, None),
        seed: int = 0,
    ) -> None:
        self.verifier = _Verifier(plan, original, layers or {}, tolerance, seed)
        self.stopping = threading.Event()
        self.thread = threading.Thread(
            target=self.verifier.prepare, args=(self.stopping,), name="convmigrate-verify-original", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Abandon the background half (after the layer under way): the write failed."""
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join()

    def finish(self, converted: Checkpoint) -> Verification:
        if self.thread.is_alive():
            self.thread.join()  # the same work run() would otherwise do, already under way
        return self.verifier.run(converted)


@dataclass
class _ConvPair:
    """One conv layer's weights and biases on both sides, read and ready to run."""

    check: LayerCheck
    setup: ConvSetup
    weights: tuple[np.ndarray, np.ndarray]  # original, converted
    biases: tuple[np.ndarray | None, np.ndarray | None]
    tolerance: tuple[float, float]
    entries: tuple[Entry | None, ...]  # whose mapped pages to give back afterwards

    def release(self) -> None:
        for entry in self.entries:
            if isinstance(entry, TensorEntry):
                entry.release_pages()


class _Verifier:
    """Runs verify_migration's checks: big tensors on threads, small convs in stacks."""

    def __init__(
        self,
        plan: Plan,
        original: Checkpoint,
        layers: Mapping[str, ConvSetup],
        tolerance: tuple[float | None, float | None],
        seed: int,
    ) -> None:
        self.plan, self.layers, self.tolerance, self.seed = plan, layers, tolerance, seed
        self.source_framework = plan.direction.source
        self.by_original = {e.name: e for e in original.entries}
        self.by_converted: dict[str, Entry] = {}
        self.targets = {str(s.target): s for s in plan.written}
        # step index -> (bias present, its (input, original output) pairs), from prepare()
        self.prepared: dict[int, tuple[bool, list[tuple[np.ndarray, np.ndarray]]]] = {}

    def prepare(self, stopping: threading.Event) -> None:
        """The original's side of every big conv, in plan order, until `stopping` is set."""
        for index, step in enumerate(self.plan.written):
            if stopping.is_set():
                return
            if not _is_conv_weight(step) or self.source_bytes(step) < THREAD_MIN_BYTES:
                continue
            bias_step = self.targets.get(_bias_name(step))
            bias = None
            if bias_step is not None and bias_step.sources:
                bias = _float(self.by_original[bias_step.sources[0]])  # type: ignore[arg-type]
            weight = _original_weight(step, self.by_original)
            setup = self.layers.get(_layer_of(step)) or _plain_setup(weight.shape, bias.shape if bias is not None else None)
            try:
                pairs = original_side(setup, self.source_framework, weight, bias, self.rng(index))
            except ValueError:
                continue  # run() reports it, layer by layer
            finally:
                for name in step.sources:
                    entry = self.by_original.get(name)
                    if isinstance(entry, TensorEntry):
                        entry.release_pages()
            self.prepared[index] = (bias is not None, pairs)

    def run(self, converted: Checkpoint) -> Verification:
        self.by_converted = {e.name: e for e in converted.entries}
        # Big tensors go to the threads: their checks are NumPy work that releases the GIL.
        # Small ones are Python work that two threads would only fight over: this thread does
        # them meanwhile, small plain convs SMALL_CONV_STACK at a time. Results keep plan order.
        outcomes: dict[int, Future | TensorCheck | LayerCheck | None] = {}
        stacks: defaultdict[tuple, list[tuple[int, Step]]] = defaultdict(list)
        with ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="convmigrate-verify") as pool:
            for index, step in enumerate(self.plan.written):
                key = self.stack_key(step)
                if key is not None:
                    stacks[key].append((index, step))
                    if len(stacks[key]) == SMALL_CONV_STACK:
                        outcomes.update(self.small_convs(stacks.pop(key)))
                elif self.source_bytes(step) >= THREAD_MIN_BYTES:
                    outcomes[index] = pool.submit(self.check, index, step)
                else:
                    outcomes[index] = self.check(index, step)
            for stack in stacks.values():
                outcomes.update(self.small_convs(stack))
        result = Verification(seed=self.seed)
        for index in sorted(outcomes):
            outcome = outcomes[index]
            outcome = outcome.result() if isinstance(outcome, Future) else outcome
            if isinstance(outcome, LayerCheck):
                result.layers.append(outcome)
            elif outcome is not None:
                result.tensors.append(outcome)
        return result

    def source_bytes(self, step: Step) -> int:
        return sum(getattr(self.by_original.get(name), "nbytes", 0) for name in step.sources)

    def rng(self, index: int) -> np.random.Generator:
        """Each check draws from its own stream: the same inputs whatever thread runs it."""
        return np.random.default_rng([self.seed, index])

    def check(self, index: int, step: Step) -> TensorCheck | LayerCheck | None:
        if not _is_conv_weight(step):
            if step.op is Op.FOLD_WEIGHT_NORM:
                return None
            return _check_tensor(step, self.by_original, self.by_converted)
        pair = self.conv_pair(step)
        if isinstance(pair, LayerCheck):
            return pair
        with_bias, prepared = self.prepared.get(index, (None, None))
        if with_bias is not (pair.biases[0] is not None):
            prepared = None  # prepared for another bias than the converted file has: redo
        outcome = check_conv(pair.check.name, pair.setup, self.source_framework, *pair.weights, *pair.biases,
                             pair.tolerance, self.rng(index), prepared=prepared)
        pair.check.max_abs, pair.check.max_rel, pair.check.passed, pair.check.detail = outcome[0]
        pair.release()
        return pair.check

    def bias_step(self, step: Step) -> Step | None:
        bias = self.targets.get(_bias_name(step))
        return bias if bias is not None and bias.sources and str(bias.target) in self.by_converted else None

    def conv_pair(self, step: Step) -> _ConvPair | LayerCheck:
        """The layer's arrays, or its failed check when the converted weight is missing."""
        layer = split_name(str(step.target))[0]
        got = self.by_converted.get(str(step.target))
        original_weight = _original_weight(step, self.by_original)
        bias_step = self.bias_step(step)
        biases: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
        if bias_step is not None:
            biases = (_float(self.by_original[bias_step.sources[0]]),  # type: ignore[arg-type]
                      _float(self.by_converted[str(bias_step.target)]))  # type: ignore[arg-type]
        setup = self.layers.get(layer) or _plain_setup(
            original_weight.shape, biases[0].shape if biases[0] is not None else None
        )
        check = LayerCheck(layer or "(root)", setup.kind, ", ".join(step.sources), str(step.target), 0.0, 0.0, False)
        if not isinstance(got, TensorEntry):
            check.detail = "missing from the converted checkpoint"
            return check
        default_rtol, default_atol = DEFAULT_TOLERANCE.get(got.dtype.name, DEFAULT_TOLERANCE["float32"])
        tolerance = (
            self.tolerance[0] if self.tolerance[0] is not None else default_rtol,
            self.tolerance[1] if self.tolerance[1] is not None else default_atol,
        )
        # The weights are read through memory maps: their pages are given back after the check.
        entries = (got, *(self.by_original.get(name) for name in step.sources))
        if bias_step is not None:
            entries += (self.by_original.get(bias_step.sources[0]), self.by_converted.get(str(bias_step.target)))
        return _ConvPair(check, setup, (original_weight, _float(got)), biases, tolerance, entries)

    def stack_key(self, step: Step) -> tuple | None:
        """Small plain float32 Conv1d layers with equal shapes share a key: they run stacked."""
        if not _is_conv_weight(step) or step.op is Op.FOLD_WEIGHT_NORM:
            return None
        layer = split_name(str(step.target))[0]
        source = self.by_original.get(step.sources[0])
        got = self.by_converted.get(str(step.target))
        if layer in self.layers or not isinstance(source, TensorEntry) or not isinstance(got, TensorEntry):
            return None
        if source.nbytes >= THREAD_MIN_BYTES or source.dtype.name != "float32" or got.dtype.name != "float32":
            return None
        if len(source.shape) < 3 or source.shape[1] == 1:
            # One input channel each: stacked, they would make a depthwise conv with a channel
            # multiplier of C_out, whose banded kernel costs far more than the layers one by one.
            return None
        bias_step = self.bias_step(step)
        bias_shapes = None
        if bias_step is not None:
            bias_shapes = tuple(getattr(self.by_original[n], "shape", None) for n in bias_step.sources)
            bias_shapes += (getattr(self.by_converted[str(bias_step.target)], "shape", None),)
            if _plain_setup(source.shape, bias_shapes[0]) is not PLAIN:
                return None
        return source.shape, got.shape, bias_shapes

    def small_convs(self, stack: list[tuple[int, Step]]) -> dict[int, LayerCheck]:
        """Layers of one stack_key checked as one grouped conv: their weights stacked along the
        output channels and run with groups=len(stack), each layer judged on its own outputs.
        The same arithmetic, once instead of per layer (5 000 3-tap convs: ~0.1 ms each)."""
        pairs = [self.conv_pair(step) for _, step in stack]
        if len(stack) == 1 or not all(isinstance(p, _ConvPair) for p in pairs):
            return {index: self.check(index, step) for index, step in stack}  # type: ignore[misc]
        count = len(pairs)
        setup = ConvSetup(torch={"groups": count}, mindspore={"pad_mode": "valid", "group": count})
        weights = [np.concatenate([p.weights[side] for p in pairs]) for side in (0, 1)]  # type: ignore[union-attr]
        biases = [
            np.concatenate([p.biases[side] for p in pairs]) if pairs[0].biases[side] is not None else None  # type: ignore[union-attr,misc]
            for side in (0, 1)
        ]
        tolerance = pairs[0].tolerance  # type: ignore[union-attr]
        outcomes = check_conv("stack", setup, self.source_framework, *weights, *biases, tolerance,
                              self.rng(stack[0][0]), blocks=count)
        if not all(passed for _, _, passed, _ in outcomes):
            # A failure is reported exactly as a lone check of that layer would report it.
            return {index: self.check(index, step) for index, step in stack}  # type: ignore[misc]
        checks = {}
        for (index, _), pair, outcome in zip(stack, pairs, outcomes):
            pair.check.max_abs, pair.check.max_rel, pair.check.passed, pair.check.detail = outcome  # type: ignore[union-attr]
            pair.release()  # type: ignore[union-attr]
            checks[index] = pair.check  # type: ignore[union-attr]
        return checks


def _layer_of(step: Step) -> str:
    return split_name(str(step.target))[0]


def _bias_name(step: Step) -> str:
    layer = _layer_of(step)
    return f"{layer}.bias" if layer else "bias"


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
