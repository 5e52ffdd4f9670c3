"""`compare`: convert the weights against the MindSpore network itself, load both networks
strictly, run both on the same inputs, compare every output, and locate the first layer that
parts.

    WEIGHTS (PyTorch)  -> load_state_dict(strict)                     -> PyTorch model  --+
                       -> torch2ms, the network's names and shapes as the reference        |-> outputs, layers
                       -> mindspore.load_checkpoint -> load_param_into_net(strict_load) --+

A MindSpore WEIGHTS goes the other way round (ms2torch with the PyTorch model as the reference).
The converted file is written to a temporary folder; `-o` keeps it only when the port is proven.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from convmigrate.compare.differences import DEFAULT_ATOL, DEFAULT_RTOL, compare_many
from convmigrate.compare.frameworks import (
    build_mindspore_network,
    build_torch_model,
    mindspore_slots,
    require_mindspore,
    require_torch,
    slot_shapes,
    take_off_weight_norm,
    torch_slots,
)
from convmigrate.compare.hints import layer_hint
from convmigrate.compare.inputs import ForwardInputs, forward_inputs
from convmigrate.compare.loading import (
    checkpoint_arrays,
    load_mindspore,
    load_result_from_plan,
    load_torch,
    mindspore_parameters,
)
from convmigrate.compare.recording import NetworkFailed, run_mindspore, run_torch
from convmigrate.compare.results import CompareResult, OutputComparison
from convmigrate.errors import UsageError
from convmigrate.formats import format_for_output, open_checkpoint
from convmigrate.formats.atomic import check_output_path
from convmigrate.migrate import MigrationRequest, MigrationResult, run_migration
from convmigrate.plan import Direction, Plan
from convmigrate.rules.names import split_name
from convmigrate.rules.weight_norm import WEIGHT_NORM_FORMS
from convmigrate.vocab import Format, Framework


@dataclass
class CompareRequest:
    weights: Path
    torch_model: str  # package.module:callable building the PyTorch model
    ms_model: str  # package.module:callable building the MindSpore network
    inputs: list[str] = field(default_factory=list)  # --input shapes, "2,4,50"
    inputs_file: Path | None = None  # --inputs FILE.npz
    output: Path | None = None  # -o: keep the converted checkpoint once proven
    rtol: float | None = None
    atol: float | None = None
    seed: int = 0
    force: bool = False
    trust_pickle: bool = False

    @property
    def read_files(self) -> list[Path]:
        """Every file this run reads (never overwritten)."""
        return [p for p in (self.weights, self.inputs_file) if p is not None]


def run_compare(request: CompareRequest) -> CompareResult:
    """Everything `convmigrate compare` does, as a value the CLI renders."""
    tolerance = (DEFAULT_RTOL if request.rtol is None else request.rtol, DEFAULT_ATOL if request.atol is None else request.atol)
    forward = forward_inputs(request.inputs, request.inputs_file, request.seed)
    if request.output is not None:
        check_output_path(request.output, request.read_files, request.force)
    require_torch("compare")
    require_mindspore("compare")
    with open_checkpoint(request.weights, trust_pickle=request.trust_pickle) as checkpoint:
        weights_format = checkpoint.format
        arrays = checkpoint_arrays(checkpoint)
    direction = Direction.TORCH_TO_MS if weights_format.framework is Framework.TORCH else Direction.MS_TO_TORCH
    output_format = format_for_output(request.output, None, direction.source.other)
    model = build_torch_model(request.torch_model)
    net = build_mindspore_network(request.ms_model)
    unfolded = take_off_weight_norm(model, set(arrays)) if direction is Direction.MS_TO_TORCH else []
    result = CompareResult(str(request.weights), weights_format.value, direction.value, forward.describe(), tolerance,
                           request.seed, torch_model=request.torch_model, ms_model=request.ms_model)
    result.notes += [f"{name or '(root)'}: weight norm taken off the PyTorch model in memory (the checkpoint holds its "
                     "folded weight; the model computes the same)" for name in unfolded]

    folder = request.output.parent if request.output is not None else None
    with tempfile.TemporaryDirectory(prefix=".convmigrate-compare-", dir=folder) as scratch:
        converted = Path(scratch) / f"converted{output_format.extension}"
        _convert_and_load(request, result, direction, arrays, model, net, converted, output_format)
        del arrays
        if not result.loaded or result.failure:
            return result
        _run_both(result, model, net, forward, _layer_pairing(result.conversion.plan), tolerance)
        if result.ok and request.output is not None:
            check_output_path(request.output, request.read_files, request.force)
            os.replace(converted, request.output)
            result.kept = str(request.output)
    return result


def _convert_and_load(request: CompareRequest, result: CompareResult, direction: Direction, arrays: dict[str, Any],
                      model: Any, net: Any, converted: Path, output_format: Format) -> None:
    """Convert WEIGHTS against the target network's own names and shapes into `converted`; load
    WEIGHTS into the source side and the converted file into the target side, both strictly."""
    target = direction.source.other
    migration = run_migration(MigrationRequest(
        input=request.weights, direction=direction, output=converted, output_format=output_format.value,
        reference_network=slot_shapes(mindspore_slots(net) if target is Framework.MINDSPORE else torch_slots(model)),
        trust_pickle=request.trust_pickle, fsync=request.output is not None,  # -o keeps it: on disk first
    ))
    result.conversion = migration
    if direction is Direction.TORCH_TO_MS:
        result.loads.append(load_torch(model, arrays, str(request.weights)))
        result.loads.append(_load_converted(migration, net, converted, output_format))
    else:
        result.loads.append(load_mindspore(net, mindspore_parameters(arrays), str(request.weights)))
        result.loads.append(_load_converted(migration, model, converted, output_format))
    if migration.verification is not None and not migration.verification.passed:
        result.failure = ("the converted weights failed convmigrate's own verification: "
                          + ", ".join(migration.verification.failures()))


def _load_converted(migration: MigrationResult, network: Any, converted: Path, fmt: Format) -> Any:
    """Load the converted file with the target framework's own loader, or say what the plan found."""
    target = migration.plan.direction.source.other
    if not migration.written:
        slots = mindspore_slots(network) if target is Framework.MINDSPORE else torch_slots(network)
        return load_result_from_plan(migration.plan, slots, target)
    source = f"converted by {migration.plan.direction.value} ({fmt.value})"
    if target is Framework.MINDSPORE:
        mindspore = require_mindspore("compare")
        kind = {Format.CKPT: "ckpt", Format.MS_SAFETENSORS: "safetensors"}[fmt]
        return load_mindspore(network, mindspore.load_checkpoint(str(converted), format=kind), source)
    torch = require_torch("compare")
    if fmt is Format.SAFETENSORS:
        from safetensors.torch import load_file

        return load_torch(network, load_file(str(converted)), source)
    return load_torch(network, torch.load(converted, weights_only=True), source)


