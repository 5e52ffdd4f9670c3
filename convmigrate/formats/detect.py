"""Recognise a checkpoint's format from its first bytes, not its file name.

A `.bin` may be a torch zip, a legacy pickle or something else entirely; a `.ckpt` may be
encrypted. Each format's module has a sniffer (named in `vocab.FORMATS`) that looks at the
first bytes; detection asks them in the order of `Format`. The extension is only used to
name a format in an error message.
"""

from __future__ import annotations

import importlib
import os
import stat
from pathlib import Path

from convmigrate.errors import UnreadableCheckpointError
from convmigrate.vocab import FORMATS, Format

HEAD_BYTES = 64  # what a sniffer sees of the file


def load(location: str):  # -> a reader, writer or sniffer named "module:function"
    """The function a `vocab.FORMATS` row names, importing its module on first use."""
    module_name, function = location.split(":")
    return getattr(importlib.import_module(module_name), function)


def _read_head(path: Path) -> bytes:
    """The first bytes of a regular file; a FIFO, device or socket is refused, never read.

    Opened non-blocking: opening a FIFO for reading would otherwise wait for a writer forever.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnreadableCheckpointError(path, f"cannot be read ({exc.strerror})") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnreadableCheckpointError(path, "is not a regular file (a pipe, device or socket); give a checkpoint file")
        return os.pread(fd, HEAD_BYTES, 0) if hasattr(os, "pread") else os.read(fd, HEAD_BYTES)
    except OSError as exc:
        raise UnreadableCheckpointError(path, f"cannot be read ({exc.strerror})") from exc
    finally:
        os.close(fd)


def detect_format(path: Path) -> Format:
    """The format of the checkpoint at `path`, judged by content.

    Raises UnreadableCheckpointError naming the problem for anything that is not a checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        raise UnreadableCheckpointError(path, "is a directory; give a checkpoint file (or a *.safetensors.index.json)")
    if not path.exists():
        raise UnreadableCheckpointError(path, "no such file")
    head = _read_head(path)
    if not head:
        raise UnreadableCheckpointError(path, "is empty (0 bytes); it holds no checkpoint")
    for fmt in Format:  # in the order of `Format` (as vocab says), not of the FORMATS rows
        sniffer = FORMATS[fmt].sniffer
        if sniffer is not None and load(sniffer)(path, head):
            return fmt
    known = ", ".join(spec.label for spec in FORMATS.values() if spec.sniffer is not None)
    raise UnreadableCheckpointError(path, f"is not a checkpoint convmigrate knows ({known})")
