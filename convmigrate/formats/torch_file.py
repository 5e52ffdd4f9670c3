"""torch.save files: recognise them, and choose the reader that opens them.

Every torch.save file is read without torch and without running its pickle: a zip (PyTorch >=
1.6) by `torch_zip`, the legacy format by `torch_legacy`; both read the pickle with
`pickle_reader` (allow-listed stand-ins, inert placeholders for everything else) and find the
state dict with `state_dict` (wrappers, whole models, `--select`).

`trust_pickle` is for the rare file whose tensors are themselves built by code the pickle names
(a custom tensor factory, a numpy array standing for a tensor): `torch_load` loads it with
torch.load(weights_only=False), which runs that code; it needs the `torch` extra. The pickle
is read inertly first all the same, so a file beyond the reader's bounds (one that would crash
Python's or torch's unpickler) never reaches torch.

    torch_file.read_torch -> torch_zip.read_torch_zip        (zip: records, data.pkl)
                          -> torch_legacy.read_torch_legacy  (pre-1.6: pickles, then storages)
                          -> torch_load.read_torch_load      (--trust-pickle: torch.load)
"""

from __future__ import annotations

from pathlib import Path

from convmigrate.entries import Checkpoint
from convmigrate.extras import require
from convmigrate.formats.torch_legacy import read_legacy_contents, read_torch_legacy
from convmigrate.formats.torch_zip import EMPTY_ZIP_MAGIC, ZIP_MAGIC, read_data_pickle, read_torch_zip

# torch's legacy (pre-1.6) format opens with pickle protocol 2 and a LONG1 magic number.
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
PICKLE_PROTO = b"\x80"


def sniff(path: Path, head: bytes) -> bool:
    """A zip (torch >= 1.6), or a pickle (the legacy format starts with protocol 2 and a magic)."""
    return head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC, TORCH_LEGACY_MAGIC, PICKLE_PROTO))


def read_torch(path: Path, *, trust_pickle: bool = False, select: str | None = None) -> Checkpoint:
    """Open a torch.save file (zip or legacy); nothing in its pickle runs unless `trust_pickle`.

    Args:
        path: the file.
        trust_pickle: load it with torch.load, running the code its pickle names (only for
            files you trust whose tensors are built by that code; needs the torch extra).
        select: the state dict to read in a file that holds several ("discriminator",
            "model.ema"); None: the automatic choice, noted.

    Example:
        >>> with read_torch(Path("fixtures/tiny_tcn.pt")) as ckpt:
        ...     [(t.name, t.shape) for t in ckpt.tensors()][:2]
        [('stem.weight', (8, 2, 3)), ('stem.bias', (8,))]
    """
    path = Path(path)
    with open(path, "rb") as stream:  # a zip by its first bytes, even when its directory is damaged
        zipped = stream.read(len(ZIP_MAGIC)) in (ZIP_MAGIC, EMPTY_ZIP_MAGIC)
    if not trust_pickle:
        return read_torch_zip(path, select=select) if zipped else read_torch_legacy(path, select=select)
    torch_load = require("convmigrate.formats.torch_load", "torch", "--trust-pickle")
    # Within every bound of the inert reader first: torch's own unpickler crashes on some files.
    read_data_pickle(path) if zipped else read_legacy_contents(path)
    return torch_load.read_torch_load(path, select=select)


__all__ = ["read_torch", "sniff"]
