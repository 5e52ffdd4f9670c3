"""Checkpoint readers and writers, one module per file format, behind two functions.

`open_checkpoint` detects the format by content and returns a lazy `Checkpoint`;
`write_checkpoint` writes entries one at a time, atomically. This package knows nothing of
parameter names, layouts or rules: it moves named tensors, bit-exactly.

Example:
    >>> with open_checkpoint(Path("model.pt")) as checkpoint:          # doctest: +SKIP
    ...     write_checkpoint(Path("model.ckpt"), checkpoint.entries, Format.CKPT)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from convmigrate.entries import Checkpoint, Entry
from convmigrate.formats.atomic import atomic_output, check_output_path
from convmigrate.formats.detect import detect_format
from convmigrate.vocab import FORMAT_BY_EXTENSION, Format
from convmigrate.errors import UsageError

# format -> ("module:reader", "module:writer"). Modules are imported on first use, so that
# reading a .ckpt (or a plain torch state dict, see torch_zip) never imports torch.
_CODECS: dict[Format, tuple[str, str]] = {
    Format.TORCH: ("convmigrate.formats.torch_zip:read_torch", "convmigrate.formats.torch_write:write_torch"),
    Format.SAFETENSORS: ("convmigrate.formats.safetensors_file:read_safetensors",
                         "convmigrate.formats.safetensors_file:write_safetensors"),
    Format.MS_SAFETENSORS: ("convmigrate.formats.safetensors_file:read_safetensors",
                            "convmigrate.formats.safetensors_file:write_ms_safetensors"),
    Format.CKPT: ("convmigrate.formats.ckpt:read_ckpt", "convmigrate.formats.ckpt:write_ckpt"),
}
_READER, _WRITER = 0, 1


def _codec(fmt: Format, which: int):  # noqa: ANN202 - returns a reader or a writer
    module_name, function = _CODECS[fmt][which].split(":")
    return getattr(importlib.import_module(module_name), function)


def open_checkpoint(path: Path, *, trust_pickle: bool = False) -> Checkpoint:
    """Open any supported checkpoint lazily; tensors are read when their bytes are asked for.

    `trust_pickle` allows a torch.save file whose loading runs arbitrary pickle code.
    """
    path = Path(path)
    fmt = detect_format(path)
    if fmt is Format.TORCH:
        return _codec(fmt, _READER)(path, trust_pickle=trust_pickle)
    return _codec(fmt, _READER)(path)


def format_for_output(output: Path, requested: str | Format | None) -> Format:
    """The output format: `--format` if given, else judged from the output's extension."""
    if requested is not None:
        try:
            return Format(requested)
        except ValueError:
            known = ", ".join(f.value for f in Format)
            raise UsageError(f"unknown format {requested!r}; choose one of {known}") from None
    suffix = Path(output).suffix.lower()
    if suffix not in FORMAT_BY_EXTENSION:
        known = ", ".join(FORMAT_BY_EXTENSION)
        raise UsageError(f"{output}: cannot tell the format from {suffix or 'no extension'}; use {known} or pass --format")
    return FORMAT_BY_EXTENSION[suffix]


def write_checkpoint(
    output: Path,
    entries: Sequence[Entry],
    fmt: Format,
    *,
    metadata: Mapping[str, str] | None = None,
    crc: bool = False,
    inputs: Sequence[Path] = (),
    force: bool = False,
    on_bytes=None,  # noqa: ANN001 - optional callback(int) for progress over tensor bytes
    check: Callable[[Path], bool] | None = None,
    durable: bool = True,
) -> None:
    """Write `entries` to `output` in `fmt`, one tensor at a time, atomically.

    `crc` appends MindSpore's CRC tail (.ckpt only). `inputs` are never overwritten; an
    existing output needs `force`. The previous file at `output` survives any failure.
    `check(path)` reads the complete temporary file first: False discards it. `durable` puts the
    file on disk before it takes its name (see atomic_output).
    """
    check_output_path(Path(output), [Path(p) for p in inputs], force)
    if crc and fmt is not Format.CKPT:
        raise UsageError("--crc applies to MindSpore .ckpt output only")
    writer = _codec(fmt, _WRITER)
    options: dict[str, object] = {"metadata": dict(metadata or {}), "on_bytes": on_bytes}
    if fmt is Format.CKPT:
        options["crc"] = crc
    with atomic_output(Path(output), check, durable) as stream:
        writer(stream, entries, **options)


__all__ = ["open_checkpoint", "write_checkpoint", "format_for_output", "detect_format", "Checkpoint"]
