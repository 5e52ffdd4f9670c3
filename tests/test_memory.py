"""Migrations run in memory that does not grow with the checkpoint (a measure, not a timing).

The peak resident memory of a verified torch2ms / ms2torch child process (wait4's ru_maxrss,
memory-mapped pages included, as /usr/bin/time reports) on a 384 MiB checkpoint must stay
within a fixed margin of the same run on a tiny one. Reading every tensor through memory maps
without giving pages back would add the whole checkpoint.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

MARGIN_MIB = 64


def conv_state(blocks: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(0)
    state = {}
    for index in range(blocks):
        state[f"blocks.{index}.conv.weight"] = torch.from_numpy(rng.standard_normal((512, 512, 3), dtype=np.float32))
        state[f"blocks.{index}.conv.bias"] = torch.from_numpy(rng.standard_normal(512, dtype=np.float32))
        state[f"blocks.{index}.norm.weight"] = torch.ones(512)
        state[f"blocks.{index}.norm.bias"] = torch.zeros(512)
    return state


# Measured from a small launcher process: a child's ru_maxrss starts from its parent's resident
# size at the fork (kept across exec), and this test process holds torch and the tensors.
LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen([sys.executable, "-m", "convmigrate", *sys.argv[1:]], stderr=subprocess.PIPE)
_, status, usage = os.wait4(child.pid, 0)
code = os.waitstatus_to_exitcode(status)
print(usage.ru_maxrss / 1024 if code == 0 else f"exit {code}: {child.stderr.read().decode()}")
"""


def peak_mib(*args: object) -> float:
    printed = subprocess.run([sys.executable, "-c", LAUNCHER, *map(str, args)], capture_output=True, text=True, check=True)
    assert not printed.stdout.startswith("exit"), printed.stdout
    return float(printed.stdout)


def test_peak_memory_does_not_grow_with_the_checkpoint(tmp_path: Path) -> None:
    peaks = {}
    for label, blocks in (("tiny", 1), ("big", 128)):  # 3 MiB and 384 MiB
        pt, ckpt, back = (tmp_path / f"{label}{suffix}" for suffix in (".pt", ".ckpt", ".back.pt"))
        torch.save(conv_state(blocks), pt)
        peaks[label] = (peak_mib("torch2ms", pt, "-o", ckpt, "--quiet", "--no-fsync"),
                        peak_mib("ms2torch", ckpt, "-o", back, "--quiet", "--no-fsync"))
        assert back.stat().st_size > 0
    for direction, tiny, big in zip(("torch2ms", "ms2torch"), peaks["tiny"], peaks["big"]):
        assert big - tiny < MARGIN_MIB, f"{direction}: {big:.0f} MiB on 384 MiB vs {tiny:.0f} MiB on 3 MiB"
