""".nemo archives read without torch (issue 13): `pip install convmigrate` reads NeMo's weights.

The archives are built as NeMo's save_to builds them (tarfile around the model folder, added as
".") around a checkpoint real torch wrote (fixtures/tiny_tcn.pt); every command runs in a process
where torch cannot be imported (tests/test_torch_optional.py), and CI's torch-free run has none.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_torch_optional import FIXTURES, convmigrate_without_torch, described, tensors_of


def tiny_tcn(path: Path) -> None:
    shutil.copyfile(FIXTURES / "tiny_tcn.pt", path)


def nemo_archive(folder: Path, mode: str, tar_format: int = tarfile.GNU_FORMAT,
                 write_weights: Callable[[Path], None] = tiny_tcn) -> Path:
    """What NeMo's save_to writes: the model folder added to a tar as "."."""
    model = folder / "model"
    model.mkdir(exist_ok=True)
    write_weights(model / "model_weights.ckpt")
    (model / "model_config.yaml").write_text("encoder:\n  feat_in: 80\n")
    (model / "tokenizer.model").write_bytes(b"\x00sentencepiece" * 50)
    path = folder / f"model{'.gz' if 'gz' in mode else ''}.nemo"
    with tarfile.open(path, mode, format=tar_format) as tar:
        tar.add(model, arcname=".")
    return path


@pytest.mark.parametrize(("mode", "tar_format"), [("w", tarfile.GNU_FORMAT), ("w", tarfile.PAX_FORMAT), ("w:gz", tarfile.GNU_FORMAT)])
def test_a_nemo_archive_reads_like_its_checkpoint_without_torch(tmp_path: Path, mode: str, tar_format: int) -> None:
    path = nemo_archive(tmp_path, mode, tar_format)
    shown = described(path)
    assert shown["format"] == "nemo"
    expected = tensors_of(described(FIXTURES / "tiny_tcn.pt"))
    assert tensors_of(shown) == expected and list(tensors_of(shown)) == list(expected)
    how = "inflated to a temporary file" if "gz" in mode else "read in place"
    assert any(how in note and "model_config.yaml" in note for note in shown["notes"]), shown["notes"]


def test_convert_of_a_nemo_writes_what_convert_of_its_checkpoint_writes(tmp_path: Path) -> None:
    for mode in ("w", "w:gz"):
        path = nemo_archive(tmp_path, mode, tarfile.GNU_FORMAT)
        result = convmigrate_without_torch("convert", path, "-o", tmp_path / f"{mode}.safetensors", "-q")
        assert result.returncode == 0, result.stderr
    result = convmigrate_without_torch("convert", FIXTURES / "tiny_tcn.pt", "-o", tmp_path / "direct.safetensors", "-q")
    assert result.returncode == 0, result.stderr
    direct = (tmp_path / "direct.safetensors").read_bytes()
    assert (tmp_path / "w.safetensors").read_bytes() == direct
    assert (tmp_path / "w:gz.safetensors").read_bytes() == direct


def test_a_hostile_nemo_is_one_line_without_torch(tmp_path: Path) -> None:
    path = nemo_archive(tmp_path, "w", tarfile.GNU_FORMAT)
    with tarfile.open(path, "a") as tar:  # what NeMo never writes: a link leaving the archive
        link = tarfile.TarInfo("./tokenizer.vocab")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    result = convmigrate_without_torch("inspect", path, "--json")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "member './tokenizer.vocab' links to '/etc/passwd', outside the archive" in result.stderr
    assert json.dumps(str(path))[1:-1] in result.stderr or str(path) in result.stderr
