"""`convmigrate verify` catches wrong conversions on real checkpoints and passes right ones.

Each wrong conversion is one a hand-written port could make; the converted file is written by
the real `mindspore.save_checkpoint`, so only the bundled numerics stand between it and the user.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class Speech(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 5, padding=2)
        self.up = nn.ConvTranspose1d(8, 8, 4, stride=2)  # square: a wrong axis order keeps the shape
        self.pos = weight_norm(nn.Conv1d(8, 8, 3, padding=1, groups=2), dim=2)  # wav2vec2-style


def correct_parameters() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The PyTorch state dict and the right MindSpore parameters for it."""
    torch.manual_seed(0)
    model = Speech()
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    folded = model.pos.weight.detach().numpy()  # torch's own weight-norm computation
    ms_params = {
        "conv.weight": state["conv.weight"][:, :, None, :], "conv.bias": state["conv.bias"],
        "up.weight": state["up.weight"][:, :, None, :], "up.bias": state["up.bias"],
        "pos.weight": folded[:, :, None, :], "pos.bias": state["pos.bias"],
    }
    return state, ms_params


def save_pair(ms, tmp_path, ms_params):
    torch_state, _ = correct_parameters()
    torch.save({k: torch.from_numpy(v) for k, v in torch_state.items()}, tmp_path / "model.pt")
    ms.save_checkpoint([{"name": k, "data": ms.Tensor(np.ascontiguousarray(v))} for k, v in ms_params.items()],
                       str(tmp_path / "model.ckpt"))
    return tmp_path / "model.pt", tmp_path / "model.ckpt"


def test_a_correct_port_passes_and_reports(ms, cli, tmp_path):
    original, converted = save_pair(ms, tmp_path, correct_parameters()[1])
    result = cli("verify", original, converted, "--report", tmp_path / "r.json", "--junit", tmp_path / "j.xml")
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] and {layer["name"] for layer in report["verification"]["layers"]} == {"conv", "up", "pos"}
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.get("failures") == "0" and len(suite.findall("testcase")) == 4


def wrong(name: str):
    """Parameters with one deliberate mistake, and the layer verify must name."""
    _, params = correct_parameters()
    torch_state, _ = correct_parameters()
    if name == "kernel reversed":
        params["conv.weight"] = params["conv.weight"][..., ::-1]
        return params, "conv"
    if name == "unit axis in the wrong place":
        params["conv.weight"] = torch_state["conv.weight"][:, :, :, None]  # (8, 4, 5, 1)
        return params, "conv"
    if name == "transposed conv treated as plain":
        params["up.weight"] = np.swapaxes(torch_state["up.weight"], 0, 1)[:, :, None, :]
        return params, "up"
    if name == "weight norm folded along the wrong dim":
        g = torch_state["pos.parametrizations.weight.original0"]  # (1, 1, 3): dim=2
        v = torch_state["pos.parametrizations.weight.original1"]
        norm = np.sqrt((v ** 2).sum(axis=(1, 2), keepdims=True))  # as if dim were 0
        params["pos.weight"] = (g * v / norm)[:, :, None, :]
        return params, "pos"
    raise AssertionError(name)


@pytest.mark.parametrize("mistake", ["kernel reversed", "unit axis in the wrong place",
                                     "transposed conv treated as plain", "weight norm folded along the wrong dim"])
def test_a_wrong_port_fails_naming_the_layer(ms, cli, tmp_path, mistake):
    params, layer = wrong(mistake)
    original, converted = save_pair(ms, tmp_path, params)
    result = cli("verify", original, converted, "--junit", tmp_path / "j.xml")
    assert result.exit_code == 1
    assert f"verification failed for {layer}" in result.stderr
    failed = [case.get("name") for case in ET.parse(tmp_path / "j.xml").getroot() if case.find("failure") is not None]
    assert layer in failed or mistake == "unit axis in the wrong place"


