"""`convmigrate compare WEIGHTS --torch-model M --ms-model N --input SHAPE`: prove a port by running it.

The command is its signature and one call of the Python API; what is printed is rendered here
from the returned `CompareResult`: how each network loaded, the outputs table, the layers in
execution order around the first one that parts, and what to fix there.
"""

from __future__ import annotations

from convmigrate import api
from convmigrate.cli._errors import raise_failure, reported_errors
from convmigrate.cli._output import MAX_TABLE_ROWS, Output, console, line, table, text
from convmigrate.cli._summary import append_summary, compare_markdown
from convmigrate.cli.options import (
    CompareAtolOption,
    CompareRtolOption,
    DebugOption,
    ForceOption,
    InputsFileOption,
    InputShapeOption,
    JsonOption,
    JunitOption,
    KeepConvertedOption,
    MsModelOption,
    QuietOption,
    ReportOption,
    SeedOption,
    TorchModelOption,
    TrustPickleOption,
    WeightsPath,
)
from convmigrate.compare import CompareResult, LayerComparison, LoadResult
from convmigrate.compare.differences import Difference
from convmigrate.compare.results import NETWORK

# Rows of the layer table kept after the first layer that parts (the rest follow from it).
_AFTER_DIVERGENCE = 5


def compare_command(
    weights: WeightsPath,
    torch_model: TorchModelOption,
    ms_model: MsModelOption,
    input_shapes: InputShapeOption = None,
    inputs_file: InputsFileOption = None,
    output: KeepConvertedOption = None,
    rtol: CompareRtolOption = None,
    atol: CompareAtolOption = None,
    seed: SeedOption = 0,
    as_json: JsonOption = False,
    report: ReportOption = None,
    junit: JunitOption = None,
    quiet: QuietOption = False,
    force: ForceOption = False,
    trust_pickle: TrustPickleOption = False,
    debug: DebugOption = False,
) -> None:
    """Run the PyTorch model and its MindSpore port on the same inputs, compare every output, and
    name the first layer where they part. The weights are converted with the network's own names
    and shapes and loaded strictly on both sides. Needs the torch and mindspore extras.

    Examples:

    \b
      convmigrate compare model.pt --torch-model mymodel:build --ms-model msport:build --input 1,80,200
      convmigrate compare model.pt --torch-model m:build --ms-model p:build --input 2,16000 -o model.ckpt
      convmigrate compare model.pt --torch-model m:build --ms-model p:build --inputs ids.npz   # integer ids
      convmigrate compare model.ckpt --torch-model m:build --ms-model p:build --input 1,4,50  # MindSpore weights
      convmigrate compare model.pt --torch-model m:build --ms-model p:build --input 1,4,50 -q --junit c.xml
    """
    out = Output(as_json, quiet)
    with reported_errors(debug, quiet):
        result = api.compare(
            weights, torch_model=torch_model, ms_model=ms_model, inputs=input_shapes or (), inputs_file=inputs_file,
            output=output, rtol=rtol, atol=atol, seed=seed, force=force, trust_pickle=trust_pickle, report=report,
            junit=junit, check=False,
        )
        out.json(result.to_json)
        if out.human:
            render(result)
        append_summary(compare_markdown(result))
        raise_failure(result)


def _shape(shape: tuple[int, ...] | None) -> str:
    return "-" if shape is None else "(" + ",".join(str(s) for s in shape) + ")"


def _shapes(difference: Difference | None) -> str:
    if difference is None:
        return "-"
    if difference.ms_shape is not None and difference.ms_shape != difference.torch_shape:
        return f"{_shape(difference.torch_shape)} vs {_shape(difference.ms_shape)}"
    return _shape(difference.torch_shape)


def _errors(difference: Difference | None) -> tuple[str, str]:
    if difference is None or not difference.comparable:
        return "-", "-"
    return f"{difference.max_abs:.3g}", f"{difference.max_rel:.3g}"


def _classes(layer: LayerComparison) -> str:
    """'Conv1d' when both sides use the same class, else 'Linear / Dense' ('LSTM / -': no cell ran)."""
    return layer.torch_class if layer.ms_class == layer.torch_class else layer.classes


def render(result: CompareResult) -> None:
    render_loads(result.loads)
    if result.outputs:
        grid = table("output", "shape", "max abs error", "max rel error", "result")
        for output in result.outputs:
            d = output.difference
            verdict = text("ok", "green") if d.passed else line(("FAIL ", "red"), d.detail)
            grid.add_row(text(output.name), _shapes(d), *_errors(d), verdict)
        console.print(grid)
    if result.layers:
        render_layers(result)
    first = result.first_divergence()
    if first is not None:
        label = ("warning: ", "yellow") if result.ok else ("first to part: ", "red")
        console.print(line(label, f"{first.display_name} ({first.classes}): {first.status.value}, "
                                  f"{first.difference.detail if first.difference else ''}"
                                  + (" (every output matches all the same)" if result.ok else "")))
        unpaired = [layer.label for layer in result.unpaired_before(first)]
        if unpaired:
            console.print(text(f"  after {', '.join(unpaired[:4])}, which the port does not run"))
        if result.hint:
            console.print(text(f"  {result.hint}"))
    for note in result.notes:
        console.print(line(("note: ", "cyan"), note))
    if result.ok:
        console.print(text(f"compare: {result.summary()}"))
        if result.kept:
            console.print(text(f"kept: {result.kept} (the converted checkpoint that was proven)"))


def render_loads(loads: list[LoadResult]) -> None:
    for load in loads:
        network = NETWORK[load.framework]
        if load.ok:
            console.print(text(f"{network} <- {load.source}: {load.loaded} tensors loaded, strictly"))
        else:
            console.print(text(f"{network} <- {load.source}: not loaded", "red"))
        for label, names in (("left unloaded (no tensor for these parameters)", load.missing),
                             ("no home in the network (no parameter takes these tensors)", load.unexpected),
                             ("shapes differ", load.mismatched)):
            if names:
                console.print(text(f"  {label}: {', '.join(names)}"))
        for note in load.notes:
            console.print(line(("  note: ", "cyan"), note))


def render_layers(result: CompareResult) -> None:
    """The layers in PyTorch's execution order, around the first that parts."""
    layers = result.layers
    first = result.first_divergence()
    if first is None:
        start, end = 0, min(len(layers), MAX_TABLE_ROWS)
    else:
        end = min(len(layers), layers.index(first) + 1 + _AFTER_DIVERGENCE)
        start = max(0, end - MAX_TABLE_ROWS)
    grid = table("layer (execution order)", "torch / mindspore", "shape", "max abs error", "max rel error", "result")
    for layer in layers[start:end]:
        d = layer.difference
        verdict = text("ok", "green") if layer.status.value == "ok" else text(layer.status.value, "red")
        if layer is first:
            verdict = line(verdict, ("  <- first to part", "bold red"))
        grid.add_row(text(layer.display_name), text(_classes(layer)), _shapes(d), *_errors(d), verdict)
    if start:
        console.print(f"... {start} earlier layer call(s) before these")
    console.print(grid)
    if end < len(layers):
        later = layers[end:]
        failing = sum(layer.status.failed for layer in later)
        console.print(f"... and {len(later)} more layer call(s) ({failing} beyond tolerance; --report lists them)")
    if result.only_in_mindspore:
        console.print(text(f"only in the MindSpore network (not compared): {', '.join(result.only_in_mindspore)}"))
