"""The CLI keeps freed read buffers for the next piece instead of faulting in fresh pages for each
(cli/_malloc.py): a count of the kernel's page faults, not a timing.

A migration that folds weight norms computes each conv weight in float64 blocks of several
sizes (the fold, then verification's numerics on the layer's own weights). Without the allocator
thresholds, glibc gives freed buffers back to the kernel and the next ones are faulted in again;
with them, the faults stay near the start-up's. (Moved weights no longer show it: their bytes
are compared in same-size pieces, which glibc's own dynamic threshold already reuses, and their
numerics run once per configuration: measured on 24 moved 5 MiB layers, 17 300 faults without
the thresholds, 13 700 with.)
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


def test_computing_reuses_freed_buffers(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    weights = []
    for index in range(24):  # 24 weight-normalised Conv1d layers: v of 5 MiB each
        weights.append(TensorEntry.from_array(f"blocks.{index}.conv.weight_g", rng.standard_normal((512, 1, 1)).astype(np.float32)))
        weights.append(TensorEntry.from_array(f"blocks.{index}.conv.weight_v", rng.standard_normal((512, 512, 5)).astype(np.float32)))
    write_checkpoint(tmp_path / "model.pt", weights, Format.TORCH, durable=False)
    pages = 24 * 512 * 512 * 5 * 4 // 4096  # the v tensors, once: 30 720 pages
    faults = {entry: minor_faults(entry, "torch2ms", tmp_path / "model.pt", "-o", tmp_path / "model.ckpt",
                                  "--fold-weight-norm", "--no-fsync", "--force", "-q")
              for entry in ("app", "main")}
    # Measured: 95 000 faults from the bare app, 15 800 from main (start-up alone is ~12 000).
    assert faults["app"] - faults["main"] > pages, faults
