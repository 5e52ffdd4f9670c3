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


@register("fuzz", "a zip entry that needs zip version 25.5 (zipfile raised NotImplementedError)", r"its pickle is damaged",
          requires=("torch",))
def zip_version(folder: Path) -> Path:
    """Found by the torch-zip target: "version needed to extract" 255 in the central directory
    ("unexpected NotImplementedError"); now the torch-free reader hands the file to torch.load,
    which reads such a zip, and refuses this one for its damaged pickle."""
    path = torch_zip(folder / "zipver.pt", b"\x80\x02damaged")
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")
    data[central + 6 : central + 8] = struct.pack("<H", 255)  # version needed to extract: 25.5
    path.write_bytes(bytes(data))
    return path


@register("fuzz", "a pickle memo index of 1 275 750 499 (the unpickler allocates ~10 GB for its memo)",
          r"memo|pickle|damaged", known_failure="pickle: the unpickler's memo is unbounded (issue 12, pickle cases)")
def pickle_memo_index(folder: Path) -> Path:
    """Found by the pickle target: LONG_BINPUT 1275750499 after one object."""
    return torch_zip(folder / "memo.pt", b"\x80\x02}r" + struct.pack("<I", 1_275_750_499) + b".")


@register("fuzz", "a pickle BYTEARRAY8 of 2^63 bytes (the unpickler raised OverflowError)", r"its pickle is damaged",
          requires=("torch",))
def pickle_bytearray8_overflow(folder: Path) -> Path:
    """Found by the pickle target ("unexpected OverflowError"); now torch.load judges the file."""
    return torch_zip(folder / "overflow.pt", b"\x80\x05\x96" + struct.pack("<Q", 1 << 63) + b".")
