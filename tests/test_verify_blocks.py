"""Conv layers are verified a block of their weight at a time (issue 16): the same verdicts at
any block size, and memory bounded by the block, not by the layer.

The small model below has a layer for every way a weight is cut (verify/conv.py plan_units):
whole groups, rows within a group (a transposed conv's rows add up over their group), and
pieces of one row (its input channels, or a transposed conv's output channels, add up). With
a block of a few bytes every one of those paths runs; the verdicts must not change, and a
one-ulp change in one tap must still fail bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from convmigrate.verify import blocks
from tests.test_memory import peak_mib

# block bytes -> what it forces on the layers below (rows are 16-80 bytes, groups 48-480)
BUDGETS = {
    "pieces of one row": 16,
    "rows within a group": 100,
    "whole layers": 8 << 20,
}


def net() -> nn.Module:
    """Every conv kind the planner cuts differently (the --model of these tests)."""
    model = nn.Module()
    model.conv = nn.Conv1d(8, 12, 5, padding=2, groups=2)  # grouped: rows of 80 bytes, groups of 480
    model.dw = nn.Conv1d(6, 6, 7, padding=3, groups=6)  # depthwise
    model.dil = nn.Conv1d(4, 4, 3, padding=2, dilation=2, bias=False)
    model.up = nn.ConvTranspose1d(8, 6, 4, stride=2, padding=1, groups=2)  # rows add up within a group
    model.up1 = nn.ConvTranspose1d(4, 6, 3)
    model.pos = weight_norm(nn.Conv1d(8, 8, 3, padding=1, groups=2), dim=2)  # norms across rows: a first pass
    model.wn = weight_norm(nn.Conv1d(6, 4, 3), dim=0)
    return model


def saved_net(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    pt = tmp_path / "net.pt"
    torch.save(net().state_dict(), pt)
    return pt


@pytest.mark.parametrize("budget", BUDGETS.values(), ids=BUDGETS.keys())
def test_every_layer_passes_at_any_block_size(cli, tmp_path, monkeypatch, budget):
    pt = saved_net(tmp_path)
    monkeypatch.setattr(blocks, "BLOCK_BYTES", budget)
    out = tmp_path / "net.safetensors"
    result = cli("torch2ms", pt, "-o", out, "--model", "tests.test_verify_blocks:net", "--fold-weight-norm",
                 "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    layers = {layer["name"]: layer for layer in json.loads((tmp_path / "r.json").read_text())["verification"]["layers"]}
    assert set(layers) == {"conv", "dw", "dil", "up", "up1", "pos", "wn"}
    assert all(layer["passed"] for layer in layers.values())
    assert all(layers[name]["bit_exact"] for name in ("conv", "dw", "dil", "up", "up1"))  # moved: compared bit for bit
    assert layers["pos"]["bit_exact"] is None and layers["wn"]["bit_exact"] is None  # folded: compared by value
    assert max(layer["max_rel"] for layer in layers.values()) < 1e-5


@pytest.mark.parametrize("layer", ["conv", "up", "dw"])
def test_one_ulp_in_one_tap_fails_with_the_smallest_blocks(cli, tmp_path, monkeypatch, layer):
    pt = saved_net(tmp_path)
    out = tmp_path / "net.safetensors"
    assert cli("torch2ms", pt, "-o", out, "--model", "tests.test_verify_blocks:net", "--fold-weight-norm").exit_code == 0
    tensors = load_file(out)
    weight = tensors[f"{layer}.weight"].copy()
    last = weight.reshape(-1)
    last[-1] = np.nextafter(last[-1], np.float32(np.inf))  # the last tap of the last row: the last block read
    tensors[f"{layer}.weight"] = weight
    save_file(tensors, out)
    monkeypatch.setattr(blocks, "BLOCK_BYTES", BUDGETS["pieces of one row"])
    result = cli("verify", pt, out, "--layers", tmp_path / "net.layers.json", "--report", tmp_path / "r.json")
    assert result.exit_code == 1
    assert f"verification failed for {layer}.weight" in result.stderr
    failed = [x for x in json.loads((tmp_path / "r.json").read_text())["verification"]["layers"] if not x["passed"]]
    assert [(x["name"], x["code"], x["bit_exact"]) for x in failed] == [(layer, "bytes", False)]


# Peak memory of a verified conversion: tests/test_memory.py's launcher (a child's ru_maxrss
# starts from its parent's resident size at the fork; this test process holds torch).


def test_a_giant_conv_is_verified_in_memory_bounded_by_the_block(tmp_path):
    """The issue's 700 MiB Conv1d, scaled down to 128 MiB (what CI holds): verifying it costs a
    few blocks of memory on top of the unverified conversion, not the layer (two whole-layer
    copies, as before, would be 256 MiB)."""
    rng = np.random.default_rng(0)
    pt = tmp_path / "giant.pt"
    torch.save({"giant.weight": torch.from_numpy(rng.standard_normal((1024, 1024, 32), dtype=np.float32)),
                "giant.bias": torch.from_numpy(rng.standard_normal(1024, dtype=np.float32))}, pt)
    bound = 6 * blocks.BLOCK_BYTES / 2**20
    ckpt, back = tmp_path / "giant.ckpt", tmp_path / "giant.back.pt"
    for command, source, output in (("torch2ms", pt, ckpt), ("ms2torch", ckpt, back)):
        bare = peak_mib(command, source, "-o", output, "--no-verify", "--no-fsync", "--force", "--quiet")
        verified = peak_mib(command, source, "-o", output, "--no-fsync", "--force", "--quiet")
        assert verified - bare < bound, f"{command}: {verified:.0f} MiB verified vs {bare:.0f} MiB unverified"
