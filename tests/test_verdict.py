"""Issue 11's numbered cases: every "ok" is a guarantee, and no real layer is misread silently.

Each file is written by the real framework (torch.save, mindspore.save_checkpoint) and each
command runs through the real CLI; what the user reads is checked as well as the exit code.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from torch import nn


class TemporalBlock(nn.Module):
    """A weight-normalised TCN block beside plain layers (issue 11, case 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 3)
        self.bn = nn.BatchNorm1d(8)
        self.tcn = nn.utils.weight_norm(nn.Conv1d(8, 8, 3))  # kept as weight_g / weight_v
        self.fc = nn.Linear(8, 2)


def _save_ms(ms, params: dict[str, np.ndarray], path) -> None:
    ms.save_checkpoint([{"name": k, "data": ms.Tensor(np.ascontiguousarray(v))} for k, v in params.items()], str(path))


def _one_ulp(array: np.ndarray, index: tuple[int, ...]) -> np.ndarray:
    changed = array.copy()
    changed[index] = np.nextafter(changed[index], np.float32(np.inf))
    return changed


def _case1_damages(good: dict[str, np.ndarray]) -> dict[str, tuple[dict[str, np.ndarray], str, str]]:
    """Damaged copies of a correct conversion: (params, the tensor verify must name, its layer)."""
    damages = {}
    damages["conv weight dropped"] = ({k: v for k, v in good.items() if k != "conv.weight"}, "conv.weight", "conv")
    damages["moving_mean dropped"] = ({k: v for k, v in good.items() if k != "bn.moving_mean"}, "bn.moving_mean", "bn")
    damages["moving_mean renamed"] = (
        {("bn.avg" if k == "bn.moving_mean" else k): v for k, v in good.items()}, "bn.moving_mean", "bn")
    damages["extra tensor"] = ({**good, "extra.weight": np.ones((2, 2), np.float32)}, "extra.weight", "extra")
    damages["weight_g changed"] = ({**good, "tcn.weight_g": good["tcn.weight_g"] * 1.5}, "tcn.weight_g", "tcn")
    damages["weight_v one ulp"] = (
        {**good, "tcn.weight_v": _one_ulp(good["tcn.weight_v"], (3, 2, 0, 1))}, "tcn.weight_v", "tcn")
    damages["conv weight one ulp"] = (
        {**good, "conv.weight": _one_ulp(good["conv.weight"], (5, 1, 0, 2))}, "conv.weight", "conv")
    damages["moving_mean in float16"] = (
        {**good, "bn.moving_mean": good["bn.moving_mean"].astype(np.float16)}, "bn.moving_mean", "bn")
    assert tuple(damages) == CASE1_DAMAGES
    return damages


@pytest.fixture
def case1(ms, cli, tmp_path):
    """A torch.save checkpoint and its conversion, the weight norm kept (reshaped) as a pair."""
    torch.manual_seed(0)
    torch.save(TemporalBlock().state_dict(), tmp_path / "tcn.pt")
    result = cli("torch2ms", tmp_path / "tcn.pt", "-o", tmp_path / "tcn.ckpt")
    assert result.exit_code == 0, result.stdout + result.stderr
    good = {k: v.asnumpy() for k, v in ms.load_checkpoint(str(tmp_path / "tcn.ckpt")).items()}
    # the kept pair gets the conv's unit axis, like the plain conv weight beside it
    assert good["tcn.weight_v"].shape == (8, 8, 1, 3) and good["tcn.weight_g"].shape == (8, 1, 1, 1)
    return tmp_path, good


