"""torch2ms and ms2torch end to end: real frameworks write, the real CLI migrates, the other
framework loads with nothing left over and computes the same outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.nets import (
    TorchNet,
    inputs,
    mindspore_net,
    randomize_mindspore,
    randomize_torch,
    run_mindspore,
    run_torch,
)

TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def test_ms2torch_loads_strictly_and_matches_mindspore(ms, cli, tmp_path):
    ms_net = randomize_mindspore(mindspore_net())
    source = tmp_path / "net.ckpt"
    ms.save_checkpoint(ms_net, str(source))

    result = cli("ms2torch", source, "--report", tmp_path / "report.json")
    assert result.exit_code == 0, result.stdout + result.stderr

    torch_net = TorchNet().eval()
    torch_net.load_state_dict(torch.load(tmp_path / "net.pt", weights_only=True), strict=True)
    x, ids = inputs()
    for ours, theirs in zip(run_torch(torch_net, x, ids), run_mindspore(ms_net, x, ids), strict=True):
        np.testing.assert_allclose(ours, theirs, **TOLERANCE)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] and report["output"]["written"]
    ops = {step["target"]: step["op"] for step in report["plan"]["steps"]}
    assert ops["conv_same.weight"] == "reshape" and ops["bn.running_var"] == "rename"
    assert ops["bn.num_batches_tracked"] == "create"


@pytest.mark.parametrize("with_reference", [False, True], ids=["rules", "reference"])
def test_torch2ms_loads_every_parameter_and_matches_torch(ms, cli, tmp_path, with_reference):
    torch_net = randomize_torch(TorchNet())
    source = tmp_path / "net.pt"
    torch.save(torch_net.state_dict(), source)
    args = ["torch2ms", source, "-o", tmp_path / "net.ckpt"]
    if with_reference:
        ms.save_checkpoint(mindspore_net(), str(tmp_path / "fresh.ckpt"))
        args += ["--reference", tmp_path / "fresh.ckpt", "--strict"]

    result = cli(*args)
    assert result.exit_code == 0, result.stdout + result.stderr

    ms_net = mindspore_net()
    params = ms.load_checkpoint(str(tmp_path / "net.ckpt"))
    param_not_loaded, ckpt_not_loaded = ms.load_param_into_net(ms_net, params)
    assert param_not_loaded == [] and ckpt_not_loaded == []
    x, ids = inputs()
    for ours, theirs in zip(run_mindspore(ms_net, x, ids), run_torch(torch_net, x, ids), strict=True):
        np.testing.assert_allclose(ours, theirs, **TOLERANCE)


def test_round_trip_is_bit_exact(cli, tmp_path):
    torch_net = randomize_torch(TorchNet())
    torch.save(torch_net.state_dict(), tmp_path / "net.pt")
    assert cli("torch2ms", tmp_path / "net.pt", "-o", tmp_path / "net.ckpt").exit_code == 0
    assert cli("ms2torch", tmp_path / "net.ckpt", "-o", tmp_path / "back.pt").exit_code == 0
    original = torch_net.state_dict()
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert list(back) == list(original)
    for name, tensor in original.items():
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor), name


def test_dry_run_prints_the_plan_and_writes_nothing(cli, tmp_path):
    torch.save(randomize_torch(TorchNet()).state_dict(), tmp_path / "net.pt")
    result = cli("torch2ms", tmp_path / "net.pt", "--dry-run")
    assert result.exit_code == 0
    assert "conv_same.weight" in result.stdout and "reshape" in result.stdout and "moving_variance" in result.stdout
    assert not (tmp_path / "net.ckpt").exists()


def test_strict_fails_on_guesses_and_writes_nothing(cli, tmp_path):
    torch.save(randomize_torch(TorchNet()).state_dict(), tmp_path / "net.pt")
    result = cli("torch2ms", tmp_path / "net.pt", "--strict", "--report", tmp_path / "r.json")
    assert result.exit_code == 1
    assert "emb.weight" in result.stdout  # the Embedding was a guess from its name
    assert not (tmp_path / "net.ckpt").exists()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] is False and any(p["code"] == "guess" for p in report["plan"]["problems"])


def test_torch2ms_with_the_model_is_exact_and_writes_a_verifiable_layers_json(cli, tmp_path):
    from tests.layer_models import small_encoder

    torch.manual_seed(0)
    torch.save(small_encoder().state_dict(), tmp_path / "enc.pt")
    result = cli("torch2ms", tmp_path / "enc.pt", "--model", "tests.layer_models:small_encoder", "--strict",
                 "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.stdout + result.stderr  # --strict: no guess was needed
    report = json.loads((tmp_path / "r.json").read_text())
    steps = {s["target"]: s for s in report["plan"]["steps"] if s["target"]}
    assert steps["embed.embedding_table"]["reason"].startswith("Embedding (--model")
    assert steps["block.act.w"]["op"] == "rename"
    # a kind --model settles is the kind everywhere (a (1, K) Conv2d: never a guessed Conv1d)
    assert (steps["spec.weight"]["layer_kind"], steps["spec.weight"]["reason"]) == ("Conv2d", "Conv2d (--model: a Conv2d module)")
    layers = {layer["name"]: layer for layer in report["verification"]["layers"]}
    assert layers["up"]["kind"] == "ConvTranspose1d" and layers["block.conv"]["passed"]
    layers_json = tmp_path / "enc.layers.json"
    assert report["layers_json"] == str(layers_json)
    described = {layer["name"]: layer for layer in json.loads(layers_json.read_text())["layers"]}
    assert described["block.conv"]["pre_pad"] == {"mode": "reflect", "pads": [2, 2], "value": 0.0}
    # the layers JSON drives an independent verification with each conv's real hyperparameters
    checked = cli("verify", tmp_path / "enc.pt", tmp_path / "enc.ckpt", "--layers", layers_json)
    assert checked.exit_code == 0, checked.stdout + checked.stderr


def test_model_must_be_importable(cli, tmp_path):
    torch.save({"w": torch.zeros(1)}, tmp_path / "m.pt")
    result = cli("torch2ms", tmp_path / "m.pt", "--model", "tests.layer_models:not_a_model")
    assert result.exit_code == 2 and "not a torch.nn.Module" in result.stderr
