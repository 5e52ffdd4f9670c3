"""Inputs that are not checkpoints at all: the corpus's baseline."""

from __future__ import annotations

from pathlib import Path

from tests.corpus import register


@register("7", "a text file named .pt", r"is not a checkpoint convmigrate knows")
def text_file(folder: Path) -> Path:
    path = folder / "notes.pt"
    path.write_bytes(b"epoch 3: loss 0.25\n")
    return path


@register("7", "an empty file", r"is empty \(0 bytes\)")
def empty_file(folder: Path) -> Path:
    path = folder / "empty.ckpt"
    path.write_bytes(b"")
    return path