def test_case1_a_correct_conversion_passes_and_lists_what_it_dropped(case1, cli):
    folder, _ = case1
    result = cli("verify", folder / "tcn.pt", folder / "tcn.ckpt", "--report", folder / "r.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "1 conv layers match" in result.stdout and "dropped on purpose: bn.num_batches_tracked" in result.stdout
    verification = json.loads((folder / "r.json").read_text())["verification"]
    assert verification["passed"] and verification["layers"][0]["bit_exact"] is True
    assert [(d["source"], d["kind"]) for d in verification["dropped"]] == [("bn.num_batches_tracked", "BatchNorm")]
    assert "no counterpart in MindSpore" in verification["dropped"][0]["reason"]


CASE1_DAMAGES = ("conv weight dropped", "moving_mean dropped", "moving_mean renamed", "extra tensor",
                 "weight_g changed", "weight_v one ulp", "conv weight one ulp", "moving_mean in float16")


@pytest.mark.parametrize("damage", CASE1_DAMAGES)
def test_case1_every_missing_extra_renamed_or_changed_tensor_fails(ms, case1, cli, damage):
    folder, good = case1
    params, tensor, layer = _case1_damages(good)[damage]
    _save_ms(ms, params, folder / "damaged.ckpt")
    result = cli("verify", folder / "tcn.pt", folder / "damaged.ckpt", "--report", folder / "r.json")
    assert result.exit_code == 1, result.stdout
    assert f"verification failed for {tensor} (layer {layer})" in result.stderr
    assert tensor in result.stdout and "FAIL" in result.stdout  # the failure, with its reason
    assert not json.loads((folder / "r.json").read_text())["ok"]


def test_case2_a_2d_layernorm_becomes_gamma_and_beta(ms, cli, tmp_path):
    """LayerNorm([1, n]) has a 2-D weight and a 2-D bias: no Linear (whose bias is 1-D)."""
    torch.manual_seed(0)
    model = nn.Module()
    model.ln, model.fc = nn.LayerNorm([1, 6]), nn.Linear(6, 3)
    torch.save(model.state_dict(), tmp_path / "ln.pt")
    result = cli("torch2ms", tmp_path / "ln.pt", "--dry-run")
    assert re.search(r"ln\.weight +ln\.gamma +rename +\(1,6\) +Norm \(weight and bias of one shape\) \[rule\]", result.stdout)
    assert cli("torch2ms", tmp_path / "ln.pt").exit_code == 0

    cell = ms.nn.Cell()
    cell.ln, cell.fc = ms.nn.LayerNorm((1, 6), begin_norm_axis=1, begin_params_axis=1), ms.nn.Dense(6, 3)
    not_loaded, unused = ms.load_param_into_net(cell, ms.load_checkpoint(str(tmp_path / "ln.ckpt")))
    assert (not_loaded, unused) == ([], [])
    assert np.array_equal(cell.ln.gamma.asnumpy(), model.ln.weight.detach().numpy())


def _conv2d_pair(ms, folder):
    """A MindSpore net with (1, K) and (1, 1) Conv2d kernels, and the PyTorch net it ports to."""
    cell = ms.nn.Cell()
    cell.c2 = ms.nn.Conv2d(2, 4, (1, 5), has_bias=True, pad_mode="valid")
    cell.p = ms.nn.Conv2d(4, 4, 1, has_bias=True, pad_mode="valid")
    ms.save_checkpoint(cell, str(folder / "c2.ckpt"))
    model = nn.Module()
    model.c2, model.p = nn.Conv2d(2, 4, (1, 5)), nn.Conv2d(4, 4, 1)
    torch.save(model.state_dict(), folder / "reference.pt")
    return cell, model


def test_case3_a_kind_the_reference_settles_is_used_everywhere(ms, cli, tmp_path):
    cell, model = _conv2d_pair(ms, tmp_path)
    result = cli("ms2torch", tmp_path / "c2.ckpt", "--reference", tmp_path / "reference.pt", "--strict",
                 "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    steps = {step["target"]: step for step in report["plan"]["steps"]}
    assert {name: (s["op"], s["layer_kind"]) for name, s in steps.items()} == {
        "c2.weight": ("copy", "Conv2d"), "c2.bias": ("copy", "Conv2d"),
        "p.weight": ("copy", "Conv2d"), "p.bias": ("copy", "Conv2d")}
    assert "a Conv2d with a (1, 5) kernel" in steps["c2.weight"]["reason"]
    assert "Conv1d" not in json.dumps(report)  # not in the plan, the verification or a reason
    model.load_state_dict(torch.load(tmp_path / "c2.pt", weights_only=True), strict=True)
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 9)).astype(np.float32)
    np.testing.assert_allclose(model.p(model.c2(torch.from_numpy(x))).detach().numpy(),
                               cell.p(cell.c2(ms.Tensor(x))).asnumpy(), rtol=1e-5, atol=1e-5)