def test_a_changed_bias_is_caught_bit_for_bit(ms, cli, tmp_path):
    _, params = correct_parameters()
    params["conv.bias"] = params["conv.bias"] + np.float32(1e-7)
    original, converted = save_pair(ms, tmp_path, params)
    result = cli("verify", original, converted)
    assert result.exit_code == 1 and "conv" in result.stderr


def test_torch2ms_verifies_its_own_output(cli, tmp_path):
    torch.manual_seed(0)
    torch.save(Speech().state_dict(), tmp_path / "model.pt")
    result = cli("torch2ms", tmp_path / "model.pt", "--fold-weight-norm", "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verification"]["passed"] and len(report["verification"]["layers"]) == 3
    assert (tmp_path / "model.ckpt").exists()


def test_a_migration_that_fails_verification_keeps_no_output(cli, tmp_path, monkeypatch):
    """Break the fold on purpose: verification must catch it and leave nothing behind."""
    import convmigrate.migrate as migrate

    torch.manual_seed(0)
    torch.save(Speech().state_dict(), tmp_path / "model.pt")
    (tmp_path / "model.ckpt").write_bytes(b"previous")
    monkeypatch.setattr(migrate, "fold_weight_norm", lambda g, v, dim, dtype: v * 2)
    result = cli("torch2ms", tmp_path / "model.pt", "--fold-weight-norm", "--force")
    assert result.exit_code == 1 and "verification failed for pos" in result.stderr
    assert (tmp_path / "model.ckpt").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt", "model.pt"]  # no staging file left


@pytest.mark.parametrize("direction", ["torch2ms", "ms2torch"])
@pytest.mark.parametrize("mistake", ["kernel reversed", "in/out axes swapped", "one tap off by 1e-3"])
def test_many_small_convs_checked_together_still_name_the_wrong_one(ms, cli, tmp_path, direction, mistake):
    """100 layers of one shape are checked in stacks of 64 (one grouped conv each): a mistake
    in one layer must fail that layer alone, in either direction."""
    rng = np.random.default_rng(0)
    torch_state = {}
    for index in range(100):
        torch_state[f"blocks.{index}.conv.weight"] = rng.standard_normal((6, 6, 3), dtype=np.float32)
        torch_state[f"blocks.{index}.conv.bias"] = rng.standard_normal(6, dtype=np.float32)
    ms_params = {k: v[:, :, None, :] if v.ndim == 3 else v for k, v in torch_state.items()}
    bad = "blocks.70.conv.weight"  # in the second stack
    if mistake == "kernel reversed":
        ms_params[bad] = ms_params[bad][..., ::-1]
    elif mistake == "in/out axes swapped":
        ms_params[bad] = np.swapaxes(ms_params[bad], 0, 1)
    else:
        ms_params[bad] = ms_params[bad].copy()
        ms_params[bad][2, 3, 0, 1] += np.float32(1e-3)
    torch.save({k: torch.from_numpy(v) for k, v in torch_state.items()}, tmp_path / "model.pt")
    ms.save_checkpoint([{"name": k, "data": ms.Tensor(np.ascontiguousarray(v))} for k, v in ms_params.items()],
                       str(tmp_path / "model.ckpt"))
    files = [tmp_path / "model.pt", tmp_path / "model.ckpt"]
    if direction == "ms2torch":
        files.reverse()
    result = cli("verify", *files, "--report", tmp_path / "r.json")
    assert result.exit_code == 1
    layers = json.loads((tmp_path / "r.json").read_text())["verification"]["layers"]
    assert len(layers) == 100
    assert [layer["name"] for layer in layers if not layer["passed"]] == ["blocks.70.conv"]
    assert "verification failed for blocks.70.conv" in result.stderr


