"""The CLI keeps freed read buffers for the next piece instead of faulting in fresh pages for each
(cli/_malloc.py): a count of the kernel's page faults, not a timing.

`verify` reads every tensor of both files once, in 4-8 MiB buffers. Without the allocator
thresholds, glibc gives each freed buffer back to the kernel and the next one is faulted in
again: about one minor fault per 4 KiB read. With them, the faults stay near the start-up's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from convmigrate.entries import TensorEntry
from convmigrate.formats import write_checkpoint
from convmigrate.vocab import Format

# The same command run by the console entry point (main: thresholds set) and by the bare app.
LAUNCHER = """
import os, subprocess, sys
entry = "from convmigrate.cli.app import {}; {}()".format(*(["main"] * 2 if sys.argv[1] == "main" else ["app"] * 2))
child = subprocess.Popen([sys.executable, "-c", entry, *sys.argv[2:]], stderr=subprocess.PIPE)
_, status, usage = os.wait4(child.pid, 0)
code = os.waitstatus_to_exitcode(status)
print(usage.ru_minflt if code == 0 else f"exit {code}: {child.stderr.read().decode()}")
"""


def minor_faults(entry: str, *args: object) -> int:
    printed = subprocess.run([sys.executable, "-c", LAUNCHER, entry, *map(str, args)], capture_output=True, text=True,
                             check=True)
    assert not printed.stdout.startswith("exit"), printed.stdout
    return int(printed.stdout)


def test_reading_reuses_freed_buffers(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    torch_side, ms_side = [], []
    for index in range(24):  # 24 Conv1d layers of 5 MiB: 120 MiB per file
        weight = TensorEntry.from_array(f"blocks.{index}.conv.weight", rng.standard_normal((512, 512, 5)).astype(np.float32))
        torch_side.append(weight)
        ms_side.append(weight.with_shape((512, 512, 1, 5)))
    write_checkpoint(tmp_path / "model.pt", torch_side, Format.TORCH, durable=False)
    write_checkpoint(tmp_path / "model.ckpt", ms_side, Format.CKPT, durable=False)
    read_pages = 2 * 24 * 512 * 512 * 5 * 4 // 4096  # both files, once: 61 440 pages
    faults = {entry: minor_faults(entry, "verify", tmp_path / "model.pt", tmp_path / "model.ckpt", "-q")
              for entry in ("app", "main")}
    # Measured: 40 000 faults from the bare app, 12 800 from main (start-up alone is ~12 000).
    assert faults["app"] - faults["main"] > read_pages // 4, faults
