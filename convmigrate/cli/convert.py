"""`convmigrate convert INPUT -o OUTPUT`: a pure format change; names and shapes untouched."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from convmigrate.cli._errors import reported_errors
from convmigrate.cli._output import (
    DebugOption,
    ForceOption,
    InputPath,
    NoFsyncOption,
    QuietOption,
    TrustPickleOption,
    console,
)
from convmigrate.cli._progress import byte_progress
from convmigrate.formats import format_for_output, open_checkpoint, write_checkpoint
from convmigrate.vocab import Format

FormatOption = Annotated[
    str | None,
    typer.Option("--format", "-f", help="pt | safetensors | ckpt | ms-safetensors (default: from OUTPUT's extension)."),
]
CrcOption = Annotated[bool, typer.Option("--crc", help="Append MindSpore's CRC32 tail (.ckpt output).")]


def convert_command(
    input_path: InputPath,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the converted checkpoint.")],
    output_format: FormatOption = None,
    crc: CrcOption = False,
    force: ForceOption = False,
    no_fsync: NoFsyncOption = False,
    trust_pickle: TrustPickleOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Rewrite a checkpoint in another file format, bit-exactly (no names or shapes change)."""
    with reported_errors(debug):
        fmt = format_for_output(output, output_format)
        with open_checkpoint(input_path, trust_pickle=trust_pickle) as checkpoint:
            metadata = dict(checkpoint.metadata)
            if fmt is Format.SAFETENSORS and metadata.get("format") == "ms":
                del metadata["format"]  # plain safetensors asked for: drop MindSpore's flavour mark
            total = sum(e.nbytes for e in checkpoint.tensors())
            with byte_progress(total, "converting", quiet) as advance:
                write_checkpoint(
                    output, checkpoint.entries, fmt, metadata=metadata, crc=crc,
                    inputs=[input_path], force=force, on_bytes=advance, durable=not no_fsync,
                )
            count = len(checkpoint.entries)
        if not quiet:
            console.print(f"wrote {output} ({fmt.value}, {count} entries, {total:,} tensor bytes)", highlight=False)