def test_a_broken_big_layer_fails_with_its_original_side_computed_during_the_write(cli, tmp_path, monkeypatch):
    """While the output is written (BackgroundVerification), a computed conv of >= 1 MiB has its
    original side run and a moved one its configuration's numerics; a broken fold must still
    fail, naming the layer."""
    import convmigrate.migrate as migrate
    import convmigrate.verify.runner as verify

    torch.manual_seed(0)
    big = nn.Module()
    big.pos = weight_norm(nn.Conv1d(256, 256, 5, padding=2), dim=2)  # 1.25 MiB of weight
    big.conv = nn.Conv1d(256, 256, 5)
    torch.save(big.state_dict(), tmp_path / "model.pt")
    prepared, proven = [], []
    original_prepare = verify._Verifier.prepare

    def recording_prepare(self, stopping):
        original_prepare(self, stopping)
        prepared.extend(self.prepared)
        proven.extend(self.proofs)

    monkeypatch.setattr(verify._Verifier, "prepare", recording_prepare)
    result = cli("torch2ms", tmp_path / "model.pt", "--fold-weight-norm", "--report", tmp_path / "ok.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert len(prepared) == 1  # pos: its folded weight's original side
    assert [c[1:] for c in proven] == [((256, 256, 5), (256, 256, 1, 5), (256,), (256,))]  # conv's configuration
    layers = {layer["name"]: layer for layer in json.loads((tmp_path / "ok.json").read_text())["verification"]["layers"]}
    assert layers["pos"]["numerics"] == "own weights" and layers["pos"]["bit_exact"] is None
    assert layers["conv"]["numerics"] == "random weights of its configuration" and layers["conv"]["bit_exact"] is True
    monkeypatch.setattr(migrate, "fold_weight_norm", lambda g, v, dim, dtype: v * 2)
    result = cli("torch2ms", tmp_path / "model.pt", "--fold-weight-norm", "-o", tmp_path / "bad.ckpt")
    assert result.exit_code == 1 and "verification failed for pos" in result.stderr
    assert not (tmp_path / "bad.ckpt").exists()


def zero_initialised() -> nn.Module:
    """Two layers of one configuration, the first zero-initialised (as residual branches often are)."""
    model = nn.Sequential(nn.Conv1d(4, 4, 3, padding=1, padding_mode="reflect"),
                          nn.Conv1d(4, 4, 3, padding=1, padding_mode="reflect"))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()
    return model


def test_a_configuration_is_proven_on_random_weights_not_on_a_zero_layer(cli, tmp_path, monkeypatch):
    """A layer's numerics run its configuration on random weights: a translation that computes
    other outputs fails every layer of that configuration, the zero-initialised one included,
    whose own weights would give zeros on both sides and pass."""
    import dataclasses

    import convmigrate.verify.conv as conv

    torch.manual_seed(0)
    torch.save(zero_initialised().state_dict(), tmp_path / "net.pt")
    made = cli("torch2ms", tmp_path / "net.pt", "-o", tmp_path / "net.ckpt", "--model",
               "tests.test_verify:zero_initialised", "--report", tmp_path / "ok.json")
    assert made.exit_code == 0, made.stdout + made.stderr
    layers = json.loads((tmp_path / "ok.json").read_text())["verification"]["layers"]
    assert [(x["name"], x["bit_exact"], x["numerics"]) for x in layers] == [
        ("0", True, "random weights of its configuration"), ("1", True, "random weights of its configuration")]
    real = conv.setup_from_spec

    def zero_padded(spec):  # a wrong translation: zeros where PyTorch reflects (same lengths)
        setup = real(spec)
        return dataclasses.replace(setup, pre_pad=None, mindspore={**setup.mindspore, "pad_mode": "pad", "padding": 1})

    monkeypatch.setattr(conv, "setup_from_spec", zero_padded)
    result = cli("verify", tmp_path / "net.pt", tmp_path / "net.ckpt", "--layers", tmp_path / "net.layers.json",
                 "--report", tmp_path / "bad.json")
    assert result.exit_code == 1
    failed = [(x["name"], x["code"]) for x in json.loads((tmp_path / "bad.json").read_text())["verification"]["layers"]
              if not x["passed"]]
    assert failed == [("0", "numerics"), ("1", "numerics")]
    assert "its configuration computes other outputs (random weights)" in result.stdout
