"""`inspect` and `convert` through the real CLI, on files the real frameworks wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from convmigrate import __version__
from tests.conftest import run_console_script


def state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "enc.conv.weight": torch.randn(8, 4, 3),
        "enc.conv.bias": torch.randn(8),
        "enc.bn.running_var": torch.rand(8),
        "head.weight": torch.randn(3, 8).to(torch.bfloat16),
        "head.bias": torch.randn(3).to(torch.float16),
        "ids": torch.arange(5, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
    }


def hashes(cli, path) -> dict[str, tuple]:
    result = cli("inspect", path, "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    return {t["name"]: (tuple(t["shape"]), t["dtype"], t["sha256"]) for t in document["tensors"]}


def test_inspect_shows_format_dtypes_and_conv_candidates(cli, tmp_path):
    torch.save(state_dict(), tmp_path / "m.pt")
    result = cli("inspect", tmp_path / "m.pt")
    assert result.exit_code == 0
    assert "format pt" in result.stdout and "7 tensors" in result.stdout
    assert "bfloat16 x1" in result.stdout
    conv_line = next(line for line in result.stdout.splitlines() if "enc.conv.weight" in line)
    assert "Conv1d (PyTorch layout)" in conv_line
    document = json.loads(cli("inspect", tmp_path / "m.pt", "--json").stdout)
    assert document["format"] == "pt"
    row = next(t for t in document["tensors"] if t["name"] == "head.weight")
    assert row["dtype"] == "bfloat16" and row["shape"] == [3, 8] and len(row["sha256"]) == 64


def test_sha256_survives_every_format(cli, tmp_path):
    """pt -> ckpt -> ms-safetensors -> safetensors -> pt: same names, shapes, dtypes, bytes."""
    torch.save(state_dict(), tmp_path / "a.pt")
    chain = [("b.ckpt", None), ("c.safetensors", "ms-safetensors"), ("d.safetensors", "safetensors"), ("e.pt", None)]
    previous = tmp_path / "a.pt"
    for name, fmt in chain:
        args = ["convert", previous, "-o", tmp_path / name] + (["--format", fmt] if fmt else [])
        result = cli(*args)
        assert result.exit_code == 0, result.stderr
        previous = tmp_path / name
    expected = hashes(cli, tmp_path / "a.pt")
    for name, _fmt in chain:
        assert hashes(cli, tmp_path / name) == expected, name
    assert json.loads(cli("inspect", tmp_path / "c.safetensors", "--json").stdout)["format"] == "ms-safetensors"


def test_convert_to_ckpt_loads_in_mindspore_with_identical_bytes(ms, cli, tmp_path):
    state = state_dict()
    torch.save(state, tmp_path / "m.pt")
    assert cli("convert", tmp_path / "m.pt", "-o", tmp_path / "m.ckpt", "--crc").exit_code == 0
    loaded = ms.load_checkpoint(str(tmp_path / "m.ckpt"), crc_check=True)
    assert list(loaded) == list(state)
    for name, tensor in state.items():
        ours = loaded[name]
        if tensor.dtype == torch.bfloat16:  # compare bits: float32 holds every bfloat16 exactly
            np.testing.assert_array_equal(ours.float().asnumpy(), tensor.float().numpy())
        else:
            assert ours.asnumpy().tobytes() == tensor.numpy().tobytes(), name


def test_convert_mindspore_checkpoint_to_pt_keeps_values(ms, cli, tmp_path):
    params = [{"name": "conv.weight", "data": ms.Tensor(np.arange(24, dtype=np.float32).reshape(2, 3, 1, 4))},
              {"name": "step", "data": ms.Tensor(np.array(7, dtype=np.int64))}]
    ms.save_checkpoint(params, str(tmp_path / "m.ckpt"), crc_check=True, append_dict={"note": "hello"})
    result = cli("convert", tmp_path / "m.ckpt", "-o", tmp_path / "m.pt")
    assert result.exit_code == 0, result.stderr
    loaded = torch.load(tmp_path / "m.pt", weights_only=True)
    assert loaded["conv.weight"].shape == (2, 3, 1, 4)  # convert never reshapes
    assert torch.equal(loaded["conv.weight"], torch.arange(24, dtype=torch.float32).reshape(2, 3, 1, 4))
    assert loaded["note"] == "hello" and int(loaded["step"]) == 7


def test_ms_safetensors_loads_in_mindspore(ms, cli, tmp_path):
    torch.save({"w": torch.randn(4, 2, 1, 3)}, tmp_path / "m.pt")
    assert cli("convert", tmp_path / "m.pt", "-o", tmp_path / "m.safetensors", "--format", "ms-safetensors").exit_code == 0
    loaded = ms.load_checkpoint(str(tmp_path / "m.safetensors"), format="safetensors")
    np.testing.assert_array_equal(loaded["w"].asnumpy(), torch.load(tmp_path / "m.pt")["w"].numpy())


def test_existing_output_needs_force_and_input_is_never_overwritten(cli, tmp_path):
    torch.save(state_dict(), tmp_path / "m.pt")
    (tmp_path / "out.ckpt").write_bytes(b"old")
    refused = cli("convert", tmp_path / "m.pt", "-o", tmp_path / "out.ckpt")
    assert refused.exit_code == 2 and "--force" in refused.stderr
    assert (tmp_path / "out.ckpt").read_bytes() == b"old"
    assert cli("convert", tmp_path / "m.pt", "-o", tmp_path / "out.ckpt", "--force").exit_code == 0
    same = cli("convert", tmp_path / "m.pt", "-o", tmp_path / "m.pt", "--format", "pt", "--force")
    assert same.exit_code == 2 and "input" in same.stderr


def test_format_is_judged_by_content_not_extension(cli, tmp_path):
    torch.save(state_dict(), tmp_path / "m.pt")
    assert cli("convert", tmp_path / "m.pt", "-o", tmp_path / "weights.dat", "--format", "ckpt").exit_code == 0
    assert json.loads(cli("inspect", tmp_path / "weights.dat", "--json").stdout)["format"] == "ckpt"


def test_unknown_output_extension_asks_for_format(cli, tmp_path):
    torch.save(state_dict(), tmp_path / "m.pt")
    result = cli("convert", tmp_path / "m.pt", "-o", tmp_path / "m.weird")
    assert result.exit_code == 2 and "--format" in result.stderr


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_console_script_basics(args):
    result = run_console_script(*args)
    assert result.exit_code == 0
    assert (__version__ in result.stdout) if args == ["--version"] else ("torch2ms" in result.stdout)


def test_errors_are_one_line_with_exit_code_2(tmp_path):
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    result = run_console_script("inspect", tmp_path / "notes.txt")
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "notes.txt" in result.stderr
    assert "Traceback" not in result.stderr


def test_detection_asks_in_the_order_of_format_whatever_the_order_of_the_rows(tmp_path, monkeypatch):
    """vocab says detection follows `Format` (safetensors before torch); a new FORMATS row appended
    at the end must not change that (it did: detection walked the rows)."""
    from safetensors.numpy import save_file

    from convmigrate.formats import detect
    from convmigrate.vocab import FORMATS, Format

    path = tmp_path / "m.safetensors"  # a header of 0x180 bytes: the file's first byte is pickle's 0x80
    save_file({"w": np.ones(2, np.float32)}, str(path), metadata={"pad": ""})
    unpadded = len(path.read_bytes()[8:].split(b"}}")[0]) + 2
    save_file({"w": np.ones(2, np.float32)}, str(path), metadata={"pad": "x" * (0x180 - unpadded)})
    assert path.read_bytes()[:1] == b"\x80"
    assert detect.detect_format(path) is Format.SAFETENSORS
    monkeypatch.setattr(detect, "FORMATS", dict(reversed(FORMATS.items())))
    assert detect.detect_format(path) is Format.SAFETENSORS
