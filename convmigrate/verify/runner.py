"""Every check of a migration plan, scheduled: big tensors on threads, and for a migration,
what needs no output (each layer configuration's numerics) while the output is being written.

A moved conv weight (a reshape moves its bytes unchanged) is proven in two parts: its bytes
equal the original's, compared bit for bit; and its configuration (hyperparameters, the
original's and the converted weight's shapes, the biases' shapes) computes under the target
framework's semantics what the original computes under its own, run once on random weights
and inputs. Together they prove what running each layer's own weights would, and more: a
constant or zero-initialised weight would not show a misplaced axis, random ones do. A weight
whose bytes differ runs its own numerics, to say how far its outputs are off. A computed
weight (a folded weight norm) always runs its own."""

from __future__ import annotations

import math
import threading
import zlib
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from convmigrate.entries import Checkpoint, Entry, TensorEntry
from convmigrate.plan import Direction, Op, Plan, Step
from convmigrate.rules.names import split_name
from convmigrate.verify.blocks import EntryWeight, FoldedWeight, RandomValues, RandomWeight, scan
from convmigrate.verify.conv import (
    DEFAULT_TOLERANCE,
    ConvSetup,
    Outcome,
    Weight,
    as_float32,
    check_conv,
    original_side,
    plain_setup,
)
from convmigrate.verify.results import RANDOM_WEIGHTS, ROOT_LAYER, Dropped, LayerCheck, TensorCheck, Verification
from convmigrate.verify.tensors import check_folded, check_tensor, same_array_bytes, same_bytes
from convmigrate.verify.written import WrittenBytes
from convmigrate.vocab import Format, Framework, LayerKind, ParamFamily, ProblemCode

# Checks run on this many threads, results kept in plan order: NumPy's matmul and comparisons
# release the GIL, so a second core verifies while the first walks the plan.
VERIFY_THREADS = 2
THREAD_MIN_BYTES = 1024 * 1024  # tensors from this size are checked on the threads

# What one configuration's numerics depend on: its ConvSetup (repr), the original's and the
# converted weight's shapes, and the biases' shapes (None: no bias).
Configuration = tuple[str, tuple[int, ...], tuple[int, ...], "tuple[int, ...] | None", "tuple[int, ...] | None"]


def _is_conv_weight(step: Step) -> bool:
    return step.layer_kind is ParamFamily.CONV1D and split_name(str(step.target))[1] == "weight" and step.op is not Op.DROP


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

    `start` runs, on a thread while the output is written, what needs no output: every layer
    configuration's numerics (random weights, from the plan's shapes) and the original's side
    of big computed weights (folded weight norms); and on another, the comparison of each moved
    tensor's bytes with the original's as soon as the writer has copied them (`observe`, given
    to formats/bytecopy.observed_copies: verify/written.py). `finish(converted)` checks the
    complete output against those results and does everything else. The outcome is
    verify_migration's.
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
        self.verifier.written = self.written = WrittenBytes(_moved_originals(plan, self.verifier.by_original))
        self.observe = self.written.observe
        self.stopping = threading.Event()
        self.failure: BaseException | None = None  # raised by finish(), in the caller's thread
        self.thread = threading.Thread(target=self._prepare, name="convmigrate-verify-original", daemon=True)

    def _prepare(self) -> None:
        try:
            self.verifier.prepare(self.stopping)
        except BaseException as exc:  # noqa: BLE001 - kept for finish(): a thread would print a traceback
            self.failure = exc

    def start(self) -> None:
        self.thread.start()
        self.written.start()

    def stop(self) -> None:
        """Abandon the background half (after the layer under way): the write failed."""
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join()
        try:
            self.written.finish()
        except BaseException:  # noqa: BLE001 - the write's own error is the one to report
            pass

    def finish(self, converted: Checkpoint) -> Verification:
        if self.thread.is_alive():
            self.thread.join()  # the same work run() would otherwise do, already under way
        if self.failure is not None:
            raise self.failure  # e.g. the original changed while its weights were read
        self.written.finish()  # the last ranges copied, compared
        return self.verifier.run(converted)


