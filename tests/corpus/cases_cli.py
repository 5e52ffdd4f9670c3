"""Names and values that attack the terminal, inside files that are refused (issue 12, cases
9-11): the one error line shows them escaped, whatever command reads the file.

Files that read fine but carry such names are not refusals: tests/test_cli_output.py checks that
every command prints them escaped and exits 0.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from tests.corpus import register
from tests.corpus.build import ckpt_value, written


def safetensors(path: Path, header: dict, data: bytes) -> Path:
    encoded = json.dumps(header).encode()  # a lone surrogate is written as the JSON escape \ud800
    return written(path, struct.pack("<Q", len(encoded)) + encoded + data)


@register("12.10", "a .ckpt tag with an ESC sequence and a newline forging an error row, of an unknown type",
          r"tensor 'conv\\x1b\[31m\.weight\\nerror: forged' has tensor_type 'Float99'")
def ckpt_tag_with_escape_sequences(folder: Path) -> Path:
    return written(folder / "esc.ckpt", ckpt_value("conv\x1b[31m.weight\nerror: forged", [2, 2], "Float99", b"\0" * 16))


@register("12.10", "a safetensors name and dtype with terminal title (OSC) and clear-screen sequences",
          r"tensor 'w\\x1b\]0;pwned\\x07' has dtype '\\x1b\[2JX9'")
def safetensors_osc_sequences(folder: Path) -> Path:
    header = {"w\x1b]0;pwned\x07": {"dtype": "\x1b[2JX9", "shape": [2], "data_offsets": [0, 8]}}
    return safetensors(folder / "osc.safetensors", header, b"\0" * 8)


@register("12.11", "a safetensors name with a lone surrogate (not Unicode: refused, as the safetensors library does)",
          r"a string holds a lone UTF-16 surrogate escape \(\\ud800-\\udfff\), which is not Unicode")
def safetensors_lone_surrogate(folder: Path) -> Path:
    header = {"w\ud800.weight": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}
    return safetensors(folder / "surrogate.safetensors", header, b"\0" * 8)


@register("12.9", "a safetensors name of rich markup ([/] closes nothing), its data range too short",
          r"tensor '\[/\]\[bold red\]w\[/bold red\]'")
def safetensors_markup_name(folder: Path) -> Path:
    header = {"[/][bold red]w[/bold red]": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}
    return safetensors(folder / "markup.safetensors", header, b"\0" * 8)
