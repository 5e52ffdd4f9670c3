"""NeMo archives (issue 13): a tar (plain or gzipped) holding model_weights.ckpt and model_config.yaml.

Built as NeMo builds them (tarfile around a folder, `tar.add(folder, arcname=".")`) around a
real torch.save checkpoint; NeMo itself is not needed. The tensors must be the checkpoint's,
bit for bit, through the real CLI; a plain tar is read in place (the bytes come from the .nemo
itself, no temporary file), a gzipped one through an anonymous temporary file that nothing can
see and nothing leaves behind.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest
import torch

from convmigrate.formats import open_checkpoint
from convmigrate.vocab import Format
from tests.test_nemo_without_torch import nemo_archive as archive_around


def state() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "encoder.pre_encode.conv.0.weight": torch.randn(16, 1, 3, generator=generator),
        "encoder.pre_encode.conv.0.bias": torch.randn(16, generator=generator),
        "encoder.layers.0.conv.depthwise_conv.weight": torch.randn(16, 1, 31, generator=generator),
        "encoder.layers.0.norm.weight": torch.ones(16, dtype=torch.bfloat16),
        "decoder.decoder_layers.0.weight": torch.randn(29, 16, 1, generator=generator),
        "decoder.num_batches": torch.tensor(7),
    }


def nemo_archive(folder: Path, mode: str, tar_format: int = tarfile.GNU_FORMAT) -> Path:
    """What NeMo's save_to writes, around a torch.save of state()."""
    return archive_around(folder, mode, tar_format, lambda path: torch.save(state(), path))


def torch_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


@pytest.mark.parametrize(("mode", "tar_format"), [("w", tarfile.GNU_FORMAT), ("w", tarfile.PAX_FORMAT), ("w:gz", tarfile.GNU_FORMAT)])
def test_nemo_archives_read_like_their_checkpoint(cli, tmp_path, mode, tar_format):
    path = nemo_archive(tmp_path, mode, tar_format)
    result = cli("inspect", path, "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    shown = json.loads(result.stdout)
    assert shown["format"] == "nemo"
    expected = state()
    assert [t["name"] for t in shown["tensors"]] == list(expected)
    with open_checkpoint(path) as checkpoint:
        assert checkpoint.format is Format.NEMO
        for entry in checkpoint.tensors():
            assert entry.raw_bytes() == torch_bytes(expected[entry.name]), entry.name
        assert any("model_config.yaml" in note for note in checkpoint.notes), checkpoint.notes


def test_a_plain_archive_is_read_in_place(tmp_path):
    path = nemo_archive(tmp_path, "w")
    with open_checkpoint(path) as checkpoint:
        weight = checkpoint.tensors()[0]
        ((file, offset, length),) = weight.extents(0, weight.nbytes)
        assert file.path == path and length == weight.nbytes
        with open(path, "rb") as stream:  # the bytes at that offset of the .nemo itself
            stream.seek(offset)
            assert stream.read(length) == torch_bytes(state()[weight.name])
        assert any("read in place" in note for note in checkpoint.notes)


def test_a_gzipped_archive_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = nemo_archive(tmp_path, "w:gz")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    monkeypatch.setattr("tempfile.tempdir", None)  # TMPDIR is read again
    with open_checkpoint(path) as checkpoint:
        assert list(temporary.iterdir()) == []  # an anonymous file: nothing to see, nothing to delete
        assert checkpoint.tensors()[0].extents(0, 8) is not None  # ... but a real file: kernel copies work
        open_fds = len(os.listdir("/proc/self/fd"))
    assert len(os.listdir("/proc/self/fd")) < open_fds  # closing the checkpoint freed it


def test_torch2ms_and_convert_of_a_nemo_equal_those_of_its_checkpoint(cli, tmp_path):
    for mode in ("w", "w:gz"):
        path = nemo_archive(tmp_path, mode)
        assert cli("torch2ms", path, "-o", tmp_path / f"{mode}.ckpt", "--quiet").exit_code == 0
        assert cli("convert", path, "-o", tmp_path / f"{mode}.safetensors", "--quiet").exit_code == 0
    assert cli("torch2ms", tmp_path / "model" / "model_weights.ckpt", "-o", tmp_path / "direct.ckpt", "--quiet").exit_code == 0
    assert cli("convert", tmp_path / "model" / "model_weights.ckpt", "-o", tmp_path / "direct.safetensors", "--quiet").exit_code == 0
    for suffix in (".ckpt", ".safetensors"):
        direct = (tmp_path / f"direct{suffix}").read_bytes()
        assert (tmp_path / f"w{suffix}").read_bytes() == direct
        assert (tmp_path / f"w:gz{suffix}").read_bytes() == direct


def test_nemo_is_read_only(cli, tmp_path):
    source = tmp_path / "model.pt"
    torch.save(state(), source)
    result = cli("convert", source, "-o", tmp_path / "out.nemo")
    assert result.exit_code == 2
    assert "error:" in result.stderr and "out.nemo" in result.stderr


def test_select_chooses_a_state_dict_in_a_nemo_and_trust_pickle_is_refused(cli, tmp_path):
    """model_weights.ckpt is a torch.save file: --select works on it as on any; --trust-pickle
    (torch.load) cannot run inside an archive, so it says what to do instead of being ignored."""
    tables = {"model": state(), "ema": {name: tensor + 1 for name, tensor in state().items()}}
    path = archive_around(tmp_path, "w", tarfile.GNU_FORMAT, lambda weights: torch.save(tables, weights))
    result = cli("inspect", path, "--select", "ema", "--json")
    assert result.exit_code == 0, result.stderr
    with open_checkpoint(path, select="ema") as checkpoint:
        for entry in checkpoint.tensors():
            assert entry.raw_bytes() == torch_bytes(tables["ema"][entry.name]), entry.name
    missing = cli("inspect", path, "--select", "generator")
    assert missing.exit_code == 2 and "ema" in missing.stderr and "model" in missing.stderr
    trusted = cli("inspect", path, "--trust-pickle")
    assert trusted.exit_code == 2 and "extract its model_weights.ckpt" in trusted.stderr
