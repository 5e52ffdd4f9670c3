"""What a run may write, and what is left when it stops (issue 12, cases 16, 17, 18).

--report and --junit are checked with the output before anything is written (never an input,
never the output, in a folder where a file can be created); --force replaces regular files only;
SIGTERM and SIGHUP leave nothing behind, as SIGINT does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.corpus.build import snapshot

REPO = Path(__file__).resolve().parents[1]


def small_pt(path: Path) -> Path:
    torch.save({"conv.weight": torch.randn(4, 2, 3), "conv.bias": torch.randn(4)}, path)
    return path


def assert_refused(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.stdout + result.stderr
    line = result.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line, result.stderr
    for fragment in fragments:
        assert fragment in line, line


# -- case 16: report paths ----------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--report", "--junit"])
def test_a_report_never_overwrites_the_input(cli, tmp_path, flag):
    source = small_pt(tmp_path / "model.pt")
    before = snapshot(tmp_path)
    assert_refused(cli("torch2ms", source, flag, source), flag, "is an input of this run")
    assert snapshot(tmp_path) == before  # no output written, the input untouched


def test_a_report_never_overwrites_the_output_or_the_other_report(cli, tmp_path):
    source = small_pt(tmp_path / "model.pt")
    out = tmp_path / "out.ckpt"
    assert_refused(cli("torch2ms", source, "-o", out, "--report", out), "--report", "is also the output")
    assert_refused(cli("torch2ms", source, "--report", tmp_path / "model.ckpt"), "is also the output")  # default name
    assert_refused(cli("torch2ms", source, "--report", tmp_path / "r", "--junit", tmp_path / "r"), "is also --report")
    assert_refused(cli("convert", source, "-o", out, "--report", out), "is also the output")
    reference = small_pt(tmp_path / "ref.pt")
    assert_refused(cli("verify", source, reference, "--junit", reference), "is an input of this run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "ref.pt"]


def test_an_unwritable_report_fails_before_the_output_is_written(cli, tmp_path):
    source = small_pt(tmp_path / "model.pt")
    result = cli("torch2ms", source, "--report", tmp_path / "missing" / "r.json")
    assert_refused(result, "folder", "does not exist")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "r.json").mkdir()
    assert_refused(cli("torch2ms", source, "--report", tmp_path / "locked" / "r.json"), "is a directory")
    assert not (tmp_path / "model.ckpt").exists()


def test_an_existing_report_is_replaced_and_a_device_written_into(cli, tmp_path):
    source = small_pt(tmp_path / "model.pt")
    (tmp_path / "r.json").write_text("old")
    assert cli("torch2ms", source, "-q", "--report", tmp_path / "r.json").exit_code == 0
    assert '"ok": true' in (tmp_path / "r.json").read_text()
    assert cli("inspect", source, "-q", "--report", os.devnull).exit_code == 0
    assert Path(os.devnull).is_char_device()


# -- case 18: --force replaces regular files only ------------------------------------------------------------

@pytest.mark.parametrize("command", ["convert", "torch2ms"])
def test_force_never_replaces_a_fifo_or_a_device(cli, tmp_path, command):
    source = small_pt(tmp_path / "model.pt")
    fifo = tmp_path / "out.ckpt"
    os.mkfifo(fifo)
    assert_refused(cli(command, source, "-o", fifo, "--force"), "is a FIFO", "regular files only")
    assert fifo.is_fifo()
    assert_refused(cli(command, source, "-o", os.devnull, "--force", "--format", "ckpt"), "is a character device")
    assert Path(os.devnull).is_char_device()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "out.ckpt"]


# -- case 17: signals while writing ----------------------------------------------------------------------------

def big_pt(path: Path) -> Path:
    """~48 MiB of conv weights: writing and verifying them takes long enough to be interrupted."""
    generator = torch.Generator().manual_seed(0)
    torch.save({f"layers.{i}.conv.weight": torch.randn(512, 512, 12, generator=generator) for i in range(4)}, path)
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_while_writing_leaves_nothing_behind(tmp_path, signum):
    source = big_pt(tmp_path / "model.pt")
    before = snapshot(tmp_path)
    process = subprocess.Popen([sys.executable, "-m", "convmigrate", "torch2ms", str(source)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".partial") for p in tmp_path.iterdir()):  # the write has begun
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.001)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, (stdout, stderr)
    assert stderr.strip().count("\n") == 0 and "no output was written" in stderr, stderr
    assert "Traceback" not in stderr
    assert snapshot(tmp_path) == before  # no .partial, no output, the input untouched
