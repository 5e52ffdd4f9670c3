"""`convmigrate compare`: the PyTorch model and its MindSpore port, run side by side.

A small audio network written twice (tests/compare_nets.py, tests/compare_ports.py): the faithful
port passes, and every deliberately wrong port fails naming the layer to fix. Real architectures
(transformers' Wav2Vec2Model and SpeechT5HifiGan against ports in tests/audio_ports.py) run end
to end. Every test runs the real CLI on files torch.save / mindspore.save_checkpoint wrote.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # every test here runs torch and MindSpore (a run without torch collects none)

from tests.compare_nets import audio_net  # noqa: E402 - imports torch

NET = ["--torch-model", "tests.compare_nets:audio_net", "--input", "2,4,50"]


def _port(name: str) -> list[str]:
    return ["--ms-model", f"tests.compare_ports:{name}"]


@pytest.fixture(scope="module")
def audio_pt(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "audio.pt"
    torch.save(audio_net().state_dict(), path)
    return path


def _layer_rows(stdout: str) -> dict[str, str]:
    """layer name -> its row in the layer table."""
    rows = {}
    for line in stdout.splitlines():
        match = re.match(r"^ (\S+(?: \(call \d+\))?)\s{2,}", line)
        if match:
            rows[match.group(1)] = line
    return rows


def test_faithful_port_passes_and_pairs_every_layer(ms, cli, audio_pt, tmp_path):
    result = cli("compare", audio_pt, *NET, *_port("faithful"), "--report", tmp_path / "r.json",
                 "--junit", tmp_path / "j.xml")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "MindSpore network <- converted by torch2ms (ckpt): 41 tensors loaded, strictly" in result.stdout
    assert "PyTorch model <- " in result.stdout and "43 tensors loaded, strictly" in result.stdout
    assert "compare: 2 output(s) match" in result.stdout
    rows = _layer_rows(result.stdout)
    for layer in ("pre", "same", "valid", "reflect", "replicate", "circular", "grouped", "wn", "bn", "down", "up",
                  "lstm", "rnn", "proj", "ln", "head", "act (call 2)"):
        assert rows[layer].rstrip().endswith("ok"), rows[layer]
    assert "ParametrizedConv1d / Conv1d" in rows["wn"]  # weight norm folded by the reference, no flag needed
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] and report["exit_code"] == 0 and report["command"] == "compare"
    assert [load["ok"] for load in report["load"]] == [True, True]
    assert [layer["name"] for layer in report["layers"]][:3] == ["pre", "act", "same"]  # execution order
    assert report["layers"][-1]["name"] == "head" and report["first_divergence"] is None
    assert all(o["passed"] and o["max_rel"] < 1e-5 for o in report["outputs"])
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.get("failures") == "0" and int(suite.get("tests")) == 5  # 2 loads, 2 outputs, layers


# (port factory, what the one-line error must say, the layer table row that must be marked first)
WRONG_PORTS = [
    # padding=1, padding_mode='reflect' ported as zero padding: same shape, other edge values
    ("padded_differently", "reflect (Conv1d / Conv1d) is the first layer beyond tolerance", "reflect"),
    # MindSpore's has_bias defaults to False: the converted bias has no home
    ("forgotten_bias", "MindSpore network: 1 tensor(s) with no home (grouped.bias)", None),
    # Conv1dTranspose with pad_mode='valid' where PyTorch crops padding=1: 2 columns longer
    ("transposed_pad_mode", "up (ConvTranspose1d / Conv1dTranspose) has another output shape: torch (2, 8, 46), "
     "MindSpore (2, 8, 48)", "up"),
    # LayerNorm left at MindSpore's default epsilon 1e-7 on a quiet signal (PyTorch: 1e-5)
    ("layernorm_epsilon", "ln (LayerNorm / LayerNorm) is the first layer beyond tolerance", "ln"),
    # `proj` called `projection` in the port: both names, at once
    ("renamed_layer", "2 parameter(s) left unloaded (projection.weight, projection.bias), "
     "2 tensor(s) with no home (proj.weight, proj.bias)", None),
    # the strided conv left out of the port
    ("missing_layer", "2 tensor(s) with no home (down.weight, down.bias)", None),
    # a parameter-free layer left out: the next layer parts, after the one the port does not run
    ("missing_activation", "down (Conv1d / Conv1d) is the first layer beyond tolerance (after act (call 2), which "
     "the port does not run)", "down"),
    # (N, C, L) fed to an LSTM that wants (N, L, C): MindSpore raises inside the cell
    ("forgotten_transpose", "the MindSpore network fails on the inputs the PyTorch model runs in cell lstm:", None),
]


@pytest.mark.parametrize(("port", "message", "first"), WRONG_PORTS, ids=[case[0] for case in WRONG_PORTS])
def test_wrong_port_fails_naming_the_layer_to_fix(ms, cli, audio_pt, tmp_path, port, message, first):
    result = cli("compare", audio_pt, *NET, *_port(port), "-o", tmp_path / "kept.ckpt", "--report", tmp_path / "r.json")
    assert result.exit_code == 1, result.stdout + result.stderr
    error = result.stderr.strip()
    assert error.startswith("error: ") and "\n" not in error and message in error, error
    report = json.loads((tmp_path / "r.json").read_text())
    assert not report["ok"] and report["exit_code"] == 1
    if first is not None:
        assert report["first_divergence"]["name"] == first
        assert "<- first to part" in _layer_rows(result.stdout)[first]
    assert not (tmp_path / "kept.ckpt").exists()  # -o keeps only a proven port
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no scratch left behind
    assert report["failures"] and report["summary"] in error


def test_the_first_layer_to_part_comes_with_its_translation(ms, cli, audio_pt):
    result = cli("compare", audio_pt, *NET, *_port("padded_differently"))
    assert "first to part: reflect (Conv1d / Conv1d): differs, off by" in result.stdout
    assert ("convmigrate layers translates it to: layer = mindspore.nn.Conv1d(8, 8, 3, pad_mode='valid', "
            "has_bias=True); y = layer(mindspore.ops.pad(x, (1, 1), mode='reflect'))") in " ".join(result.stdout.split())
    result = cli("compare", audio_pt, *NET, *_port("layernorm_epsilon"))
    assert "mindspore.nn.LayerNorm((6,), epsilon=1e-05)" in result.stdout
    result = cli("compare", audio_pt, *NET, *_port("forgotten_bias"))
    assert "grouped has a weight but no bias; MindSpore's nn.Conv1d and Conv1dTranspose default to has_bias=False" \
        in " ".join(result.stdout.split())


def test_quiet_prints_only_the_error_and_the_failing_names(ms, cli, audio_pt):
    quiet = cli("compare", audio_pt, *NET, *_port("faithful"), "-q")
    assert quiet.exit_code == 0 and quiet.stdout == quiet.stderr == ""
    result = cli("compare", audio_pt, *NET, *_port("renamed_layer"), "-q")
    assert result.exit_code == 1 and result.stdout == ""
    error, *names = result.stderr.splitlines()
    assert error.startswith("error: the weights do not load strictly; MindSpore network: 2 parameter(s) left unloaded")
    assert [n.strip() for n in names] == ["projection.weight", "projection.bias", "proj.weight", "proj.bias"]


def test_github_step_summary_names_the_layer_to_fix(ms, cli, audio_pt, tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    assert cli("compare", audio_pt, *NET, *_port("padded_differently"), "-q").exit_code == 1
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("### convmigrate compare: ❌ failed")
    assert "| `reflect` | `Conv1d / Conv1d` |" in summary and "**<- first to part**" in summary
    assert "mode='reflect'" in summary  # the fix


def test_json_prints_the_report(ms, cli, audio_pt, tmp_path):
    result = cli("compare", audio_pt, *NET, *_port("layernorm_epsilon"), "--json", "--report", tmp_path / "r.json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == json.loads((tmp_path / "r.json").read_text())
    report = json.loads(result.stdout)
    assert report["failures"] == ["ln", "0"] and report["first_divergence"]["status"] == "differs"


def test_o_keeps_the_proven_checkpoint_and_it_loads_strictly(ms, cli, audio_pt, tmp_path):
    result = cli("compare", audio_pt, *NET, *_port("faithful"), "-o", tmp_path / "audio.ckpt")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert f"kept: {tmp_path / 'audio.ckpt'}" in result.stdout
    from tests.compare_ports import faithful

    not_loaded, unused = ms.load_param_into_net(faithful(), ms.load_checkpoint(str(tmp_path / "audio.ckpt")), strict_load=True)
    assert not_loaded == [] and unused == []
    assert cli("compare", audio_pt, *NET, *_port("faithful"), "-o", tmp_path / "audio.ckpt").exit_code == 2  # exists
    assert cli("compare", audio_pt, *NET, *_port("faithful"), "-o", tmp_path / "audio.ckpt", "--force").exit_code == 0


def test_a_mindspore_checkpoint_is_compared_through_ms2torch(ms, cli, tmp_path):
    """WEIGHTS written by mindspore.save_checkpoint: the PyTorch side gets the ms2torch conversion."""
    from tests.audio_ports import wav2vec2_feature_encoder

    port = wav2vec2_feature_encoder()
    rng = np.random.default_rng(0)
    for param in port.get_parameters():
        param.set_data(ms.Tensor(rng.standard_normal(param.shape).astype(np.float32) * 0.3))
    ms.save_checkpoint(port, str(tmp_path / "fe.ckpt"))
    result = cli("compare", tmp_path / "fe.ckpt", "--torch-model", "tests.audio_models:wav2vec2_feature_encoder",
                 "--ms-model", "tests.audio_ports:wav2vec2_feature_encoder", "--input", "1,800", "-o", tmp_path / "fe.pt")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "PyTorch model <- converted by ms2torch (pt)" in result.stdout
    assert "conv_layers.0.layer_norm" in result.stdout  # a GroupNorm: gamma/beta -> weight/bias
    state = torch.load(tmp_path / "fe.pt", weights_only=True)
    assert state["conv_layers.0.conv.weight"].shape == (16, 1, 10)


def test_inputs_from_an_npz_positional_and_named_with_integer_ids(ms, cli, tmp_path):
    """tests/nets.py: forward(x, ids) with an Embedding; ids are int64 and come from the .npz."""
    from tests.nets import TorchNet, inputs, randomize_torch

    torch.save(randomize_torch(TorchNet()).state_dict(), tmp_path / "net.pt")
    x, ids = inputs()
    np.savez(tmp_path / "ids.npz", ids=ids.astype(np.int64))
    np.savez(tmp_path / "both.npz", x, ids.astype(np.int64))
    common = ["--torch-model", "tests.nets:TorchNet", "--ms-model", "tests.nets:mindspore_net"]
    named = cli("compare", tmp_path / "net.pt", *common, "--input", "2,4,16", "--inputs", tmp_path / "ids.npz",
                "--report", tmp_path / "r.json")
    assert named.exit_code == 0, named.stdout + named.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["inputs"] == [{"name": "input 0", "shape": [2, 4, 16], "dtype": "float32"},
                                {"name": "ids (keyword)", "shape": [2, 5], "dtype": "int64"}]
    assert "emb" in _layer_rows(named.stdout) and len(report["outputs"]) == 2
    positional = cli("compare", tmp_path / "net.pt", *common, "--inputs", tmp_path / "both.npz")
    assert positional.exit_code == 0, positional.stdout + positional.stderr
    assert "head (call 2)" in _layer_rows(positional.stdout)  # head runs twice: paired call by call


def test_wav2vec2_from_transformers_against_its_mindspore_port(ms, cli, tmp_path):
    """A real architecture end to end: feature encoder, projection, weight-normalised positional
    conv, attention and feed-forward blocks; every layer paired, both outputs within tolerance."""
    from tests.audio_models import wav2vec2_small

    torch.save(wav2vec2_small().state_dict(), tmp_path / "w2v.pt")
    model = ["--torch-model", "tests.audio_models:wav2vec2_small", "--input", "1,2000"]
    result = cli("compare", tmp_path / "w2v.pt", *model, "--ms-model", "tests.audio_ports:wav2vec2_small",
                 "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert [o["name"] for o in report["outputs"]] == ["last_hidden_state", "extract_features"]
    paired = {layer["name"] for layer in report["layers"] if layer["status"] == "ok"}
    assert {"feature_extractor.conv_layers.0.layer_norm", "encoder.pos_conv_embed.conv",
            "encoder.layers.1.attention", "encoder.layers.1.final_layer_norm"} <= paired
    # the port trims the positional conv's extra column inline: transformers' SamePadLayer has no cell
    assert {layer["name"]: layer["status"] for layer in report["layers"] if layer["status"] != "ok"} == {
        "encoder.pos_conv_embed.padding": "no MindSpore cell"}
    # MindSpore's nn.GELU defaults to the tanh approximation: a port that kept it parts at once
    wrong = cli("compare", tmp_path / "w2v.pt", *model, "--ms-model", "tests.audio_ports:wav2vec2_small_tanh_gelu")
    assert wrong.exit_code == 1
    assert "feature_extractor.conv_layers.0.activation (GELUActivation / GELU) is the first layer beyond tolerance" \
        in wrong.stderr


def test_hifigan_vocoder_from_transformers_against_its_mindspore_port(ms, cli, tmp_path):
    """Transposed-conv upsampling and dilated residual blocks, with the weights scaled so the
    waveform is not ~1e-6 (the init's), which any tolerance would pass."""
    from tests.audio_models import hifigan_small

    model = hifigan_small()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("weight"):
                tensor.mul_(10)
    torch.save(model.state_dict(), tmp_path / "hg.pt")
    result = cli("compare", tmp_path / "hg.pt", "--torch-model", "tests.audio_models:hifigan_small",
                 "--ms-model", "tests.audio_ports:hifigan_small", "--input", "1,20,8", "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["outputs"][0]["torch_shape"] == [1, 80]
    assert len([layer for layer in report["layers"] if layer["status"] == "ok"]) == 24
    # At the init's scale (a waveform of ~1e-6) a wrong slope is off by 1e-7 only: no absolute
    # floor in the tolerance lets that pass.
    torch.save(hifigan_small().state_dict(), tmp_path / "init.pt")
    wrong = cli("compare", tmp_path / "init.pt", "--torch-model", "tests.audio_models:hifigan_small",
                "--ms-model", "tests.audio_ports:hifigan_small_config_slope", "--input", "1,20,8")
    assert wrong.exit_code == 1
    assert "conv_post (Conv1d / Conv1d) is the first layer beyond tolerance" in wrong.stderr


def test_mindspore_weights_against_a_weight_normalised_model(ms, cli, audio_pt, tmp_path):
    """The MindSpore checkpoint holds `wn` folded; the PyTorch model computes the same without
    its weight norm, which compare takes off in memory (and says so)."""
    assert cli("compare", audio_pt, *NET, *_port("faithful"), "-o", tmp_path / "audio.ckpt", "-q").exit_code == 0
    result = cli("compare", tmp_path / "audio.ckpt", *NET, *_port("faithful"), "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "wn: weight norm taken off the PyTorch model in memory" in result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["direction"] == "ms2torch" and report["ok"]
    assert {layer["name"]: layer["torch_class"] for layer in report["layers"]}["wn"] == "Conv1d"
