"""Moved tensor bytes are compared while the output is written (verify/written.py), and that
comparison stands only for the bytes the reader later finds in that very place.

A migration's verdict may rest on it only because the writers never write anywhere but at the
end: the first test holds every writer to that, the others damage bytes on their way and check
that the damage is named.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import torch

from convmigrate.entries import TensorEntry
from convmigrate.formats import bytecopy, checkpoint_writer, open_checkpoint
from convmigrate.verify import written
from convmigrate.vocab import Format


class AppendOnly(io.BufferedWriter):
    """A file stream that refuses to move anywhere but where it is."""

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if (offset, whence) != (0, os.SEEK_CUR) and offset != self.tell():
            raise AssertionError(f"a writer moved back in its output: seek({offset}, {whence})")
        return super().seek(offset, whence)


@pytest.mark.parametrize("fmt", [f for f in Format if f.spec.writer is not None])
def test_every_writer_only_appends(tmp_path, fmt):
    rng = np.random.default_rng(0)
    entries = [TensorEntry.from_array("big.weight", rng.standard_normal((512, 256, 3), dtype=np.float32)),
               TensorEntry.from_array("small.bias", rng.standard_normal(8, dtype=np.float32))]
    source = tmp_path / "source.safetensors"
    with open(source, "wb") as stream:
        checkpoint_writer(Format.SAFETENSORS)(stream, entries)  # read back, file-backed: the kernel path runs

    reported = []
    with open_checkpoint(source) as checkpoint, bytecopy.observed_copies(lambda *args: reported.append(args[1:3])):
        with AppendOnly(io.FileIO(tmp_path / "out", "w")) as stream:
            checkpoint_writer(fmt)(stream, checkpoint.entries)
    assert (0, 512 * 256 * 3 * 4) in reported or sum(stop - start for start, stop in reported) == 512 * 256 * 3 * 4


def big_model_file(tmp_path):
    torch.manual_seed(0)
    state = {"enc.conv.weight": torch.randn(256, 256, 5), "enc.conv.bias": torch.randn(256),
             "enc.proj.weight": torch.randn(512, 512), "enc.proj.bias": torch.randn(512)}
    torch.save(state, tmp_path / "model.pt")
    return tmp_path / "model.pt"


@pytest.mark.parametrize("name", ["enc.conv.weight", "enc.proj.weight"])
def test_bytes_the_copy_damaged_are_named_from_the_comparison_made_while_writing(cli, tmp_path, monkeypatch, name):
    """One byte of a tensor changed in the output right after the writer copied it (the way a
    wrong offset in the copy would): its check fails, named; every other tensor passes."""
    copy = bytecopy.TensorBytesWriter._file_copy

    def damaging(self, entry, position, extent, on_bytes, checksum):
        copied = copy(self, entry, position, extent, on_bytes, checksum)
        if entry.name == name:
            os.pwrite(self.fd, b"\x7f", os.lseek(self.fd, 0, os.SEEK_CUR) - 7)  # a byte of the copy, overwritten
        return copied

    monkeypatch.setattr(bytecopy.TensorBytesWriter, "_file_copy", damaging)
    answers = []
    proven = written.WrittenBytes.proven
    monkeypatch.setattr(written.WrittenBytes, "proven",
                        lambda self, n, entry: answers.append((n, proven(self, n, entry))) or answers[-1][1])
    result = cli("torch2ms", big_model_file(tmp_path), "-o", tmp_path / "model.ckpt", "--report", tmp_path / "r.json")
    assert result.exit_code == 1
    assert f"verification failed for {name}" in result.stderr
    assert (name, False) in answers  # known from the comparison made while writing
    assert not (tmp_path / "model.ckpt").exists()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["failures"] == [f"{name} (layer {name.rsplit('.', 1)[0]})"]


def test_an_undamaged_migration_is_proven_by_the_comparison_made_while_writing(cli, tmp_path, monkeypatch):
    answers = []
    proven = written.WrittenBytes.proven
    monkeypatch.setattr(written.WrittenBytes, "proven",
                        lambda self, n, entry: answers.append((n, proven(self, n, entry))) or answers[-1][1])
    result = cli("torch2ms", big_model_file(tmp_path), "-o", tmp_path / "model.ckpt")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert ("enc.conv.weight", True) in answers and ("enc.proj.weight", True) in answers
    assert ("enc.conv.bias", True) in answers  # small: compared once flushed, before the next big copy


def test_a_small_tensor_damaged_in_the_stream_is_named_from_the_comparison_made_while_writing(cli, tmp_path,
                                                                                           monkeypatch):
    """Small tensors go through the buffered stream and are compared once a flush put them in the
    file (before the next big copy): a byte of enc.conv.bias changed there is named."""
    copy = bytecopy.TensorBytesWriter._file_copy

    def damaging(self, entry, position, extent, on_bytes, checksum):
        names = [written[0].name for written in self.unflushed]
        if "enc.conv.bias" in names:
            self.stream.flush()
            os.pwrite(self.fd, b"\x7f", self.unflushed[names.index("enc.conv.bias")][3] + 5)
        return copy(self, entry, position, extent, on_bytes, checksum)

    monkeypatch.setattr(bytecopy.TensorBytesWriter, "_file_copy", damaging)
    answers = []
    proven = written.WrittenBytes.proven
    monkeypatch.setattr(written.WrittenBytes, "proven",
                        lambda self, n, entry: answers.append((n, proven(self, n, entry))) or answers[-1][1])
    result = cli("torch2ms", big_model_file(tmp_path), "-o", tmp_path / "model.ckpt")
    assert result.exit_code == 1
    assert "verification failed for enc.conv.bias (layer enc.conv)" in result.stderr
    assert ("enc.conv.bias", False) in answers and ("enc.conv.weight", True) in answers