def _layer_pairing(plan: Plan) -> Callable[[str], str]:
    """PyTorch module name -> the MindSpore cell name the conversion gave its parameters.

    A weight-normalised module's parameters sit under `<module>.parametrizations.weight` (or are
    `<module>.weight_g`): the pair belongs to `<module>`. Layers without parameters keep their name.
    """
    wn_layers = {g.rpartition(".")[0] for g, _v in WEIGHT_NORM_FORMS if "." in g}
    mapping: dict[str, str] = {}
    for step in plan.written:
        if not step.target or not step.sources:
            continue
        source_layer, target_layer = split_name(step.sources[-1])[0], split_name(step.target)[0]
        torch_layer, ms_layer = (source_layer, target_layer) if plan.direction is Direction.TORCH_TO_MS else (target_layer, source_layer)
        for suffix in wn_layers:
            if torch_layer == suffix or torch_layer.endswith("." + suffix):
                torch_layer = torch_layer[: -len(suffix)].rstrip(".")
        if torch_layer != ms_layer:
            mapping.setdefault(torch_layer, ms_layer)
    return lambda name: mapping.get(name, name)


def _run_both(result: CompareResult, model: Any, net: Any, forward: ForwardInputs, pair: Callable[[str], str],
              tolerance: tuple[float, float]) -> None:
    try:
        torch_run = run_torch(model, forward)
    except NetworkFailed as failed:
        where = f" in module {failed.layer}" if failed.layer else ""
        raise UsageError(f"the PyTorch model fails on these inputs{where}: {failed.summary}; check --input/--inputs") from failed
    try:
        ms_run = run_mindspore(net, forward, torch_run, pair, tolerance)
    except NetworkFailed as failed:
        result.layers, result.only_in_mindspore = failed.layers, failed.only_in_mindspore
        where = f" in cell {failed.layer}" if failed.layer else ""
        result.failure = f"the MindSpore network fails on the inputs the PyTorch model runs{where}: {failed.summary}"
        result.failed_layer = failed.layer
        return
    result.layers, result.only_in_mindspore = ms_run.layers, ms_run.only_in_mindspore
    result.notes += [f"{side}: {text}" for side, texts in (("PyTorch", torch_run.warnings), ("MindSpore", ms_run.warnings))
                     for text in texts]
    first = result.first_divergence()
    if first is not None:
        result.hint = layer_hint(model, first.name)
    result.outputs = _compare_outputs(torch_run.outputs, ms_run.outputs, tolerance)
    if not torch_run.outputs:
        result.failure = "the PyTorch model's forward returns no tensor: nothing to compare"
    elif len(torch_run.outputs) != len(ms_run.outputs):
        result.failure = (f"the PyTorch model returns {len(torch_run.outputs)} tensor(s) "
                          f"({', '.join(n for n, _ in torch_run.outputs)}), the MindSpore network "
                          f"{len(ms_run.outputs)} ({', '.join(n for n, _ in ms_run.outputs)})")


def _compare_outputs(expected: list[tuple[str, np.ndarray]], got: list[tuple[str, np.ndarray]],
                     tolerance: tuple[float, float]) -> list[OutputComparison]:
    """Output by output, in order. A NaN in PyTorch's output fails it: there is nothing to prove
    against (two broken networks agreeing is no proof)."""
    rtol, atol = tolerance
    compared = []
    for (name, want), (_ms_name, have) in zip(expected, got):
        difference = compare_many([want], [have], rtol, atol)
        if np.issubdtype(want.dtype, np.inexact) and np.isnan(want).any():
            difference = replace(difference, passed=False,
                                 detail=f"PyTorch's output holds {int(np.isnan(want).sum())} NaN: nothing to compare against")
        compared.append(OutputComparison(name, difference))
    return compared
