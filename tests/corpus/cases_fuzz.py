"""Inputs the coverage-guided fuzzer (tests/fuzz) found crashing a reader, kept as corpus cases.

Each is the smallest file that shows the finding, written out by hand from the crashing input.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

from tests.corpus import register


def torch_zip(path: Path, data_pkl: bytes, **member: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/version", "3\n")
        for name, data in member.items():
            archive.writestr(f"archive/{name}", data)
    return path


@register("fuzz", "a zip entry that needs zip version 25.5 (zipfile raised NotImplementedError)", r"is a damaged zip|the pickle is damaged")
def zip_version(folder: Path) -> Path:
    """Found by the torch-zip target: "version needed to extract" 255 in the central directory
    ("unexpected NotImplementedError"); miniz ignores the field, as we do: the damaged pickle, in one line."""
    path = torch_zip(folder / "zipver.pt", b"\x80\x02damaged")
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")
    data[central + 6 : central + 8] = struct.pack("<H", 255)  # version needed to extract: 25.5
    path.write_bytes(bytes(data))
    return path


@register("fuzz", "a pickle memo index of 1 275 750 499 (the unpickler allocated ~10 GB for its memo)",
          r"holds no tensors|no tensors", accepted=True)
def pickle_memo_index(folder: Path) -> Path:
    """Found by the pickle target: LONG_BINPUT 1275750499 after one object. The memo holds only
    the entries stored now (PICKLE_MAX_MEMO bounds their number), so this is an empty dict."""
    return torch_zip(folder / "memo.pt", b"\x80\x02}r" + struct.pack("<I", 1_275_750_499) + b".")


@register("fuzz", "a pickle BYTEARRAY8 of 2^63 bytes (the unpickler raised OverflowError)",
          r"claims 9,223,372,036,854,775,808 bytes at byte \d+, where 1 remain")
def pickle_bytearray8_overflow(folder: Path) -> Path:
    """Found by the pickle target ("unexpected OverflowError"); the claim is checked against what remains."""
    return torch_zip(folder / "overflow.pt", b"\x80\x05\x96" + struct.pack("<Q", 1 << 63) + b".")
