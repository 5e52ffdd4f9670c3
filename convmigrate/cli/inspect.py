"""`convmigrate inspect FILE`: what a checkpoint holds, as tables or one JSON object."""

from __future__ import annotations

from convmigrate import api
from convmigrate.cli._errors import reported_errors
from convmigrate.cli._output import Output, console, line, table, text
from convmigrate.cli.options import (
    DebugOption,
    InputPath,
    JsonOption,
    NoHashOption,
    QuietOption,
    ReportOption,
    SelectOption,
    TrustPickleOption,
)


def _render(summary: dict, path: str) -> None:
    console.print(line(text(path, "bold"), ("  format ", ""), (summary["format"], "cyan"),
                       (f"  {summary['tensor_count']} tensors, {summary['total_bytes']:,} bytes, "
                        f"{len(summary['values'])} plain values", "")))
    console.print(text("dtypes: " + ", ".join(f"{name} x{count}" for name, count in summary["dtypes"].items())))
    for note in summary["notes"]:
        console.print(line(("note: ", "yellow"), note))
    grid = table("name", "shape", "dtype", "conv1d")
    for row in summary["tensors"]:
        grid.add_row(text(row["name"]), str(tuple(row["shape"])), row["dtype"], row.get("conv1d_candidate", ""))
    for value in summary["values"]:
        grid.add_row(text(value["name"]), "value", type(value["value"]).__name__, text(repr(value["value"])[:40]))
    console.print(grid)


def inspect_command(
    path: InputPath,
    as_json: JsonOption = False,
    report: ReportOption = None,
    no_hash: NoHashOption = False,
    quiet: QuietOption = False,
    trust_pickle: TrustPickleOption = False,
    select: SelectOption = None,
    debug: DebugOption = False,
) -> None:
    """Show a checkpoint's format, tensors (name, shape, dtype), plain values and Conv1d candidates;
    the report (--json, --report) adds each tensor's SHA-256.

    Examples:

    \b
      convmigrate inspect model.pt
      convmigrate inspect model.ckpt --json | jq '.tensors[].name'
      convmigrate inspect model.safetensors.index.json --json --no-hash
      convmigrate inspect downloaded.pt --report contents.json -q
      convmigrate inspect whole_model.pt --trust-pickle   # only for files you trust
    """
    out = Output(as_json, quiet)
    with reported_errors(debug, quiet):
        hashes = (as_json or report is not None) and not no_hash
        result = api.inspect(path, hashes=hashes, trust_pickle=trust_pickle, select=select, report=report)
        out.json(result.to_json)
        if out.human:
            _render(result.summary, str(path))
