"""Which format an output is written in: --format, the output's extension, the direction.

Issue 11, case 4: `ms2torch -o model.safetensors` wrote a torch zip under that name and
`torch2ms -o model.safetensors` a protobuf; the extension now decides, and a contradiction is a
usage error (exit 2) that names the output.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from convmigrate.errors import UsageError
from convmigrate.formats.naming import default_output, format_for_output
from convmigrate.vocab import Format, Framework

T, M = Framework.TORCH, Framework.MINDSPORE


@pytest.mark.parametrize(
    "output, requested, framework, expected",
    [
        ("m.safetensors", None, M, Format.MS_SAFETENSORS),  # torch2ms: MindSpore's flavour
        ("m.safetensors", None, T, Format.SAFETENSORS),  # ms2torch: plain safetensors
        ("m.ckpt", None, M, Format.CKPT),
        ("m.pth", None, T, Format.TORCH),
        ("m.bin", None, T, Format.TORCH),
        ("m.weights", None, M, Format.CKPT),  # an unknown extension: the target's default
        ("m.weights", None, T, Format.TORCH),
        ("m.safetensors", "safetensors", M, Format.MS_SAFETENSORS),  # "safetensors" is the target's flavour
        ("m.weights", "safetensors", T, Format.SAFETENSORS),
        ("m.safetensors", "ms-safetensors", None, Format.MS_SAFETENSORS),  # convert writes any format
        ("m.safetensors", None, None, Format.SAFETENSORS),
        ("m.dat", "ckpt", None, Format.CKPT),
    ],
)
def test_output_format(output: str, requested: str | None, framework: Framework | None, expected: Format) -> None:
    assert format_for_output(Path(output), requested, framework) is expected


@pytest.mark.parametrize(
    "output, requested, framework, message",
    [
        ("m.pt", None, M, r"m\.pt: \.pt names a torch\.save file, but this command writes mindspore checkpoints"),
        ("m.ckpt", None, T, r"m\.ckpt: \.ckpt names a MindSpore \.ckpt file"),
        ("m.safetensors", "ckpt", M, r"--format ckpt writes MindSpore \.ckpt files, but the name ends in \.safetensors"),
        ("m.ckpt", "pt", None, r"--format pt writes torch\.save files, but the name ends in \.ckpt"),
        ("m.ckpt", "pt", M, r"--format pt is not one this command writes"),
        ("m.dat", None, None, r"cannot tell the format from \.dat"),
        ("m.ckpt", "onnx", None, r"--format onnx is not one this command writes"),
    ],
)
def test_contradictions_are_usage_errors(output: str, requested: str | None, framework: Framework | None,
                                         message: str) -> None:
    with pytest.raises(UsageError, match=message):
        format_for_output(Path(output), requested, framework)


def test_default_output_never_names_the_input(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"x")
    assert default_output(tmp_path / "model.pt", Format.CKPT) == tmp_path / "model.ckpt"
    assert default_output(tmp_path / "model.safetensors", Format.MS_SAFETENSORS) == tmp_path / "model.ms.safetensors"
    assert default_output(tmp_path / "m.safetensors.index.json", Format.CKPT) == tmp_path / "m.ckpt"


@pytest.mark.parametrize("command, output, written", [
    ("torch2ms", "out.safetensors", "ms-safetensors"),
    ("torch2ms", "out.ckpt", "ckpt"),
])
def test_migration_writes_what_the_name_says(cli, tmp_path: Path, command: str, output: str, written: str) -> None:
    torch.save({"conv.weight": torch.randn(4, 2, 3), "conv.bias": torch.randn(4)}, tmp_path / "m.pt")
    assert cli(command, tmp_path / "m.pt", "-o", tmp_path / output, "-q").exit_code == 0
    import json

    assert json.loads(cli("inspect", tmp_path / output, "--json").stdout)["format"] == written
    back = cli("ms2torch", tmp_path / output, "-o", tmp_path / "back.safetensors", "-q")
    assert back.exit_code == 0
    assert json.loads(cli("inspect", tmp_path / "back.safetensors", "--json").stdout)["format"] == "safetensors"


def test_migration_refuses_a_name_of_the_other_framework(cli, tmp_path: Path) -> None:
    torch.save({"conv.weight": torch.randn(4, 2, 3)}, tmp_path / "m.pt")
    result = cli("torch2ms", tmp_path / "m.pt", "-o", tmp_path / "out.pt")
    assert result.exit_code == 2 and "out.pt: .pt names a torch.save file" in result.stderr
    assert not (tmp_path / "out.pt").exists()
