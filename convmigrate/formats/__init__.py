"""Checkpoint readers and writers, one module per file format, behind two functions.

`open_checkpoint` detects the format by content and returns a lazy `Checkpoint`;
`write_checkpoint` writes entries one at a time, atomically. Which module reads, writes and
recognises each format is a row of `vocab.FORMATS`. This package knows nothing of parameter
names, layouts or rules: it moves named tensors, bit-exactly.

Example:
    >>> with open_checkpoint(Path("fixtures/tiny_tcn.pt")) as checkpoint:
    ...     write_checkpoint(Path("tiny_tcn.safetensors"), checkpoint.entries, Format.SAFETENSORS)
    >>> open_checkpoint(Path("tiny_tcn.safetensors")).format
    <Format.SAFETENSORS: 'safetensors'>
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from convmigrate.entries import Checkpoint, Entry
from convmigrate.errors import UsageError
from convmigrate.formats.atomic import atomic_output, check_output_path
from convmigrate.formats.detect import detect_format, load
from convmigrate.formats.naming import default_output, format_for_output
from convmigrate.formats.shards import is_sharded, weights_name
from convmigrate.vocab import Format


def open_checkpoint(path: Path, *, trust_pickle: bool = False, select: str | None = None) -> Checkpoint:
    """Open any supported checkpoint lazily; tensors are read when their bytes are asked for.

    `select` ("discriminator", "model.ema") chooses the state dict of a torch.save file that
    holds several; without it the reader chooses and notes the others. `trust_pickle` loads a
    torch.save file with torch.load, running its pickle's code (only for files whose tensors
    that code builds, and that you trust; needs the torch extra).
    """
    path = Path(path)
    if is_sharded(path) and select is not None:
        raise UsageError(f"--select {select}: {path} is a sharded model, whose index maps one flat state dict; "
                         "--select chooses among the state dicts of a torch.save file")
    if is_sharded(path) and not weights_name(path).name.endswith(".safetensors"):
        from convmigrate.formats.shards import read_sharded

        return read_sharded(path, trust_pickle=trust_pickle)  # .ckpt or torch shards
    fmt = detect_format(path)
    reader = fmt.spec.reader
    assert reader is not None, f"{fmt} is detected but has no reader"
    if fmt is Format.TORCH:
        return load(reader)(path, trust_pickle=trust_pickle, select=select)
    if fmt is Format.NEMO:
        if trust_pickle:
            raise UsageError(f"--trust-pickle: {path} is a NeMo archive, which convmigrate reads only inertly; "
                             "extract its model_weights.ckpt (tar -xf) and pass that file")
        return load(reader)(path, select=select)
    if select is not None:
        raise UsageError(f"--select {select}: {path} is a {fmt.spec.label} file, which holds one flat state dict; "
                         "--select chooses among the state dicts of a torch.save file")
    return load(reader)(path)


def write_checkpoint(
    output: Path,
    entries: Sequence[Entry],
    fmt: Format,
    *,
    metadata: Mapping[str, str] | None = None,
    crc: bool = False,
    on_bytes: Callable[[int], None] | None = None,
    check: Callable[[Path], bool] | None = None,
    durable: bool = True,
) -> None:
    """Write `entries` to `output` in `fmt`, one tensor at a time, atomically.

    `crc` appends MindSpore's CRC tail (.ckpt only). The previous file at `output` survives any
    failure. The caller checks `output` first (`check_output_path`: not an input, --force).
    `check(path)` reads the complete temporary file first: False discards it. `durable` puts the
    file on disk before it takes its name (see atomic_output). `on_bytes(n)` reports progress.
    """
    writer = checkpoint_writer(fmt, metadata=metadata, crc=crc, on_bytes=on_bytes)
    with atomic_output(Path(output), check, durable) as stream:
        writer(stream, entries)


def checkpoint_writer(
    fmt: Format,
    *,
    metadata: Mapping[str, str] | None = None,
    crc: bool = False,
    on_bytes: Callable[[int], None] | None = None,
) -> Callable[[BinaryIO, Sequence[Entry]], None]:
    """`fmt`'s writer with these options, as writer(stream, entries): for a caller that opens the
    stream itself (a staged shard of a sharded output). Refuses what `write_checkpoint` refuses."""
    spec = fmt.spec
    if crc and not spec.crc:
        raise UsageError(f"--crc applies to {', '.join(f.extension for f in Format if f.spec.crc)} output only")
    if spec.writer is None:
        raise UsageError(f"convmigrate reads {spec.label} files but does not write them")
    options: dict[str, object] = {"metadata": dict(metadata or {}), "on_bytes": on_bytes}
    if spec.crc:
        options["crc"] = crc
    write = load(spec.writer)
    return lambda stream, entries: write(stream, entries, **options)


__all__ = [
    "open_checkpoint", "write_checkpoint", "checkpoint_writer", "check_output_path", "format_for_output", "default_output", "detect_format",
    "Checkpoint",
]
