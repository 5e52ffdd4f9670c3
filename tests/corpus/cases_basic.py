"""Inputs that are not checkpoints at all: the corpus's baseline."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tests.corpus import register
from tests.corpus.build import written


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


@register("7", "an empty .pt", r"is empty \(0 bytes\)")
def empty_pt(folder: Path) -> Path:
    """Migrated from tests/test_hardening.py, with .safetensors and .bin."""
    return written(folder / "empty.pt", b"")


@register("7", "an empty .safetensors", r"is empty \(0 bytes\)")
def empty_safetensors(folder: Path) -> Path:
    return written(folder / "empty.safetensors", b"")


@register("7", "an empty .bin", r"is empty \(0 bytes\)")
def empty_bin(folder: Path) -> Path:
    return written(folder / "empty.bin", b"")


@register("7", "a directory", r"is a directory; give a checkpoint file")
def a_directory(folder: Path) -> Path:
    path = folder / "model.pt"
    path.mkdir()
    return path


@register("7", "a PNG named .pt", r"is not a checkpoint convmigrate knows")
def png_named_pt(folder: Path) -> Path:
    return written(folder / "image.pt", b"\x89PNG\r\n\x1a\n" + bytes(range(256)))


@register("7", "random bytes named .ckpt", r"is not a protobuf MindSpore checkpoint")
def random_ckpt(folder: Path) -> Path:
    return written(folder / "random.ckpt", np.random.default_rng(3).integers(0, 256, 4096, np.uint8).tobytes())


@register("extra", "a FIFO named .safetensors (opening it would wait for a writer forever)", r"is not a regular file \(a pipe, device or socket\)")
def fifo(folder: Path) -> Path:
    os.mkfifo(folder / "pipe.safetensors")
    return folder / "pipe.safetensors"


@register("extra", "a symlink to /dev/zero named .ckpt", r"is not a regular file \(a pipe, device or socket\)")
def dev_zero(folder: Path) -> Path:
    (folder / "zero.ckpt").symlink_to("/dev/zero")
    return folder / "zero.ckpt"


@register("extra", "a symlink to /dev/urandom named .pt", r"is not a regular file")
def dev_urandom(folder: Path) -> Path:
    (folder / "random.pt").symlink_to("/dev/urandom")
    return folder / "random.pt"


@register("7", "a text file named .txt", r"is not a checkpoint convmigrate knows")
def text_txt(folder: Path) -> Path:
    """Migrated from tests/test_hardening.py."""
    return written(folder / "notes.txt", b"epoch 3: loss 0.25\n")
