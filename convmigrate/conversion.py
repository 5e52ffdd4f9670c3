"""`convert`: a pure format change, reader -> writer; names, shapes and bytes untouched."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from convmigrate import __version__
from convmigrate.errors import UsageError
from convmigrate.formats import default_output, format_for_output, open_checkpoint, write_checkpoint
from convmigrate.formats.atomic import check_output_path, check_side_outputs
from convmigrate.formats.shards import is_sharded, sharded_output
from convmigrate.migrate import ProgressFactory, no_progress
from convmigrate.vocab import Format


@dataclass
class ConversionRequest:
    input: Path
    output: Path | None = None  # None: beside the input, with the format's extension (needs output_format)
    output_format: str | Format | None = None  # None: from the output's extension
    crc: bool = False
    force: bool = False
    fsync: bool = True
    trust_pickle: bool = False
    select: str | None = None  # the state dict to read in a torch file that holds several
    side_outputs: Mapping[str, Path] = field(default_factory=dict)  # see MigrationRequest.side_outputs
    max_shard_size: str | int | None = None  # see MigrationRequest
    jobs: int | None = None

    def planned_output(self) -> tuple[Path, Format]:
        if self.output is None and self.output_format is None:
            raise UsageError(f"{self.input}: give the output file (-o OUTPUT) or its format (--format)")
        sharded = sharded_output(self.input, self.output, self.output_format, None, self.max_shard_size)
        if sharded is not None:
            return sharded
        fmt = format_for_output(self.output, self.output_format)
        return (self.output or default_output(self.input, fmt)), fmt


@dataclass
class ConversionResult:
    request: ConversionRequest
    input_format: Format
    output: Path
    output_format: Format
    entries: int
    tensor_bytes: int
    shards: list[Path] = field(default_factory=list)  # a sharded output's shard files (output is its index)

    @property
    def ok(self) -> bool:
        return True  # a conversion that returns has written its output; a failure raises

    def failures(self) -> list[str]:
        return []

    def error(self) -> None:
        return None

    def to_json(self) -> dict:
        """The report: what `convert --json` prints and `--report` writes."""
        return {
            "convmigrate": __version__,
            "command": "convert",
            "input": {"path": str(self.request.input), "format": self.input_format.value},
            "output": {"path": str(self.output), "format": self.output_format.value, "written": True,
                       **({"shards": [str(p) for p in self.shards]} if self.shards else {})},
            "entries": self.entries,
            "tensor_bytes": self.tensor_bytes,
            "ok": True,
            "exit_code": 0,
        }


def convert_file(request: ConversionRequest, progress: ProgressFactory = no_progress) -> ConversionResult:
    """Rewrite a checkpoint in another format, bit-exactly, atomically."""
    output, fmt = request.planned_output()
    check_output_path(output, [request.input], request.force)
    check_side_outputs(request.side_outputs, [request.input], [output])
    with open_checkpoint(request.input, trust_pickle=request.trust_pickle, select=request.select) as checkpoint:
        metadata = dict(checkpoint.metadata)
        if fmt is Format.SAFETENSORS and metadata.get("format") == "ms":
            del metadata["format"]  # plain safetensors asked for: drop MindSpore's flavour mark
        total = sum(e.nbytes for e in checkpoint.tensors())
        result = ConversionResult(request, checkpoint.format, output, fmt, len(checkpoint.entries), total)
        if is_sharded(output):
            from convmigrate.sharded import JobSettings, shard_metadata, write_sharded

            settings = JobSettings(input=request.input, trust_pickle=request.trust_pickle, fmt=fmt,
                                   metadata=shard_metadata(request.input, checkpoint, metadata), crc=request.crc,
                                   durable=request.fsync)
            done = write_sharded(output, checkpoint, checkpoint.entries, settings, steps=None, inputs=[request.input],
                                 max_shard_size=request.max_shard_size, jobs=request.jobs, force=request.force,
                                 progress=progress)
            result.shards = [shard.path for shard in done.shards]
            return result
        with progress(total) as on_bytes:
            write_checkpoint(output, checkpoint.entries, fmt, metadata=metadata, crc=request.crc,
                             on_bytes=on_bytes, durable=request.fsync)
        return result
