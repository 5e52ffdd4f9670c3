"""A real architecture nobody here wrote: transformers' Wav2Vec2Model, built from a small config
(no hub, no download), migrated with the CLI and run in MindSpore layer by layer against PyTorch.

Its feature encoder is a stack of strided Conv1d with a GroupNorm, its positional embedding a
grouped (4 groups here, 16 in the released models), weight-normalised Conv1d with an even kernel (parametrizations,
dim=2), and its transformer blocks carry LayerNorms and Linears.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convmigrate.layers import LayerKind, module_layers, translate_layer
from convmigrate.vocab import Framework

pytestmark = pytest.mark.slow


def small_wav2vec2():
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        conv_dim=(16, 16, 16), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
    )
    torch.manual_seed(0)
    return Wav2Vec2Model(config).eval()


def _load(ms, layer, params: dict, prefix: str) -> None:
    """Load `prefix.*` parameters of the migrated checkpoint into a standalone MindSpore layer."""
    own = {name.removeprefix(prefix + "."): value for name, value in params.items() if name.startswith(prefix + ".")}
    for name, value in own.items():
        value.name = name
    not_loaded, _unused = ms.load_param_into_net(layer, own)
    assert not_loaded == [], (prefix, not_loaded)


def test_wav2vec2_migrates_and_runs_layer_by_layer_in_mindspore(ms, cli, tmp_path):
    model = small_wav2vec2()
    torch.save(model.state_dict(), tmp_path / "w2v.pt")
    result = cli("torch2ms", tmp_path / "w2v.pt", "--fold-weight-norm", "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    params = ms.load_checkpoint(str(tmp_path / "w2v.ckpt"))

    rng = np.random.default_rng(0)
    checked: list[str] = []
    modules = dict(model.named_modules())
    for name, kind, kwargs in module_layers(model):
        module = modules[name]
        if kind is LayerKind.CONV1D:
            spec = translate_layer(kind, Framework.TORCH, kwargs, name)
            layer = ms.nn.Conv1d(**{k: v for k, v in spec.mindspore.items() if not k.endswith("_init")})
            x = rng.standard_normal((1, kwargs["in_channels"], 400)).astype(np.float32)
            inputs = ms.Tensor(x)
            if spec.pre_pad is not None:
                inputs = ms.ops.pad(inputs, (spec.pre_pad.left, spec.pre_pad.right), mode=spec.pre_pad.mode)
        elif kind is LayerKind.GROUP_NORM:
            layer = ms.nn.GroupNorm(module.num_groups, module.num_channels, eps=module.eps)
            x = rng.standard_normal((1, module.num_channels, 50)).astype(np.float32)
            inputs = ms.Tensor(x)
        elif kind is LayerKind.LAYER_NORM:
            layer = ms.nn.LayerNorm(tuple(module.normalized_shape), epsilon=module.eps)
            x = rng.standard_normal((1, 7, *module.normalized_shape)).astype(np.float32)
            inputs = ms.Tensor(x)
        else:
            continue
        _load(ms, layer, params, name)
        layer.set_train(False)
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(layer(inputs).asnumpy(), expected, rtol=1e-4, atol=1e-4, err_msg=name)
        checked.append(name)

    for name, module in modules.items():  # the Linears: Dense keeps PyTorch's names and layout
        if isinstance(module, torch.nn.Linear):
            layer = ms.nn.Dense(module.in_features, module.out_features, has_bias=module.bias is not None)
            _load(ms, layer, params, name)
            x = rng.standard_normal((3, module.in_features)).astype(np.float32)
            with torch.no_grad():
                expected = module(torch.from_numpy(x)).numpy()
            np.testing.assert_allclose(layer(ms.Tensor(x)).asnumpy(), expected, rtol=1e-4, atol=1e-5, err_msg=name)
            checked.append(name)

    assert "encoder.pos_conv_embed.conv" in checked  # grouped, weight-normalised, even kernel
    assert "feature_extractor.conv_layers.0.layer_norm" in checked  # a GroupNorm named layer_norm
    assert len([n for n in checked if "conv_layers" in n and n.endswith(".conv")]) == 3
    # every parameter of the model has a home in the migrated checkpoint
    state = model.state_dict()
    assert len(params) == len(state) - 1  # the weight-norm pair became one weight


def test_wav2vec2_round_trips_bit_exactly_apart_from_the_fold(cli, tmp_path):
    model = small_wav2vec2()
    torch.save(model.state_dict(), tmp_path / "w2v.pt")
    assert cli("torch2ms", tmp_path / "w2v.pt", "--fold-weight-norm", "-q").exit_code == 0
    assert cli("ms2torch", tmp_path / "w2v.ckpt", "-o", tmp_path / "back.pt", "-q").exit_code == 0
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    for name, tensor in model.state_dict().items():
        if "parametrizations" in name:
            continue
        assert torch.equal(back[name], tensor), name
    folded = model.encoder.pos_conv_embed.conv.weight.detach()  # torch's own weight-norm forward
    torch.testing.assert_close(back["encoder.pos_conv_embed.conv.weight"], folded, rtol=1e-6, atol=1e-7)
