"""Sharded checkpoints as transformers lays them out: shard files and one index, written last.

A sharded model is `model.safetensors.index.json` beside `model-00001-of-00004.safetensors`,
`model-00002-of-00004.safetensors`, ... The index is JSON, written as transformers'
`save_pretrained` writes it (keys sorted, two-space indent, a final newline):

    {"metadata": {"total_parameters": 1234, "total_size": 4936},
     "weight_map": {"encoder.conv.weight": "model-00001-of-00004.safetensors", ...}}

`total_size` is the tensor bytes of all shards, `total_parameters` (transformers 5) their
elements. The same layout serves every format: the index name without `.index.json` is the
weights name, whose extension says what the shards are (`model.ckpt.index.json`: MindSpore
.ckpt shards `model-00001-of-00004.ckpt`; `pytorch_model.bin.index.json`: transformers' torch
shards `pytorch_model-00001-of-00002.bin`).

This module knows names, sizes and the index; which tensor goes to which shard and how the
shards are written is `convmigrate/sharded.py`'s job. No rules here.

Example:
    >>> shard_paths(Path("out/model.safetensors.index.json"), 2)
    [PosixPath('out/model-00001-of-00002.safetensors'), PosixPath('out/model-00002-of-00002.safetensors')]
    >>> parse_size("5GB"), parse_size("2GiB"), parse_size("500MB")
    (5000000000, 2147483648, 500000000)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from convmigrate.entries import Checkpoint, Entry, ValueEntry
from convmigrate.errors import UnreadableCheckpointError, UsageError
from convmigrate.formats.naming import default_output, format_for_output
from convmigrate.vocab import Format, Framework

INDEX_SUFFIX = ".index.json"
SHARD_NAME = "{stem}-{number:05d}-of-{count:05d}{extension}"  # transformers' (and huggingface_hub's) names

# --max-shard-size units as transformers and huggingface_hub spell them: decimal KB/MB/GB/TB,
# binary KiB/MiB/GiB/TiB (transformers), or a plain number of bytes.
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")

K = TypeVar("K", bound=Hashable)


def is_sharded(path: Path | None) -> bool:
    """Whether `path` names a sharded checkpoint (its index)."""
    return path is not None and Path(path).name.endswith(INDEX_SUFFIX) and len(Path(path).name) > len(INDEX_SUFFIX)


def weights_name(index: Path) -> Path:
    """The single-file name the index stands for: model.safetensors.index.json -> model.safetensors."""
    return index.with_name(index.name[: -len(INDEX_SUFFIX)])


def index_for(weights: Path) -> Path:
    """The index of a weights name: model.ckpt -> model.ckpt.index.json."""
    return weights.with_name(weights.name + INDEX_SUFFIX)


def shard_paths(index: Path, count: int) -> list[Path]:
    """The shard files of `index`, numbered as transformers numbers them (from 1, five digits)."""
    weights = weights_name(index)
    stem, extension = weights.stem, weights.suffix
    return [index.with_name(SHARD_NAME.format(stem=stem, number=n, count=count, extension=extension))
            for n in range(1, count + 1)]


def parse_size(size: str | int) -> int:
    """A --max-shard-size in bytes: "5GB" is 5 * 10**9, "5GiB" 5 * 2**30, "500MB", or a plain int.

    A lower-case "b" after a prefix (5Gb) is refused: transformers reads it as bits.
    """
    if isinstance(size, int):
        value, unit = float(size), ""
    else:
        match = _SIZE.fullmatch(size)
        if match is None:
            raise UsageError(f"--max-shard-size {size!r}: write a size such as 5GB, 500MB or 2GiB")
        value, unit = float(match.group(1)), match.group(2)
        if len(unit) >= 2 and unit.endswith("b") and unit[:-1].upper() in ("K", "M", "G", "T"):
            raise UsageError(f"--max-shard-size {size}: write {match.group(1)}{unit[:-1].upper()}B for bytes "
                             "(transformers reads a lower-case b as bits)")
        if unit.upper() not in _UNITS:
            raise UsageError(f"--max-shard-size {size}: unknown unit {unit!r}; use KB, MB, GB, TB, KiB, MiB, GiB or TiB")
    result = int(value * _UNITS[unit.upper()])
    if result < 1:
        raise UsageError(f"--max-shard-size {size}: a shard must be allowed at least one byte")
    return result


def split_by_size(sizes: Sequence[tuple[K, int]], max_bytes: int) -> list[list[K]]:
    """Keys in order, cut into shards of at most `max_bytes` (huggingface_hub's rule).

    A shard is closed when the next item would take it over the limit; an item larger than the
    limit gets a shard of its own; there is no reordering to fill shards better.

    Example:
        >>> split_by_size([("a", 6), ("b", 6), ("c", 2), ("d", 6), ("e", 2), ("f", 2)], 10)
        [['a'], ['b', 'c'], ['d', 'e', 'f']]
    """
    shards: list[list[K]] = []
    current: list[K] = []
    current_bytes = 0
    for key, nbytes in sizes:
        if nbytes > max_bytes:
            shards.append([key])
            continue
        if current and current_bytes + nbytes > max_bytes:
            shards.append(current)
            current, current_bytes = [], 0
        current.append(key)
        current_bytes += nbytes
    if current or not shards:
        shards.append(current)
    return shards


def index_text(weight_map: Mapping[str, str], total_size: int, total_parameters: int | None) -> str:
    """The index file's text, as transformers writes it (sorted keys, indent 2, final newline)."""
    metadata: dict[str, int] = {"total_size": total_size}
    if total_parameters is not None:
        metadata["total_parameters"] = total_parameters
    return json.dumps({"metadata": metadata, "weight_map": dict(weight_map)}, indent=2, sort_keys=True) + "\n"


def join_shards(index: Path, open_shard: Callable[[Path, Path], Checkpoint],
                format_of: Callable[[dict[str, str]], Format] | None = None) -> Checkpoint:
    """The shards `index` lists, each opened by `open_shard(listed path, real path)`, joined.

    Entries come in the index's weight_map order, then the shards' plain values; metadata is
    each shard's, then the index's on top. A tensor the index places in a shard that lacks it,
    or a shard tensor the index does not place there, is an error. The format is
    `format_of(metadata)` (safetensors: MindSpore's flavour mark), else the shards' own, which
    must agree. Shard names are checked by `read_index` and `shard_path`: plain file names,
    regular files, never a way out of the index's folder.
    """
    from convmigrate.formats.safetensors_file import read_index, shard_path

    weight_map, index_metadata = read_index(index)
    joined = Checkpoint(Format.SAFETENSORS, [])
    by_name: dict[str, Entry] = {}
    values: list[Entry] = []
    formats: list[Format] = []
    try:
        for name in dict.fromkeys(weight_map.values()):  # each shard once, in index order
            shard = open_shard(index.parent / name, shard_path(index, name))
            joined.add_closer(shard.close)
            if format_of is None and formats and shard.format is not formats[0]:
                raise UnreadableCheckpointError(index, f"shard {name!r} is {shard.format.value}, the shards before it "
                                                f"{formats[0].value}")
            formats.append(shard.format)
            joined.metadata.update(shard.metadata)
            for entry in shard.entries:
                if isinstance(entry, ValueEntry):
                    values.append(entry)
                elif weight_map.get(entry.name) != name:
                    raise UnreadableCheckpointError(index, f"shard {name!r} holds {entry.name!r}, which the index "
                                                    "does not place there")
                else:
                    by_name[entry.name] = entry
        for tensor, name in weight_map.items():
            if tensor not in by_name:
                raise UnreadableCheckpointError(index, f"index places {tensor!r} in shard {name!r}, which does not hold it")
    except BaseException:
        joined.close()
        raise
    joined.metadata.update(index_metadata)
    joined.entries = [*(by_name[name] for name in weight_map), *values]
    joined.format = format_of(joined.metadata) if format_of is not None else (formats or [Format.SAFETENSORS])[0]
    joined.notes.append(f"{len(formats)} shards joined from {index.name}")
    return joined


def read_sharded(index: Path, *, trust_pickle: bool = False) -> Checkpoint:
    """Open a sharded model whose shards are not safetensors (`model.ckpt.index.json`,
    transformers' `pytorch_model.bin.index.json`): each shard by its own reader, all of one format."""
    from convmigrate.formats import open_checkpoint

    return join_shards(Path(index), lambda _listed, real: open_checkpoint(real, trust_pickle=trust_pickle))


def sharded_output(input_path: Path, output: Path | None, requested: str | Format | None,
                   framework: Framework | None, max_shard_size: str | int | None) -> tuple[Path, Format] | None:
    """(index, shard format) when this run writes a sharded model, else None.

    A sharded model is written when -o names an index (`*.index.json`), or without -o when the
    input is one (same boundaries) or --max-shard-size asks for shards. The shards' format comes
    from the weights name (`model.ckpt.index.json`: .ckpt shards), else from --format, else the
    input's (a sharded safetensors model stays safetensors, in the target's flavour).

    Example:
        >>> sharded_output(Path("hf/model.safetensors.index.json"), None, None, Framework.MINDSPORE, None)
        (PosixPath('hf/model.ms.safetensors.index.json'), <Format.MS_SAFETENSORS: 'ms-safetensors'>)
    """
    if output is not None and not is_sharded(output):
        if max_shard_size is not None:
            raise UsageError(f"{output}: --max-shard-size writes a sharded model; name its index: "
                             f"-o {Path(output).name}{INDEX_SUFFIX}")
        return None
    if output is None and not is_sharded(input_path) and max_shard_size is None:
        return None
    if output is not None:
        return Path(output), format_for_output(weights_name(Path(output)), requested, framework)
    if requested is None and is_sharded(input_path):
        fmt = format_for_output(Path("model.safetensors"), None, framework)  # the target's safetensors
    else:
        fmt = format_for_output(None, requested, framework)
    return _default_index(Path(input_path), fmt), fmt


def _default_index(input_path: Path, fmt: Format) -> Path:
    """Beside the input: model.pt -> model.ckpt.index.json; a sharded input's own name gets the
    target framework's tag (model.safetensors.index.json -> model.ms.safetensors.index.json)."""
    candidate = index_for(default_output(input_path, fmt))
    if candidate.resolve() == Path(input_path).resolve():
        tag = "ms" if fmt.framework is Framework.MINDSPORE else "torch"
        stem = weights_name(candidate).name[: -len(fmt.extension)]
        candidate = index_for(candidate.with_name(f"{stem}.{tag}{fmt.extension}"))
    return candidate


__all__ = [
    "INDEX_SUFFIX", "is_sharded", "weights_name", "index_for", "shard_paths", "parse_size", "split_by_size",
    "index_text", "sharded_output", "read_sharded", "join_shards",
]