@dataclass
class _ConvPair:
    """One conv layer's weights (read a block at a time) and biases on both sides, ready to run."""

    check: LayerCheck
    setup: ConvSetup
    weights: tuple[Weight, Weight]  # original, converted
    biases: tuple[np.ndarray | None, np.ndarray | None]
    tolerance: tuple[float, float]

    def judge(self, outcome: Outcome, bit_exact: bool | None) -> LayerCheck:
        """The numerics' outcome, then (a moved weight, which must be bit-identical) the bytes:
        one ulp in one tap fails. `bit_exact` comes from the check's own reads when it ran."""
        check = self.check
        check.max_abs, check.max_rel, check.passed, check.detail, check.code = outcome
        if all(w.moved for w in self.weights):
            check.bit_exact = bit_exact if bit_exact is not None else self.same_bytes()
            if check.passed and not check.bit_exact:
                check.passed, check.code = False, ProblemCode.BYTES
                check.detail = "its bytes differ from the original weight's (a reshape moves them unchanged)"
        return check

    def proven_by(self, proof: Outcome) -> LayerCheck:
        """A weight whose bytes are the original's, judged by its configuration's numerics."""
        check = self.check
        check.max_abs, check.max_rel, check.passed, check.code = proof.max_abs, proof.max_rel, proof.passed, proof.code
        check.detail = "" if proof.passed else f"its configuration computes other outputs (random weights): {proof.detail}"
        check.bit_exact, check.numerics = True, RANDOM_WEIGHTS
        return check

    def same_bytes(self) -> bool:
        """Both weights' stored bytes compared a block at a time."""
        original, converted = self.weights
        return all(same_array_bytes(original.raw(b), converted.raw(b))  # type: ignore[arg-type]
                   for b in scan(original.shape, max(original.itemsize, converted.itemsize)))


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
        self.proofs: dict[Configuration, Outcome] = {}  # each configuration's numerics, run once
        self.proof_lock = threading.Lock()
        self.setups: dict[str, ConvSetup] = {}  # a Configuration's setup, by its repr
        self.written: WrittenBytes | None = None  # bytes compared while a migration wrote them

    def prepare(self, stopping: threading.Event) -> None:
        """In plan order until `stopping` is set: the numerics of every configuration the plan
        writes, and the original's side of every big computed conv weight."""
        for index, step in enumerate(self.plan.written):
            if stopping.is_set():
                return
            source = self.by_original.get(step.sources[-1]) if step.sources else None
            if not _is_conv_weight(step) or not isinstance(source, TensorEntry) or source.numel == 0:
                continue  # nothing to run (conv_pair passes a zero-element layer on its shape)
            if step.op is Op.FOLD_WEIGHT_NORM and self.source_bytes(step) < THREAD_MIN_BYTES:
                continue  # small: its original side is cheaper computed with the rest
            bias_step = self.targets.get(_bias_name(step))
            bias_entry = self.by_original[bias_step.sources[0]] if bias_step is not None and bias_step.sources else None
            bias_shape = tuple(bias_entry.shape) if isinstance(bias_entry, TensorEntry) else None
            weight = _original_weight(step, self.by_original)
            setup = self.layers.get(_layer_of(step)) or plain_setup(weight.shape, bias_shape)
            if weight.moved:  # shapes alone: no byte of the original is read here
                planned_bias = bias_shape
                if bias_step is not None and bias_shape is not None and bias_step.target_shape is not None:
                    planned_bias = tuple(bias_step.target_shape)
                self.proof(self.configuration(setup, weight.shape, tuple(step.target_shape or ()), bias_shape,
                                              planned_bias))
                continue
            bias = as_float32(bias_entry) if bias_entry is not None else None  # type: ignore[arg-type]
            try:
                pairs = original_side(setup, self.source_framework, weight, bias, self.rng(index))
            except ValueError:
                continue  # run() reports it, layer by layer
            self.prepared[index] = (bias is not None, pairs)

    def run(self, converted: Checkpoint) -> Verification:
        self.by_converted = {e.name: e for e in converted.entries}
        # Big tensors go to the threads: their checks are NumPy work that releases the GIL.
        # Small ones are Python work that two threads would only fight over: this thread does
        # them meanwhile. Results keep plan order.
        outcomes: dict[int, Future | TensorCheck | LayerCheck] = {}
        with ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="convmigrate-verify") as pool:
            for index, step in enumerate(self.plan.written):
                if str(step.target) not in self.by_converted:
                    outcomes[index] = _missing(step)
                elif self.source_bytes(step) >= THREAD_MIN_BYTES:
                    outcomes[index] = pool.submit(self.check, index, step)
                else:
                    outcomes[index] = self.check(index, step)
        result = Verification(seed=self.seed)
        for index in sorted(outcomes):
            outcome = outcomes[index]
            outcome = outcome.result() if isinstance(outcome, Future) else outcome
            if isinstance(outcome, LayerCheck):
                result.layers.append(outcome)
            else:
                result.tensors.append(outcome)
        result.tensors += self.unaccounted() + self.extras()
        result.tensors = _renamed(result.tensors, self.by_original, self.by_converted)
        result.dropped = [Dropped(", ".join(s.sources), s.layer, s.layer_kind, s.reason)
                          for s in self.plan.steps if s.op is Op.DROP]
        return result

    def extras(self) -> list[TensorCheck]:
        """The converted file's tensors that no step of the plan produces: each fails."""
        return [TensorCheck("", name, False, "in the converted checkpoint, but no tensor of the original produces it",
                            layer=split_name(name)[0], code=ProblemCode.EXTRA)
                for name in self.by_converted if name not in self.targets]

    def unaccounted(self) -> list[TensorCheck]:
        """Original tensors that the plan neither carries over nor drops (a plan that lost one)."""
        planned = {name for step in self.plan.steps for name in step.sources}
        return [TensorCheck(name, "", False, "the conversion neither carries it over nor drops it",
                            layer=split_name(name)[0], code=ProblemCode.MISSING)
                for name in self.by_original if name not in planned]

    def source_bytes(self, step: Step) -> int:
        return sum(getattr(self.by_original.get(name), "nbytes", 0) for name in step.sources)

    def rng(self, index: int) -> np.random.Generator:
        """Each check draws from its own stream: the same inputs whatever thread runs it."""
        return np.random.default_rng([self.seed, index])

    def dtype_tolerance(self, dtype_name: str) -> tuple[float, float]:
        default_rtol, default_atol = DEFAULT_TOLERANCE.get(dtype_name, DEFAULT_TOLERANCE["float32"])
        return (
            self.tolerance[0] if self.tolerance[0] is not None else default_rtol,
            self.tolerance[1] if self.tolerance[1] is not None else default_atol,
        )

    def check(self, index: int, step: Step) -> TensorCheck | LayerCheck:
        if not _is_conv_weight(step):
            if step.op is Op.FOLD_WEIGHT_NORM:
                v = self.by_original[step.sources[-1]]
                return check_folded(step, self.by_original, self.by_converted,
                                    self.dtype_tolerance(v.dtype.name if isinstance(v, TensorEntry) else "float32"))
            return check_tensor(step, self.by_original, self.by_converted,
                                lambda source, got: self.same_as_original(str(step.target), source, got))
        pair = self.conv_pair(step)
        if isinstance(pair, LayerCheck):
            return pair
        if all(w.moved for w in pair.weights) and self.same_as_original(
                str(step.target), pair.weights[0].entry, pair.weights[1].entry):  # type: ignore[attr-defined]
            (original, converted), biases = pair.weights, pair.biases
            return pair.proven_by(self.proof(self.configuration(pair.setup, original.shape, converted.shape,
                                                                _shape_of(biases[0]), _shape_of(biases[1]))))
        # A computed weight, or bytes that differ: its own numerics (they say how far off it is).
        with_bias, prepared = self.prepared.get(index, (False, None))
        if with_bias != (pair.biases[0] is not None):
            prepared = None  # prepared with a bias the converted file lacks (or without one it has): redo
        result = check_conv(pair.setup, self.source_framework, *pair.weights, *pair.biases,
                            pair.tolerance, self.rng(index), prepared=prepared)
        return pair.judge(result.outcomes[0], result.bit_exact)

    def same_as_original(self, name: str, source: TensorEntry, got: TensorEntry) -> bool:
        """The converted tensor `name` holds `source`'s bytes: from the comparison made while it
        was written when that covers every byte the reader serves for it, else compared now."""
        known = self.written.proven(name, got) if self.written is not None else None
        return known if known is not None else same_bytes(source, got)

    def bias_step(self, step: Step) -> Step | None:
        bias = self.targets.get(_bias_name(step))
        return bias if bias is not None and bias.sources and str(bias.target) in self.by_converted else None

    def conv_pair(self, step: Step) -> _ConvPair | LayerCheck:
        """The layer's arrays, or its check when there is nothing to run: a converted weight of
        another dtype or shape fails before any array is built, a zero-element one passes with
        its shape and bytes alone (no numerics, whatever its claimed kernel)."""
        layer = _layer_of(step)
        got = self.by_converted.get(str(step.target))
        source = self.by_original[step.sources[-1]]  # the weight, or a folded weight's v
        moved = step.op is not Op.FOLD_WEIGHT_NORM
        kind = self.layers[layer].kind if layer in self.layers else LayerKind.CONV1D
        check = LayerCheck(layer or ROOT_LAYER, kind, ", ".join(step.sources), str(step.target), 0.0, 0.0, False)
        if not isinstance(got, TensorEntry) or not isinstance(source, TensorEntry):
            check.detail, check.code = "missing from the converted checkpoint", ProblemCode.MISSING
            return check
        if got.dtype != source.dtype:
            check.detail, check.code = f"{got.dtype.name}, the original is {source.dtype.name}", ProblemCode.DTYPE
            return check
        if list(got.shape) != list(step.target_shape or ()):
            check.detail = f"shape {got.shape}, the conversion gives {tuple(step.target_shape or ())}"
            check.code = ProblemCode.SHAPE
            return check
        if got.numel == 0:
            check.bit_exact = True if moved else None
            check.passed = True  # nothing to compute: its shape (checked) is all there is
            return check
        original_weight = EntryWeight(source) if moved else _original_weight(step, self.by_original)
        bias_step = self.bias_step(step)
        biases: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
        if bias_step is not None:
            biases = (as_float32(self.by_original[bias_step.sources[0]]),  # type: ignore[arg-type]
                      as_float32(self.by_converted[str(bias_step.target)]))  # type: ignore[arg-type]
        setup = self.layers.get(layer) or plain_setup(
            original_weight.shape, biases[0].shape if biases[0] is not None else None
        )
        check.kind = setup.kind
        return _ConvPair(check, setup, (original_weight, EntryWeight(got)), biases, self.dtype_tolerance(got.dtype.name))

    def configuration(self, setup: ConvSetup, original: tuple[int, ...], converted: tuple[int, ...],
                      original_bias: tuple[int, ...] | None, converted_bias: tuple[int, ...] | None) -> Configuration:
        with self.proof_lock:
            self.setups[repr(setup)] = setup
        return (repr(setup), tuple(original), tuple(converted), original_bias, converted_bias)

    def proof(self, configuration: Configuration) -> Outcome:
        """The configuration's numerics on random weights and inputs, run once per verification
        (prepare() runs them while the output is written; a thread that needs one waits)."""
        with self.proof_lock:
            if configuration not in self.proofs:
                self.proofs[configuration] = self._prove(configuration)
            return self.proofs[configuration]

    def _prove(self, configuration: Configuration) -> Outcome:
        setup_text, original_shape, converted_shape, original_bias, converted_bias = configuration
        setup = self.setups[setup_text]
        # Seeded by the configuration itself: the same proof whatever the plan's order.
        seed = (self.seed, zlib.crc32(repr(configuration).encode()))
        shared = RandomValues(seed)  # one sequence, read in each weight's shape
        weights = (RandomWeight(original_shape, shared), RandomWeight(converted_shape, shared))
        bias_values = RandomValues((*seed, 1))
        biases = tuple(None if shape is None else bias_values.flat(0, math.prod(shape)).copy().reshape(shape)
                       for shape in (original_bias, converted_bias))
        result = check_conv(setup, self.source_framework, *weights, *biases, self.dtype_tolerance("float32"),
                            np.random.default_rng(seed))
        return result.outcomes[0]


