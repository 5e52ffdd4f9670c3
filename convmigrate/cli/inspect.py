"""`convmigrate inspect FILE`: what a checkpoint holds, as tables or one JSON object."""

from __future__ import annotations

import json
from collections import Counter
from typing import Annotated

import typer

from convmigrate.cli._errors import reported_errors
from convmigrate.cli._output import DebugOption, InputPath, JsonOption, TrustPickleOption, console, table
from convmigrate.entries import Checkpoint, TensorEntry, ValueEntry
from convmigrate.formats import open_checkpoint
from convmigrate.rules.conv import looks_like_conv1d
from convmigrate.vocab import Framework


def _conv_mark(entry: TensorEntry) -> str:
    if looks_like_conv1d(entry.name, entry.shape, Framework.TORCH):
        return "Conv1d (PyTorch layout)"
    if looks_like_conv1d(entry.name, entry.shape, Framework.MINDSPORE):
        return "Conv1d? (MindSpore layout)"
    return ""


def describe(checkpoint: Checkpoint, *, hashes: bool) -> dict:
    """The checkpoint as a JSON-ready dict; `hashes` adds each tensor's SHA-256 (reads all bytes)."""
    tensors = checkpoint.tensors()
    rows = []
    for entry in tensors:
        row = {"name": entry.name, "shape": list(entry.shape), "dtype": entry.dtype.name, "nbytes": entry.nbytes}
        if hashes:
            row["sha256"] = entry.sha256()
        mark = _conv_mark(entry)
        if mark:
            row["conv1d_candidate"] = mark
        rows.append(row)
    return {
        "format": checkpoint.format.value,
        "tensor_count": len(tensors),
        "total_bytes": sum(e.nbytes for e in tensors),
        "dtypes": dict(Counter(e.dtype.name for e in tensors)),
        "tensors": rows,
        "values": [{"name": e.name, "value": e.value} for e in checkpoint.entries if isinstance(e, ValueEntry)],
        "metadata": checkpoint.metadata,
        "notes": checkpoint.notes,
    }


def _render(summary: dict, path: str) -> None:
    console.print(
        f"[bold]{path}[/]  format [cyan]{summary['format']}[/]  {summary['tensor_count']} tensors, "
        f"{summary['total_bytes']:,} bytes, {len(summary['values'])} plain values"
    )
    console.print("dtypes: " + ", ".join(f"{name} x{count}" for name, count in summary["dtypes"].items()))
    for note in summary["notes"]:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    grid = table("name", "shape", "dtype", "conv1d")
    for row in summary["tensors"]:
        grid.add_row(row["name"], str(tuple(row["shape"])), row["dtype"], row.get("conv1d_candidate", ""))
    for value in summary["values"]:
        grid.add_row(value["name"], "value", type(value["value"]).__name__, repr(value["value"])[:40])
    console.print(grid)


def inspect_command(
    path: InputPath,
    as_json: JsonOption = False,
    no_hash: Annotated[bool, typer.Option("--no-hash", help="Skip the SHA-256 of each tensor (faster on huge files).")] = False,
    trust_pickle: TrustPickleOption = False,
    debug: DebugOption = False,
) -> None:
    """Show a checkpoint's format, tensors (name, shape, dtype) and Conv1d candidates."""
    with reported_errors(debug):
        with open_checkpoint(path, trust_pickle=trust_pickle) as checkpoint:
            summary = describe(checkpoint, hashes=as_json and not no_hash)
        if as_json:
            typer.echo(json.dumps(summary, indent=2, default=str))
        else:
            _render(summary, str(path))
