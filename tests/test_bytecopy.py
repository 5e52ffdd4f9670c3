"""Tensor bytes copied file to file (os.copy_file_range, or pread + write through a bounce
buffer), the fallbacks, and durable outputs.

The migrations below move multi-MiB tensors, so the file-to-file paths are the ones taken; the
frameworks then read the results. Counting the bytes through the real calls shows which path
ran; forcing them to fail shows the plain writes give the same bytes.
"""

from __future__ import annotations

import errno
import io
import os
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from convmigrate.entries import TensorEntry
from convmigrate.errors import WriteError
from convmigrate.formats import atomic as atomic_module
from convmigrate.formats import open_checkpoint, write_checkpoint
from convmigrate.formats.atomic import atomic_output
from convmigrate.formats.bytecopy import KERNEL_COPY_MIN_BYTES, TensorBytesWriter
from convmigrate.vocab import Format

REAL_COPY = os.copy_file_range


def big_state() -> dict[str, torch.Tensor]:
    """A few Conv1d layers whose weights are over the kernel-copy threshold, plus small tensors."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for index, (c_out, c_in, k) in enumerate([(256, 256, 5), (128, 64, 33), (64, 64, 3)]):
        state[f"convs.{index}.weight"] = torch.randn(c_out, c_in, k, generator=generator)
        state[f"convs.{index}.bias"] = torch.randn(c_out, generator=generator)
    state["proj.weight"] = torch.randn(300, 1000, generator=generator)  # ~1.1 MiB, a Linear
    return state


REAL_WRITE = os.write


@pytest.fixture
def copies(monkeypatch):
    """Bytes moved file to file while the test runs: by the kernel, and through the bounce buffer
    (whose writes are the only os.write calls: streams write through their own FileIO)."""
    moved = {"kernel": 0, "bounce": 0}

    def kernel(*args):
        count = REAL_COPY(*args)
        moved["kernel"] += count
        return count

    def bounce(*args):
        count = REAL_WRITE(*args)
        moved["bounce"] += count
        return count

    monkeypatch.setattr(os, "copy_file_range", kernel)
    monkeypatch.setattr(os, "write", bounce)
    return moved


def big_bytes(state: dict[str, torch.Tensor]) -> int:
    return sum(t.nbytes for t in state.values() if t.nbytes >= KERNEL_COPY_MIN_BYTES)


def test_torch2ms_copies_file_to_file_and_mindspore_reads_the_result(ms, cli, tmp_path, copies):
    state = big_state()
    torch.save(state, tmp_path / "model.pt")
    result = cli("torch2ms", tmp_path / "model.pt", "-o", tmp_path / "model.ckpt", "--crc", "--quiet")
    assert result.exit_code == 0, result.stdout + result.stderr
    # A .ckpt puts contents at offsets unrelated to the .pt's: the bounce buffer carries them.
    assert copies["bounce"] + copies["kernel"] >= big_bytes(state) and copies["bounce"] > 0
    loaded = ms.load_checkpoint(str(tmp_path / "model.ckpt"), crc_check=True)  # the CRC ran on a thread
    for index in range(3):
        weight = state[f"convs.{index}.weight"].numpy()
        np.testing.assert_array_equal(loaded[f"convs.{index}.weight"].asnumpy(), weight[:, :, None, :])
    np.testing.assert_array_equal(loaded["proj.weight"].asnumpy(), state["proj.weight"].numpy())


def test_same_offsets_within_a_page_are_copied_by_the_kernel(cli, tmp_path, copies):
    """A .pt rewritten as a .pt keeps every record where it was: copy_file_range serves it."""
    state = big_state()
    torch.save(state, tmp_path / "model.pt")
    assert cli("convert", tmp_path / "model.pt", "-o", tmp_path / "copy.pt", "--quiet").exit_code == 0
    assert copies["kernel"] >= big_bytes(state) and copies["bounce"] == 0
    back = torch.load(tmp_path / "copy.pt", weights_only=True)
    assert all(torch.equal(back[name], tensor) for name, tensor in state.items())


def test_ms2torch_writes_zip_records_with_correct_crcs(cli, tmp_path, copies):
    state = big_state()
    torch.save(state, tmp_path / "model.pt")
    assert cli("torch2ms", tmp_path / "model.pt", "-o", tmp_path / "model.ckpt", "--quiet").exit_code == 0
    copies.update(kernel=0, bounce=0)
    result = cli("ms2torch", tmp_path / "model.ckpt", "-o", tmp_path / "back.pt", "--quiet")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert copies["bounce"] + copies["kernel"] >= big_bytes(state)
    with zipfile.ZipFile(tmp_path / "back.pt") as archive:
        assert archive.testzip() is None  # every record's CRC-32 matches its bytes
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    for name, tensor in state.items():
        assert torch.equal(back[name], tensor), name


def test_a_tensor_of_many_bounce_blocks_gets_the_crc_of_all_of_them_in_order(cli, tmp_path, copies):
    """ms2torch bounces every byte (.ckpt contents are not 64-aligned): the zip CRC comes from the
    two bounce buffers taking turns, so a tensor of several blocks checks their order too."""
    generator = torch.Generator().manual_seed(1)
    state = {"conv.weight": torch.randn(1024, 640, 9, generator=generator),  # 22.5 MiB: 6 blocks
             "conv.bias": torch.randn(1024, generator=generator)}
    torch.save(state, tmp_path / "model.pt")
    assert cli("torch2ms", tmp_path / "model.pt", "-o", tmp_path / "model.ckpt", "--quiet").exit_code == 0
    copies.update(kernel=0, bounce=0)
    result = cli("ms2torch", tmp_path / "model.ckpt", "-o", tmp_path / "back.pt", "--quiet")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert copies["bounce"] >= state["conv.weight"].nbytes and copies["kernel"] == 0
    with zipfile.ZipFile(tmp_path / "back.pt") as archive:
        assert archive.testzip() is None
    assert torch.equal(torch.load(tmp_path / "back.pt", weights_only=True)["conv.weight"], state["conv.weight"])


def refuse(errno_value: int):
    """A stand-in that refuses as a kernel or filesystem without the call would, and counts."""
    attempts = []

    def refusing(*args):
        attempts.append(args)
        raise OSError(errno_value, os.strerror(errno_value))

    return refusing, attempts


@pytest.mark.parametrize("fmt", [Format.CKPT, Format.SAFETENSORS, Format.TORCH])
def test_refused_file_copies_fall_back_to_writes_with_the_same_bytes(tmp_path, monkeypatch, fmt):
    torch.save(big_state(), tmp_path / "model.pt")
    with open_checkpoint(tmp_path / "model.pt") as checkpoint:
        write_checkpoint(tmp_path / "copied.bin", checkpoint.entries, fmt)
        cross_device, kernel_attempts = refuse(errno.EXDEV)
        monkeypatch.setattr(os, "copy_file_range", cross_device)
        write_checkpoint(tmp_path / "written.bin", checkpoint.entries, fmt)
    # Refused once: plain writes from then on (a .ckpt's misaligned copies never ask the kernel).
    assert len(kernel_attempts) == (fmt is Format.TORCH)
    assert (tmp_path / "copied.bin").read_bytes() == (tmp_path / "written.bin").read_bytes()


@pytest.mark.parametrize("fmt, call", [(Format.TORCH, "copy_file_range")])
def test_a_copy_refused_half_way_is_finished_by_writes(tmp_path, monkeypatch, fmt, call):
    torch.save(big_state(), tmp_path / "model.pt")
    real = getattr(os, call)
    with open_checkpoint(tmp_path / "model.pt") as checkpoint:
        write_checkpoint(tmp_path / "copied.bin", checkpoint.entries, fmt)
        state = {"calls": 0}

        def once_then_refuse(*args):
            state["calls"] += 1
            if state["calls"] == 1:
                return real(*args)
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

        monkeypatch.setattr(os, call, once_then_refuse)
        write_checkpoint(tmp_path / "mixed.bin", checkpoint.entries, fmt)
    assert state["calls"] == 2
    assert (tmp_path / "copied.bin").read_bytes() == (tmp_path / "mixed.bin").read_bytes()


@pytest.mark.parametrize("fmt, call", [(Format.TORCH, "copy_file_range"), (Format.CKPT, "write")])
def test_a_disk_error_during_a_file_copy_is_a_write_error(tmp_path, monkeypatch, fmt, call):
    torch.save(big_state(), tmp_path / "model.pt")
    (tmp_path / "out.bin").write_bytes(b"previous")

    def disk_full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, call, disk_full)
    with open_checkpoint(tmp_path / "model.pt") as checkpoint, pytest.raises(WriteError, match="No space left"):
        write_checkpoint(tmp_path / "out.bin", checkpoint.entries, fmt)
    assert (tmp_path / "out.bin").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "out.bin"]


def test_streams_without_a_file_and_computed_tensors_are_written_with_their_crc(tmp_path):
    array = np.arange(KERNEL_COPY_MIN_BYTES // 2, dtype=np.float32)  # 2 MiB, in memory
    entry = TensorEntry.from_array("w", array)
    stream = io.BytesIO()
    crc = TensorBytesWriter(stream).write_entry(entry, crc=0)
    assert stream.getvalue() == array.tobytes()
    assert crc == zlib.crc32(array.tobytes())


def test_a_closed_checkpoint_no_longer_gives_its_file(tmp_path):
    torch.save(big_state(), tmp_path / "model.pt")
    checkpoint = open_checkpoint(tmp_path / "model.pt")
    weight = next(e for e in checkpoint.tensors() if e.name == "convs.0.weight")
    ((file, offset, length),) = weight.extents(0, weight.nbytes)
    assert length == weight.nbytes and os.pread(file.fd, 16, offset) == weight.read(0, 16).tobytes()
    checkpoint.close()
    assert weight.extents(0, weight.nbytes) is None
    with pytest.raises(ValueError):  # the checkpoint is closed: no bytes, and no descriptor either
        next(weight.chunks())


def test_durable_output_reports_a_failed_fsync_and_keeps_the_previous_file(tmp_path, monkeypatch):
    (tmp_path / "out.bin").write_bytes(b"previous")

    def failing_fsync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(WriteError, match="Input/output error"), atomic_output(tmp_path / "out.bin") as stream:
        stream.write(b"new")
    assert (tmp_path / "out.bin").read_bytes() == b"previous"
    with atomic_output(tmp_path / "out.bin", durable=False) as stream:  # --no-fsync: no fsync to fail
        stream.write(b"new")
    assert (tmp_path / "out.bin").read_bytes() == b"new"


def test_a_writeback_error_while_writing_is_reported(tmp_path, monkeypatch):
    """Linux reports a write-back error once: the background loop must not swallow it."""
    synced = []

    def failing_fdatasync(fd):
        synced.append(fd)
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
    monkeypatch.setattr(atomic_module._Writeback, "FIRST_SYNC_AFTER_S", 0.0)
    with pytest.raises(WriteError, match="Input/output error"), atomic_output(tmp_path / "out.bin") as stream:
        stream.write(b"new")
        deadline = time.monotonic() + 10
        while not synced and time.monotonic() < deadline:  # a slow writer: the loop runs meanwhile
            time.sleep(0.01)
    assert synced and not (tmp_path / "out.bin").exists()


def test_no_fsync_option_writes_the_same_file(cli, tmp_path):
    torch.save(big_state(), tmp_path / "model.pt")
    for name, extra in (("durable.ckpt", []), ("fast.ckpt", ["--no-fsync"])):
        result = cli("torch2ms", tmp_path / "model.pt", "-o", tmp_path / name, "--quiet", *extra)
        assert result.exit_code == 0, result.stdout
    assert (tmp_path / "durable.ckpt").read_bytes() == (tmp_path / "fast.ckpt").read_bytes()
    assert cli("convert", tmp_path / "model.pt", "-o", tmp_path / "x.safetensors", "--no-fsync", "--quiet").exit_code == 0
    assert Path(tmp_path / "x.safetensors").stat().st_size > 0
