"""torch2ms / ms2torch options through the real CLI: layouts, formats, references, rules,
patterns and non-parameter entries."""

from __future__ import annotations

import json

import numpy as np
import torch

from tests.nets import TorchNet, inputs, mindspore_net, randomize_mindspore, randomize_torch, run_mindspore, run_torch


def test_layout_mint_loads_into_mindspore_mint_layers(ms, cli, tmp_path):
    """mint keeps PyTorch's names and Conv1d shapes (mint's Conv1d has no CPU kernel in
    MindSpore 2.10, so this checks loading: every parameter lands, none is left over)."""
    from mindspore import mint

    class MintNet(ms.nn.Cell):
        def __init__(self):
            super().__init__()
            self.conv = mint.nn.Conv1d(4, 8, 3)
            self.bn = mint.nn.BatchNorm1d(8)
            self.head = mint.nn.Linear(8, 3)

    torch_net = torch.nn.Module()
    torch_net.conv, torch_net.bn, torch_net.head = torch.nn.Conv1d(4, 8, 3), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3)
    torch.save(torch_net.state_dict(), tmp_path / "m.pt")
    assert cli("torch2ms", tmp_path / "m.pt", "--layout", "mint").exit_code == 0
    params = ms.load_checkpoint(str(tmp_path / "m.ckpt"))
    assert params["conv.weight"].shape == (8, 4, 3)
    not_loaded, unused = ms.load_param_into_net(MintNet(), params)
    assert not_loaded == [] and unused == []


def test_torch2ms_safetensors_loads_in_mindspore_and_matches(ms, cli, tmp_path):
    torch_net = randomize_torch(TorchNet())
    torch.save(torch_net.state_dict(), tmp_path / "net.pt")
    assert cli("torch2ms", tmp_path / "net.pt", "--format", "safetensors").exit_code == 0
    params = ms.load_checkpoint(str(tmp_path / "net.safetensors"), format="safetensors")
    ms_net = mindspore_net()
    assert ms.load_param_into_net(ms_net, params) == ([], [])
    x, ids = inputs()
    for ours, theirs in zip(run_mindspore(ms_net, x, ids), run_torch(torch_net, x, ids), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_ms2torch_with_a_torch_reference_and_safetensors_output(ms, cli, tmp_path):
    ms.save_checkpoint(randomize_mindspore(mindspore_net()), str(tmp_path / "net.ckpt"))
    torch.save(TorchNet().state_dict(), tmp_path / "fresh.pt")
    result = cli("ms2torch", tmp_path / "net.ckpt", "--reference", tmp_path / "fresh.pt", "--strict",
                 "--format", "safetensors", "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    from safetensors.torch import load_file

    TorchNet().load_state_dict(load_file(tmp_path / "net.safetensors"), strict=True)
    report = json.loads((tmp_path / "r.json").read_text())
    assert {s["confidence"] for s in report["plan"]["steps"]} == {"reference"}


def test_training_state_is_dropped_by_default_and_kept_on_request(ms, cli, tmp_path):
    net = mindspore_net()
    ms.save_checkpoint(net, str(tmp_path / "net.ckpt"), append_dict={"epoch_num": 3, "step_num": 120, "tag": "run7"})
    result = cli("ms2torch", tmp_path / "net.ckpt", "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.stderr
    dropped = {s["sources"][0]: s["reason"] for s in json.loads((tmp_path / "r.json").read_text())["plan"]["steps"]
               if s["op"] == "drop"}
    assert set(dropped) == {"epoch_num", "step_num", "tag"} and "--keep-extras" in dropped["epoch_num"]
    TorchNet().load_state_dict(torch.load(tmp_path / "net.pt", weights_only=True), strict=True)
    kept = cli("ms2torch", tmp_path / "net.ckpt", "-o", tmp_path / "kept.pt", "--keep-extras")
    assert kept.exit_code == 0, kept.stderr
    state = torch.load(tmp_path / "kept.pt", weights_only=True)
    assert int(state["epoch_num"]) == 3 and state["tag"] == "run7"


def test_rules_file_and_exclude_from_the_cli(cli, tmp_path):
    state = {"layers.0.rms.weight": torch.ones(4), "stft.weight": torch.randn(8, 1, 16), "conv.weight": torch.randn(4, 4, 3)}
    torch.save(state, tmp_path / "m.pt")
    (tmp_path / "rules.toml").write_text(
        '[[param]]\nkind = "RMSNorm"\ntorch = "weight"\nmindspore = "gamma"\n'
        '[[layer]]\nmatch = "*.rms"\nkind = "RMSNorm"\n'
        '[[prefix]]\ntorch = "layers."\nmindspore = "blocks."\n'
    )
    result = cli("torch2ms", tmp_path / "m.pt", "--rules", tmp_path / "rules.toml", "--exclude", "stft.*",
                 "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    steps = {s["sources"][0]: s for s in json.loads((tmp_path / "r.json").read_text())["plan"]["steps"]}
    assert steps["layers.0.rms.weight"]["target"] == "blocks.0.rms.gamma"
    assert steps["stft.weight"]["op"] == "copy" and steps["stft.weight"]["target_shape"] == [8, 1, 16]
    assert steps["conv.weight"]["target_shape"] == [4, 4, 1, 3]


def test_bad_rules_file_is_a_usage_error(cli, tmp_path):
    torch.save({"w": torch.zeros(1)}, tmp_path / "m.pt")
    (tmp_path / "rules.toml").write_text("[[layer]]\nmatch = 3\n")
    result = cli("torch2ms", tmp_path / "m.pt", "--rules", tmp_path / "rules.toml")
    assert result.exit_code == 2 and "rules.toml" in result.stderr


def test_wrong_direction_format_is_a_usage_error(cli, tmp_path):
    torch.save({"w": torch.zeros(1)}, tmp_path / "m.pt")
    result = cli("torch2ms", tmp_path / "m.pt", "--format", "pt")
    assert result.exit_code == 2 and "'pt' is not one of 'ckpt', 'safetensors'" in result.stderr


def test_quiet_prints_nothing_on_success(cli, tmp_path):
    torch.save(randomize_torch(TorchNet()).state_dict(), tmp_path / "net.pt")
    result = cli("torch2ms", tmp_path / "net.pt", "--quiet")
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""
