"""`convmigrate convert INPUT -o OUTPUT`: a pure format change; names and shapes untouched."""

from __future__ import annotations

from convmigrate import api
from convmigrate.cli._errors import reported_errors
from convmigrate.cli._output import Output, console, text
from convmigrate.cli._progress import byte_progress
from convmigrate.cli.options import (
    ConvertFormatOption,
    CrcOption,
    DebugOption,
    ForceOption,
    InputPath,
    JobsOption,
    JsonOption,
    MaxShardSizeOption,
    NoFsyncOption,
    OutputOption,
    QuietOption,
    ReportOption,
    SelectOption,
    TrustPickleOption,
)


def convert_command(
    input_path: InputPath,
    output: OutputOption = None,
    output_format: ConvertFormatOption = None,
    crc: CrcOption = False,
    as_json: JsonOption = False,
    report: ReportOption = None,
    quiet: QuietOption = False,
    max_shard_size: MaxShardSizeOption = None,
    jobs: JobsOption = None,
    force: ForceOption = False,
    no_fsync: NoFsyncOption = False,
    trust_pickle: TrustPickleOption = False,
    select: SelectOption = None,
    debug: DebugOption = False,
) -> None:
    """Rewrite a checkpoint in another file format, bit-exactly (no names or shapes change).

    Examples:

    \b
      convmigrate convert model.pt -o model.safetensors
      convmigrate convert model.safetensors --format pt           # -> model.pt
      convmigrate convert model.pt -o model.ckpt --crc             # MindSpore's CRC32 tail
      convmigrate convert model.pt -o weights.dat --format ckpt    # any name, explicit format
      convmigrate convert sharded.safetensors.index.json -o model.safetensors   # shards joined
      convmigrate convert model.pt -o out/model.safetensors.index.json --max-shard-size 5GB   # split
    """
    out = Output(as_json, quiet)
    with reported_errors(debug, quiet):
        result = api.convert(input_path, output, format=output_format, crc=crc, force=force, fsync=not no_fsync,
                             trust_pickle=trust_pickle, select=select, max_shard_size=max_shard_size, jobs=jobs,
                             report=report,
                             progress=lambda total: byte_progress(total, "converting", not out.human))
        out.json(result.to_json)
        if out.human:
            shards = f", {len(result.shards)} shards" if result.shards else ""
            console.print(text(f"wrote {result.output} ({result.output_format.value}{shards}, {result.entries} entries, "
                               f"{result.tensor_bytes:,} tensor bytes)"))