def _missing(step: Step) -> TensorCheck:
    return TensorCheck(", ".join(step.sources), str(step.target), False, "missing from the converted checkpoint",
                       layer=step.layer, kind=step.layer_kind, code=ProblemCode.MISSING)


def _renamed(checks: list[TensorCheck], original: Mapping[str, Entry], converted: Mapping[str, Entry]) -> list[TensorCheck]:
    """A missing tensor whose bytes are an extra tensor's was renamed: one failure naming both.

    Candidates are matched by SHA-256 within one dtype and size, so a file of many extras costs
    one read of each, never a comparison of every pair."""
    missing = [c for c in checks if c.code is ProblemCode.MISSING and c.source in original and c.target]
    extra = [c for c in checks if c.code is ProblemCode.EXTRA]
    if not missing or not extra:
        return checks

    def key(entry: Entry | None) -> tuple | None:
        return (entry.dtype, entry.numel) if isinstance(entry, TensorEntry) else None

    extra_keys = {key(converted.get(c.target)) for c in extra} - {None}
    by_digest: dict[tuple, TensorCheck] = {}
    for check in extra:
        entry = converted.get(check.target)
        if isinstance(entry, TensorEntry) and any(key(original.get(c.source)) == key(entry) for c in missing):
            by_digest.setdefault((key(entry), entry.sha256()), check)
    replaced: dict[int, TensorCheck] = {}
    dropped: set[int] = set()
    for check in missing:
        entry = original.get(check.source)
        if not isinstance(entry, TensorEntry) or key(entry) not in extra_keys:
            continue
        found = by_digest.pop((key(entry), entry.sha256()), None)
        if found is None:
            continue
        replaced[id(check)] = TensorCheck(
            check.source, check.target, False,
            f"renamed: the converted file holds its bytes as {found.target}, which should be named {check.target}",
            layer=check.layer, kind=check.kind, code=ProblemCode.RENAMED)
        dropped.add(id(found))
    return [replaced.get(id(c), c) for c in checks if id(c) not in dropped]


