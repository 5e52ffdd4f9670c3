"""`inspect`: what a checkpoint holds (format, tensors, plain values, Conv1d candidates)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from convmigrate import __version__
from convmigrate.entries import Checkpoint, TensorEntry, ValueEntry
from convmigrate.formats import open_checkpoint
from convmigrate.rules.conv import looks_like_conv1d
from convmigrate.vocab import Framework


def conv_mark(entry: TensorEntry) -> str:
    """Whether a tensor looks like a Conv1d weight, and in whose layout."""
    if looks_like_conv1d(entry.name, entry.shape, Framework.TORCH):
        return "Conv1d (PyTorch layout)"
    if looks_like_conv1d(entry.name, entry.shape, Framework.MINDSPORE):
        return "Conv1d? (MindSpore layout)"
    return ""


@dataclass
class Contents:
    """A checkpoint's contents as `inspect --json` prints them (`summary`)."""

    path: Path
    summary: dict

    @property
    def ok(self) -> bool:
        return True  # reading succeeded; a failure raises

    def failures(self) -> list[str]:
        return []

    def error(self) -> None:
        return None

    def to_json(self) -> dict:
        return {"convmigrate": __version__, "command": "inspect", "path": str(self.path), **self.summary,
                "ok": True, "exit_code": 0}


def describe(checkpoint: Checkpoint, *, hashes: bool) -> dict:
    """The checkpoint as a JSON-ready dict; `hashes` adds each tensor's SHA-256 (reads all bytes)."""
    tensors = checkpoint.tensors()
    rows = []
    for entry in tensors:
        row: dict = {"name": entry.name, "shape": list(entry.shape), "dtype": entry.dtype.name, "nbytes": entry.nbytes}
        if hashes:
            row["sha256"] = entry.sha256()
        mark = conv_mark(entry)
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


def inspect_file(path: Path, *, hashes: bool = True, trust_pickle: bool = False, select: str | None = None) -> Contents:
    with open_checkpoint(path, trust_pickle=trust_pickle, select=select) as checkpoint:
        return Contents(Path(path), describe(checkpoint, hashes=hashes))
