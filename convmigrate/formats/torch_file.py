"""torch.save files: recognise them, and choose the reader that opens them.

A zip (PyTorch >= 1.6) holding a plain state dict is read without torch by `torch_zip`;
everything else goes to `torch_load` (torch.load with weights_only, imported only then).

    torch_file.read_torch -> torch_zip.read_torch_zip    (data.pkl via pickle_reader, state_dict)
                          -> torch_load.read_torch_load  (torch.load(weights_only=True))
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from convmigrate.entries import Checkpoint
from convmigrate.formats.torch_zip import EMPTY_ZIP_MAGIC, ZIP_MAGIC, read_torch_zip

# torch's legacy (pre-1.6) format opens with pickle protocol 2 and a LONG1 magic number.
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
PICKLE_PROTO = b"\x80"


def sniff(path: Path, head: bytes) -> bool:
    """A zip (torch >= 1.6), or a pickle (the legacy format starts with protocol 2 and a magic)."""
    return head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC, TORCH_LEGACY_MAGIC, PICKLE_PROTO))


def read_torch(path: Path, *, trust_pickle: bool = False) -> Checkpoint:
    """Open a torch.save file: without torch when it is a plain state dict, else via torch.load.

    Example:
        >>> with read_torch(Path("model.pt")) as checkpoint:                # doctest: +SKIP
        ...     print(len(checkpoint.entries))
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        checkpoint = read_torch_zip(path)
        if checkpoint is not None:
            return checkpoint
    from convmigrate.formats.torch_load import read_torch_load  # imports torch: only when needed

    return read_torch_load(path, trust_pickle=trust_pickle)


__all__ = ["read_torch", "sniff"]