def _moved_originals(plan: Plan, by_original: Mapping[str, Entry]) -> dict[str, TensorEntry]:
    """The output's tensors whose bytes are an original tensor's, unchanged: name -> that tensor."""
    moved = {}
    for step in plan.written:
        source = by_original.get(step.sources[0]) if len(step.sources) == 1 else None
        if step.op in (Op.COPY, Op.RENAME, Op.RESHAPE) and isinstance(source, TensorEntry):
            moved[str(step.target)] = source
    return moved


def _shape_of(array: np.ndarray | None) -> tuple[int, ...] | None:
    return None if array is None else tuple(array.shape)



def _layer_of(step: Step) -> str:
    return split_name(str(step.target))[0]


def _bias_name(step: Step) -> str:
    layer = _layer_of(step)
    return f"{layer}.bias" if layer else "bias"


def _original_weight(step: Step, by_original: Mapping[str, Entry]) -> Weight:
    """The weight the original layer computes with, read a block at a time: a weight-normalised
    one is g * v / ||v||."""
    if step.op is Op.FOLD_WEIGHT_NORM:
        g, v = (by_original[n] for n in step.sources)
        assert isinstance(g, TensorEntry) and isinstance(v, TensorEntry)
        return FoldedWeight(g, v)
    source = by_original[step.sources[0]]
    assert isinstance(source, TensorEntry)
    return EntryWeight(source)


def direction_between(original: Checkpoint, converted: Checkpoint) -> Direction:
    """torch2ms when the original is a PyTorch file, ms2torch when it is MindSpore's."""
    if original.format.framework is Framework.MINDSPORE:
        return Direction.MS_TO_TORCH
    if converted.format.framework is Framework.MINDSPORE or original.format is Format.TORCH:
        return Direction.TORCH_TO_MS
    return Direction.MS_TO_TORCH if converted.format is Format.TORCH else Direction.TORCH_TO_MS
