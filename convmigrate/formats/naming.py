"""Which format an output is written in, and what a default output is called.

The output's extension decides when `--format` is absent (`.ckpt`, `.safetensors`,
`.pt/.pth/.bin`); a `--format` that contradicts the extension is a usage error, and so is an
extension of the other framework's formats on a migration: `torch2ms -o model.pt` would
otherwise write a MindSpore checkpoint under a PyTorch name.
"""

from __future__ import annotations

from pathlib import Path

from convmigrate.errors import UsageError
from convmigrate.vocab import DEFAULT_FORMAT, FORMATS, Format, Framework

# Suffixes stripped from an input name to make the default output name (longest first): every
# format's extensions, and a sharded safetensors index.
_INPUT_SUFFIXES = tuple(sorted({".safetensors.index.json", *(e for spec in FORMATS.values() for e in spec.extensions)},
                               key=len, reverse=True))


def _writable(framework: Framework | None) -> list[Format]:
    return [f for f in Format if f.writable and (framework is None or f.framework is framework)]


def _parse(requested: str | Format, framework: Framework | None) -> Format:
    """A --format value; on a migration "safetensors" names the target framework's flavour."""
    choices = _writable(framework)
    try:
        fmt = Format(requested)
    except ValueError:
        fmt = None
    if fmt is not None and fmt not in choices:
        fmt = next((f for f in choices if set(f.spec.extensions) & set(fmt.spec.extensions)), None)
    if fmt is None:
        raise UsageError(f"--format {requested!s} is not one this command writes; choose one of "
                         f"{', '.join(f.value for f in choices)}")
    return fmt


def format_for_output(output: Path | None, requested: str | Format | None,
                      framework: Framework | None = None) -> Format:
    """The format to write `output` in.

    `framework` is a migration's target (None for `convert`, which writes any format).
    Without `--format` the extension decides; an unknown extension is a usage error for
    `convert` and the target framework's default format for a migration.

    Example:
        >>> format_for_output(Path("model.safetensors"), None, Framework.MINDSPORE).value
        'ms-safetensors'
    """
    requested = getattr(requested, "value", requested)  # a CLI choice (an enum of the values) or a str
    suffix = Path(output).suffix.lower() if output is not None else ""
    by_extension = [f for f in _writable(None) if suffix in f.spec.extensions]
    if requested is not None:
        fmt = _parse(requested, framework)
        if by_extension and suffix not in fmt.spec.extensions:
            raise UsageError(f"{output}: --format {fmt.value} writes {fmt.spec.label} files, "
                             f"but the name ends in {suffix}; name it *{fmt.extension} or drop --format")
        return fmt
    if not by_extension:
        if framework is not None:
            return DEFAULT_FORMAT[framework]
        known = ", ".join(dict.fromkeys(e for f in _writable(None) for e in f.spec.extensions))
        raise UsageError(f"{output}: cannot tell the format from {suffix or 'no extension'}; use {known} or pass --format")
    fitting = [f for f in by_extension if framework is None or f.framework is framework]
    if not fitting:
        assert framework is not None
        wanted = ", ".join(dict.fromkeys(e for f in _writable(framework) for e in f.spec.extensions))
        raise UsageError(f"{output}: {suffix} names a {by_extension[0].spec.label} file, but this command writes "
                         f"{framework.value} checkpoints ({wanted}); choose another name, or pass --format")
    return fitting[0]


def default_output(input_path: Path, fmt: Format) -> Path:
    """Beside the input, with the format's extension: model.pt -> model.ckpt.

    When that is the input itself (model.safetensors -> model.safetensors), the target
    framework's tag is added: model.ms.safetensors.
    """
    name = input_path.name
    stem = next((name[: -len(s)] for s in _INPUT_SUFFIXES if name.endswith(s)), input_path.stem)
    candidate = input_path.with_name(stem + fmt.extension)
    if candidate.exists() and candidate.resolve() == input_path.resolve():
        tag = "ms" if fmt.framework is Framework.MINDSPORE else "torch"
        candidate = input_path.with_name(f"{stem}.{tag}{fmt.extension}")
    return candidate