def test_case3_without_the_reference_it_stays_a_reported_guess(ms, cli, tmp_path):
    _conv2d_pair(ms, tmp_path)
    result = cli("ms2torch", tmp_path / "c2.ckpt", "--strict")
    assert result.exit_code == 1
    assert "c2.weight: guessed Conv1d" in result.stdout and "(a Conv2d with a (1, K) kernel looks the same)" in result.stdout


def test_case7_warnings_name_the_layer_as_it_is(cli, tmp_path):
    torch.manual_seed(0)
    model = nn.Module()
    model.proj = nn.utils.weight_norm(nn.Linear(6, 4))
    torch.save(model.state_dict(), tmp_path / "wn.pt")
    result = cli("torch2ms", tmp_path / "wn.pt")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "proj is a weight-normalised Linear (proj.weight_g, proj.weight_v); MindSpore's nn.Dense" in result.stdout
    assert "Conv1d" not in result.stdout
    folded = cli("torch2ms", tmp_path / "wn.pt", "-o", tmp_path / "folded.ckpt", "--fold-weight-norm", "--strict",
                 "--report", tmp_path / "r.json")
    assert folded.exit_code == 0, folded.stdout + folded.stderr
    tensors = json.loads((tmp_path / "r.json").read_text())["verification"]["tensors"]
    assert tensors == {"compared": 2, "identical": 2, "failed": []}  # the folded weight against g * v / ||v||


def test_case7_a_plain_conv2d_is_no_warning_and_passes_strict(cli, tmp_path):
    torch.manual_seed(0)
    model = nn.Module()
    model.img = nn.Conv2d(3, 4, 3)
    torch.save(model.state_dict(), tmp_path / "img.pt")
    result = cli("torch2ms", tmp_path / "img.pt", "--strict", "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "warning" not in result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["plan"]["problems"] == []
    assert {s["target"]: s["layer_kind"] for s in report["plan"]["steps"]} == {"img.weight": "Conv2d", "img.bias": "Conv2d"}


def test_a_transposed_conv_is_named_as_one_in_the_plan_as_in_the_verification(cli, tmp_path):
    """The bias (C_out, the weight's second axis) marks a ConvTranspose1d: the plan's reason and the
    guess warning say so, as the verification table does (one kind everywhere)."""
    model = nn.Sequential()
    model.add_module("conv", nn.Conv1d(4, 8, 3))
    model.add_module("up", nn.ConvTranspose1d(8, 4, 4, stride=2))
    torch.save(model.state_dict(), tmp_path / "m.pt")
    forward = cli("torch2ms", tmp_path / "m.pt", "-o", tmp_path / "m.ckpt")
    assert forward.exit_code == 0, forward.stderr
    back = cli("ms2torch", tmp_path / "m.ckpt", "-o", tmp_path / "back.pt")
    assert back.exit_code == 0, back.stderr
    for result in (forward, back):
        plan_row = next(line for line in result.stdout.splitlines() if line.lstrip().startswith("up.weight"))
        assert "a ConvTranspose1d" in plan_row
        table_row = next(line for line in result.stdout.splitlines() if re.match(r"^ up\s+ConvTranspose1d\s", line))
        assert table_row.rstrip().endswith("ok")
        conv_row = next(line for line in result.stdout.splitlines() if line.lstrip().startswith("conv.weight"))
        assert "ConvTranspose1d" not in conv_row
    assert re.search(r"warning: up\.weight: guessed Conv1d \(a ConvTranspose1d", back.stderr + back.stdout)
