"""An input that changes while it is read is a one-line error that leaves nothing behind (issue 12, case 19).

Readers used to serve tensor bytes from memory maps: a file truncated under them killed the
process with SIGBUS (no message, a `.partial` left beside the output). Now every byte is read
with pread and checked, so the same events are `... changed while it was read ...`. The files
are cut or rewritten from inside the real run, at the moment the writer asks for tensor bytes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convmigrate.entries import TensorEntry
from convmigrate.errors import UnreadableCheckpointError
from convmigrate.formats import bytecopy, open_checkpoint, write_checkpoint
from convmigrate.vocab import Format

FORMATS = {".pt": Format.TORCH, ".safetensors": Format.SAFETENSORS, ".ckpt": Format.CKPT}


def model(path: Path, fmt: Format) -> Path:
    """Three tensors, one over the kernel-copy threshold (2 MiB) and two small ones."""
    rng = np.random.default_rng(0)
    shape = (128, 1024, 1, 4) if fmt is Format.CKPT else (128, 1024, 4)
    entries = [
        TensorEntry.from_array("enc.conv.weight", rng.standard_normal(shape).astype(np.float32)),
        TensorEntry.from_array("enc.conv.bias", rng.standard_normal(128).astype(np.float32)),
        TensorEntry.from_array("head.weight", rng.standard_normal((4, 128)).astype(np.float32)),
    ]
    write_checkpoint(path, entries, fmt, durable=False)
    return path


def cut_when_written(monkeypatch: pytest.MonkeyPatch, path: Path, how: str) -> None:
    """Change `path` the first time a writer asks for tensor bytes: truncate it, or rewrite it in place."""
    real = bytecopy.TensorBytesWriter.write_entry
    done: list[bool] = []

    def write_entry(self, entry, *args, **kwargs):
        if not done:
            done.append(True)
            size = path.stat().st_size
            if how == "truncated":
                os.truncate(path, size // 2)
            else:
                with open(path, "r+b") as stream:  # same size, other bytes
                    stream.seek(size // 2)
                    stream.write(b"\xff" * 64)
                os.utime(path, ns=(0, 0))  # even a restored old time is noticed (ctime moves)
        return real(self, entry, *args, **kwargs)

    monkeypatch.setattr(bytecopy.TensorBytesWriter, "write_entry", write_entry)


@pytest.mark.parametrize("how", ["truncated", "rewritten"])
@pytest.mark.parametrize("suffix", list(FORMATS))
def test_a_changed_input_fails_the_write_in_one_line_and_leaves_nothing(cli, tmp_path, monkeypatch, suffix, how):
    source = model(tmp_path / f"model{suffix}", FORMATS[suffix])
    cut_when_written(monkeypatch, source, how)
    result = cli("convert", source, "-o", tmp_path / "out.safetensors")
    assert result.exit_code == 2, result.stdout + result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("error: ") and str(source) in line, line
    assert "changed while it was read" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]  # no output, no .partial


@pytest.mark.parametrize("suffix", list(FORMATS))
def test_a_truncated_input_is_named_by_every_read_path(tmp_path, suffix):
    """Kernel copies, bounce copies, plain pieces, block reads and whole arrays all check."""
    source = model(tmp_path / f"model{suffix}", FORMATS[suffix])
    with open_checkpoint(source) as checkpoint:
        weight = checkpoint.tensors()[0]
        os.truncate(source, source.stat().st_size // 3)
        for read in (weight.raw_bytes, weight.array, lambda: weight.rows(100, 128), weight.sha256):
            with pytest.raises(UnreadableCheckpointError, match="changed while it was read .*bytes when opened"):
                read()
        for fmt in FORMATS.values():
            with pytest.raises(UnreadableCheckpointError, match="changed while it was read"):
                write_checkpoint(tmp_path / "out.bin", checkpoint.entries, fmt)
    assert not (tmp_path / "out.bin").exists()


def test_blocks_of_rows_are_read_without_the_whole_tensor(tmp_path):
    source = model(tmp_path / "model.pt", Format.TORCH)
    with open_checkpoint(source) as checkpoint:
        weight = checkpoint.tensors()[0]
        whole = weight.array()
        assert np.array_equal(weight.rows(10, 20), whole[10:20])
        assert weight.rows(120, 500).shape == (8, 1024, 4)  # clipped to the rows there are
        assert weight.read(4, 12).tobytes() == whole.tobytes()[4:12]
        with pytest.raises(ValueError, match="outside"):
            weight.read(0, weight.nbytes + 1)


# A child that truncates its own input half-way through `inspect --json` (which hashes every
# tensor): with memory maps this died of SIGBUS (exit -7, no message).
TRUNCATE_WHILE_INSPECTING = """
import os, sys
from convmigrate.entries import TensorEntry
from convmigrate.cli.app import app
path = sys.argv[1]
real = TensorEntry.sha256
def sha256(self):
    os.truncate(path, os.path.getsize(path) // 2)
    return real(self)
TensorEntry.sha256 = sha256
app(["inspect", path, "--json"], prog_name="convmigrate")
"""


def test_inspect_of_an_input_truncated_while_hashing_is_an_error_not_a_signal(tmp_path):
    source = model(tmp_path / "model.pt", Format.TORCH)
    child = subprocess.run([sys.executable, "-c", TRUNCATE_WHILE_INSPECTING, str(source)], capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "200"})
    assert child.returncode == 2, (child.returncode, child.stderr)
    assert child.stderr.count("\n") == 1 and "changed while it was read" in child.stderr, child.stderr


# A child that truncates its own input just as the verification thread starts reading the
# original's conv weights (and before the writer reads them): both reads fail, and the user
# reads one line (a thread's exception would print its traceback too).
TRUNCATE_WHILE_MIGRATING = """
import os, sys
from convmigrate.cli.app import app
from convmigrate.verify import runner
path = sys.argv[1]
real = runner.BackgroundVerification.start
def start(self):
    os.truncate(path, os.path.getsize(path) // 2)
    real(self)
runner.BackgroundVerification.start = start
app(["torch2ms", path, "-o", sys.argv[2]], prog_name="convmigrate")
"""


def test_torch2ms_of_an_input_truncated_while_verifying_is_one_line_and_leaves_nothing(tmp_path):
    source = model(tmp_path / "model.pt", Format.TORCH)
    child = subprocess.run([sys.executable, "-c", TRUNCATE_WHILE_MIGRATING, str(source), str(tmp_path / "out.ckpt")],
                           capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert child.returncode == 2, (child.returncode, child.stderr)
    assert child.stderr.count("\n") == 1 and "changed while it was read" in child.stderr, child.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
