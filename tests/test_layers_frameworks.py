"""Layer translations and the seed document's claims, checked on the real torch and MindSpore.

Each conv test builds the source layer and the translated layer from the layers JSON (pre_pad
with the framework's own pad op, constructor from the JSON kwargs, post_crop), loads the same
weights (MindSpore's unit axis inserted at position 2) and compares outputs over several input
lengths. docs/differences.md cites these tests by name.
"""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch

from convmigrate.layers import TRANSLATED_KINDS, LayerKind, translate_layer
from convmigrate.layers.tables import MINDSPORE_SIGNATURES, REQUIRED, TORCH_SIGNATURES
from convmigrate.vocab import Framework

TORCH, MS = Framework.TORCH, Framework.MINDSPORE
F = torch.nn.functional
ATOL = 2e-5


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _json_layer(spec) -> dict:
    """The layer as a reader of `--json` sees it."""
    return json.loads(json.dumps(spec.to_json()))


def _post_crop(y: np.ndarray, crop, bias: np.ndarray | None) -> np.ndarray:
    if crop is None:
        return y
    left, right = crop
    y = y[..., left : y.shape[-1] - max(right, 0)]
    if right < 0:
        tail = np.zeros(y.shape[:-1] + (-right,), y.dtype) + (0 if bias is None else bias.reshape(1, -1, 1))
        y = np.concatenate([y, tail], axis=-1)
    return y


def _torch_layer(kind: LayerKind, kwargs: dict, weight: np.ndarray, bias: np.ndarray | None) -> torch.nn.Module:
    layer = getattr(torch.nn, TORCH_SIGNATURES[kind].class_name)(**kwargs)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
        if bias is not None:
            layer.bias.copy_(torch.from_numpy(bias))
    return layer


def _ms_layer(ms, kind: LayerKind, kwargs: dict, weight: np.ndarray, bias: np.ndarray | None):
    layer = getattr(ms.nn, MINDSPORE_SIGNATURES[kind].class_name)(**kwargs)
    layer.weight.set_data(ms.Tensor(weight[:, :, None, :]))  # (A, B, K) -> (A, B, 1, K)
    if bias is not None:
        layer.bias.set_data(ms.Tensor(bias))
    return layer


def _run_torch(layer, x: np.ndarray, pre_pad: dict | None) -> np.ndarray:
    xt = torch.from_numpy(x)
    if pre_pad:
        xt = F.pad(xt, tuple(pre_pad["pads"]), mode=pre_pad["mode"], **({"value": pre_pad["value"]} if pre_pad["mode"] == "constant" else {}))
    with torch.no_grad():
        return layer(xt).numpy()


def _run_ms(ms, layer, x: np.ndarray, pre_pad: dict | None) -> np.ndarray:
    xm = ms.Tensor(x)
    if pre_pad:
        xm = ms.ops.pad(xm, tuple(pre_pad["pads"]), mode=pre_pad["mode"])
    return layer(xm).asnumpy()


def _weights(kind: LayerKind, torch_kw: dict, rng) -> tuple[np.ndarray, np.ndarray | None]:
    cin, cout, g, k = torch_kw["in_channels"], torch_kw["out_channels"], torch_kw["groups"], torch_kw["kernel_size"]
    shape = (cout, cin // g, k) if kind is LayerKind.CONV1D else (cin, cout // g, k)
    weight = rng.standard_normal(shape).astype(np.float32)
    return weight, (rng.standard_normal(cout).astype(np.float32) if torch_kw["bias"] else None)


def _compare_conv(ms, kind: LayerKind, source: Framework, kwargs: dict, lengths: list[int] | None = None) -> dict:
    """Translate, then run both real layers on the same weights; returns the JSON layer."""
    spec = translate_layer(kind, source, kwargs)
    layer = _json_layer(spec)
    rng = _rng(1)
    weight, bias = _weights(kind, layer["torch"], rng)
    torch_layer = _torch_layer(kind, layer["torch"], weight, bias)
    ms_layer = _ms_layer(ms, kind, layer["mindspore"], weight, bias)
    for length in lengths or spec.verified_lengths:
        x = rng.standard_normal((2, layer["torch"]["in_channels"], length)).astype(np.float32)
        if source is TORCH:
            expected = _run_torch(torch_layer, x, None)
            got = _post_crop(_run_ms(ms, ms_layer, x, layer["pre_pad"]), layer["post_crop"], bias)
        else:
            expected = _run_ms(ms, ms_layer, x, None)
            got = _post_crop(_run_torch(torch_layer, x, layer["pre_pad"]), layer["post_crop"], bias)
        assert got.shape == expected.shape, (layer["code"], length)
        # float32 sums of C_in/g * K products: the tolerance grows with the output's magnitude.
        atol = ATOL * max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(got, expected, atol=atol, rtol=1e-5, err_msg=f"{layer['code']} L={length}")
    return layer


# --- PyTorch -> MindSpore ------------------------------------------------------------------

TORCH_CONV1D_SWEEP = [
    # (comment) kwargs beyond (in_channels, out_channels, kernel_size)
    dict(kernel_size=3),  # all defaults: padding 0 -> pad_mode='valid', has_bias=True
    dict(kernel_size=4, padding=1),  # zeros -> pad_mode='pad'
    dict(kernel_size=4, padding=(2,), bias=False),  # 1-tuple padding
    dict(kernel_size=5, padding="valid", padding_mode="reflect"),  # 'valid' ignores the mode
    dict(kernel_size=3, padding="same"),  # symmetric same
    dict(kernel_size=4, padding="same"),  # odd total: extra zero on the right in both
    dict(kernel_size=4, padding="same", dilation=3),  # odd kernel span 10 -> 4 + 5... total 9
    dict(kernel_size=2, padding="same", dilation=1, groups=2),
    dict(kernel_size=4, padding=1, padding_mode="reflect"),  # the seed's Code Example 3
    dict(kernel_size=4, padding=2, padding_mode="replicate"),
    dict(kernel_size=4, padding=3, padding_mode="circular"),
    dict(kernel_size=4, padding="same", padding_mode="reflect"),
    dict(kernel_size=5, padding="same", padding_mode="replicate", dilation=2),
    dict(kernel_size=4, padding="same", padding_mode="circular"),
    dict(kernel_size=3, padding="valid", padding_mode="circular", stride=2),
    dict(kernel_size=5, stride=2, padding=2),
    dict(kernel_size=5, stride=3, padding=1, padding_mode="reflect", dilation=2),
    dict(kernel_size=3, stride=2, dilation=2, groups=4, bias=False),  # depthwise-ish
    dict(kernel_size=1, stride=2),  # pointwise, strided
    dict(kernel_size=7, padding=3, padding_mode="replicate", groups=2, stride=2),
    dict(kernel_size=4, padding=0, padding_mode="reflect"),  # zero padding: no pre_pad at all
]


@pytest.mark.parametrize("extra", TORCH_CONV1D_SWEEP, ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()))
def test_torch_conv1d_translation_runs_identically_in_mindspore(ms, extra):
    layer = _compare_conv(ms, LayerKind.CONV1D, TORCH, {"in_channels": 4, "out_channels": 8, **extra})
    assert layer["exact"] is True
    assert layer["mindspore"]["pad_mode"] in ("pad", "valid", "same")


TORCH_TRANSPOSE_SWEEP = [
    dict(kernel_size=4, stride=2, padding=1),  # the example: pad_mode='pad'
    dict(kernel_size=3),  # defaults: full output, pad_mode='valid'
    dict(kernel_size=5, stride=3, padding=2, dilation=2, groups=2, bias=False),
    dict(kernel_size=3, stride=2, padding=1, output_padding=1),  # exact=False: crop 1 left
    dict(kernel_size=5, stride=4, padding=3, output_padding=2, dilation=1),
    dict(kernel_size=2, stride=3, output_padding=1),  # dk < s: MindSpore 'valid' pads the tail, exact
    dict(kernel_size=2, stride=3, output_padding=2),  # beyond even 'valid': append bias columns
    dict(kernel_size=3, stride=1, padding=2, dilation=2, output_padding=1),  # output_padding < dilation
]


@pytest.mark.parametrize("extra", TORCH_TRANSPOSE_SWEEP, ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()))
def test_torch_conv_transpose1d_translation_runs_identically_in_mindspore(ms, extra):
    layer = _compare_conv(ms, LayerKind.CONV_TRANSPOSE1D, TORCH, {"in_channels": 4, "out_channels": 6, **extra})
    assert layer["exact"] is (layer["post_crop"] is None)


def test_transposed_output_padding_without_static_equivalent_is_marked(ms):
    layer = _compare_conv(ms, LayerKind.CONV_TRANSPOSE1D, TORCH,
                          dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, output_padding=1))
    assert layer["exact"] is False and layer["post_crop"] == [1, 0]
    assert "y = layer(x)[..., 1:]" in layer["code"]["mindspore"]


def test_transposed_pad_mode_pad_matches_torch_padding(ms):
    # MindSpore's Conv1dTranspose(pad_mode='pad', padding=p) == torch's ConvTranspose1d(padding=p).
    layer = _compare_conv(ms, LayerKind.CONV_TRANSPOSE1D, TORCH,
                          dict(in_channels=4, out_channels=6, kernel_size=4, stride=2, padding=1))
    assert layer["mindspore"]["pad_mode"] == "pad" and layer["mindspore"]["padding"] == 1 and layer["exact"]


# --- MindSpore -> PyTorch ------------------------------------------------------------------

MS_CONV1D_SWEEP = [
    dict(kernel_size=3),  # the default pad_mode='same', symmetric -> padding=1
    dict(kernel_size=4),  # 'same', odd total -> padding='same' (extra on the right in both)
    dict(kernel_size=4, dilation=2, has_bias=True),
    dict(kernel_size=4, pad_mode="valid", has_bias=True),
    dict(kernel_size=5, pad_mode="pad", padding=2, group=2),
    dict(kernel_size=3, pad_mode="pad", padding=1, stride=2),
    dict(kernel_size=4, pad_mode="valid", stride=3, dilation=2),
    dict(kernel_size=4, pad_mode="same", group=4, has_bias=True),
]


@pytest.mark.parametrize("extra", MS_CONV1D_SWEEP, ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()))
def test_mindspore_conv1d_translation_runs_identically_in_torch(ms, extra):
    layer = _compare_conv(ms, LayerKind.CONV1D, MS, {"in_channels": 4, "out_channels": 8, **extra})
    assert layer["exact"] is True and layer["pre_pad"] is None


@pytest.mark.parametrize("kernel_size,stride", [(5, 2), (4, 2), (3, 3), (1, 2)])
def test_mindspore_same_strided_is_exact_only_for_lengths_divisible_by_stride(ms, kernel_size, stride):
    kwargs = dict(in_channels=4, out_channels=8, kernel_size=kernel_size, stride=stride, has_bias=True)
    layer = _compare_conv(ms, LayerKind.CONV1D, MS, kwargs)  # over the verified lengths: multiples of stride
    assert layer["exact"] is False and layer["length_multiple"] == stride
    assert all(length % stride == 0 for length in layer["verified_lengths"])
    # The code's per-call pad reproduces MindSpore at every length, divisible or not.
    rng = _rng(2)
    weight, bias = _weights(LayerKind.CONV1D, layer["torch"], rng)
    torch_layer = _torch_layer(LayerKind.CONV1D, layer["torch"], weight, bias)
    ms_layer = _ms_layer(ms, LayerKind.CONV1D, layer["mindspore"], weight, bias)
    forward = layer["code"]["torch"].split("\n", 1)[1]
    for length in range(kernel_size + 1, kernel_size + 1 + 2 * stride):
        x = rng.standard_normal((1, 4, length)).astype(np.float32)
        scope = {"torch": torch, "layer": torch_layer, "x": torch.from_numpy(x)}
        with torch.no_grad():
            exec(forward, scope)  # our own generated code, in a test
        np.testing.assert_allclose(scope["y"].numpy(), _run_ms(ms, ms_layer, x, None), atol=ATOL)


def test_mindspore_same_strided_static_pad_is_wrong_for_other_lengths(ms):
    # Why exact is False: the static pre_pad (right for even L) is off for odd L.
    layer = _compare_conv(ms, LayerKind.CONV1D, MS, dict(in_channels=2, out_channels=3, kernel_size=4, stride=2))
    rng = _rng(3)
    weight, _ = _weights(LayerKind.CONV1D, layer["torch"], rng)
    x = rng.standard_normal((1, 2, 11)).astype(np.float32)
    expected = _run_ms(ms, _ms_layer(ms, LayerKind.CONV1D, layer["mindspore"], weight, None), x, None)
    got = _run_torch(_torch_layer(LayerKind.CONV1D, layer["torch"], weight, None), x, layer["pre_pad"])
    assert got.shape != expected.shape or not np.allclose(got, expected, atol=1e-3)


MS_TRANSPOSE_SWEEP = [
    dict(kernel_size=3),  # 'same' stride 1: crop 2 = 1 + 1 -> padding=1, exact
    dict(kernel_size=4, has_bias=True),  # 'same' stride 1, odd crop: torch crops evenly -> post_crop
    dict(kernel_size=4, stride=2, has_bias=True),  # 'same' crop 2 -> padding=1, exact
    dict(kernel_size=3, stride=2),  # 'same' crop 1, odd -> post_crop [0, 1]
    dict(kernel_size=2, stride=3, has_bias=True),  # 'same' with dk < s -> output_padding=1, exact
    dict(kernel_size=4, stride=2, pad_mode="pad", padding=1, has_bias=True),
    dict(kernel_size=3, stride=2, pad_mode="valid", group=2),
    dict(kernel_size=2, stride=4, pad_mode="valid", has_bias=True),  # dk < s -> output_padding=2
    dict(kernel_size=3, stride=2, pad_mode="same", dilation=2, has_bias=True),
]


@pytest.mark.parametrize("extra", MS_TRANSPOSE_SWEEP, ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()))
def test_mindspore_conv1d_transpose_translation_runs_identically_in_torch(ms, extra):
    layer = _compare_conv(ms, LayerKind.CONV_TRANSPOSE1D, MS, {"in_channels": 4, "out_channels": 6, **extra})
    assert layer["exact"] is (layer["post_crop"] is None)


# --- the generated code is the translation -----------------------------------------------


@pytest.mark.parametrize("source,kind,kwargs", [
    (TORCH, LayerKind.CONV1D, dict(in_channels=4, out_channels=8, kernel_size=4, padding="same", padding_mode="reflect")),
    (TORCH, LayerKind.CONV_TRANSPOSE1D, dict(in_channels=4, out_channels=6, kernel_size=2, stride=3, output_padding=2)),
    (MS, LayerKind.CONV_TRANSPOSE1D, dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, has_bias=True)),
])
def test_target_code_runs_and_matches_the_source(ms, source, kind, kwargs):
    spec = translate_layer(kind, source, kwargs)
    rng = _rng(4)
    weight, bias = _weights(kind, spec.torch, rng)
    x = rng.standard_normal((1, 4, 9)).astype(np.float32)
    if source is TORCH:
        expected = _run_torch(_torch_layer(kind, spec.torch, weight, bias), x, None)
        scope = {"mindspore": ms, "x": ms.Tensor(x)}
        exec(spec.code["mindspore"], scope)
        scope["layer"].weight.set_data(ms.Tensor(weight[:, :, None, :]))
        if bias is not None:
            scope["layer"].bias.set_data(ms.Tensor(bias))
        exec(spec.code["mindspore"].split("\n", 1)[1], scope)  # forward again with the loaded weights
        got = scope["y"].asnumpy()
    else:
        expected = _run_ms(ms, _ms_layer(ms, kind, spec.mindspore, weight, bias), x, None)
        scope = {"torch": torch, "x": torch.from_numpy(x)}
        exec(spec.code["torch"].split("\n", 1)[0], scope)
        with torch.no_grad():
            scope["layer"].weight.copy_(torch.from_numpy(weight))
            if bias is not None:
                scope["layer"].bias.copy_(torch.from_numpy(bias))
            exec(spec.code["torch"].split("\n", 1)[1], scope)
        got = scope["y"].numpy()
    np.testing.assert_allclose(got, expected, atol=ATOL)


# --- norm layers, Embedding, PReLU --------------------------------------------------------

NORM_PARAMS = {  # torch parameter -> MindSpore parameter (the checkpoint renames)
    LayerKind.BATCH_NORM1D: {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"},
    LayerKind.LAYER_NORM: {"weight": "gamma", "bias": "beta"},
    LayerKind.GROUP_NORM: {"weight": "gamma", "bias": "beta"},
    LayerKind.EMBEDDING: {"weight": "embedding_table"},
    LayerKind.PRELU: {"weight": "w"},
}


def _norm_pair(ms, spec):
    layer = _json_layer(spec)
    torch_layer = getattr(torch.nn, TORCH_SIGNATURES[spec.kind].class_name)(**layer["torch"])
    ms_layer = getattr(ms.nn, MINDSPORE_SIGNATURES[spec.kind].class_name)(**layer["mindspore"])
    rng = _rng(5)
    state = torch_layer.state_dict()
    for torch_name, ms_name in NORM_PARAMS[spec.kind].items():
        if torch_name not in state:
            continue
        value = rng.uniform(0.5, 1.5, tuple(state[torch_name].shape)).astype(np.float32)
        state[torch_name] = torch.from_numpy(value)
        getattr(ms_layer, ms_name).set_data(ms.Tensor(value))
    torch_layer.load_state_dict(state)
    return torch_layer, ms_layer


@pytest.mark.parametrize("source,kind,kwargs", [
    (TORCH, LayerKind.BATCH_NORM1D, dict(num_features=6, eps=1e-3, momentum=0.3)),
    (TORCH, LayerKind.BATCH_NORM1D, dict(num_features=6, track_running_stats=False)),
    (MS, LayerKind.BATCH_NORM1D, dict(num_features=6, momentum=0.8)),
    (TORCH, LayerKind.LAYER_NORM, dict(normalized_shape=9)),
    (TORCH, LayerKind.LAYER_NORM, dict(normalized_shape=[6, 9], eps=1e-6)),
    (MS, LayerKind.LAYER_NORM, dict(normalized_shape=(9,), epsilon=1e-6)),
    (TORCH, LayerKind.GROUP_NORM, dict(num_groups=3, num_channels=6)),
    (MS, LayerKind.GROUP_NORM, dict(num_groups=2, num_channels=6, eps=1e-4)),
    (TORCH, LayerKind.PRELU, dict(num_parameters=6, init=0.1)),
    (MS, LayerKind.PRELU, dict(channel=1)),
], ids=lambda v: v.value if isinstance(v, (Framework, LayerKind)) else ",".join(f"{k}={x}" for k, x in v.items()))
def test_norm_translation_runs_identically(ms, source, kind, kwargs):
    spec = translate_layer(kind, source, kwargs)
    torch_layer, ms_layer = _norm_pair(ms, spec)
    x = (_rng(6).standard_normal((4, 6, 9)) * 0.01).astype(np.float32)  # small variance: eps matters
    for train in (False, True):
        torch_layer.train(train)
        ms_layer.set_train(train)
        expected = torch_layer(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(ms_layer(ms.Tensor(x)).asnumpy(), expected, atol=1e-4, rtol=1e-4)
    if kind is LayerKind.BATCH_NORM1D and spec.torch["track_running_stats"]:
        # One training step updated both running means the same way: momentum = 1 - torch's.
        np.testing.assert_allclose(ms_layer.moving_mean.asnumpy(), torch_layer.running_mean.numpy(), atol=1e-6)


def test_batchnorm_momentum_is_one_minus(ms):
    spec = translate_layer(LayerKind.BATCH_NORM1D, TORCH, dict(num_features=6, momentum=0.3))
    assert spec.mindspore["momentum"] == 0.7
    torch_layer, ms_layer = _norm_pair(ms, spec)
    x = _rng(7).standard_normal((4, 6, 9)).astype(np.float32) * 3 + 1
    torch_layer.train()
    ms_layer.set_train(True)
    torch_layer(torch.from_numpy(x))
    ms_layer(ms.Tensor(x))
    np.testing.assert_allclose(ms_layer.moving_variance.asnumpy(), torch_layer.running_var.numpy(), atol=1e-5)


def test_layernorm_default_epsilon_differs(ms):
    # torch eps=1e-5, MindSpore epsilon=1e-7: the kept default moves outputs.
    x = _rng(8).standard_normal((4, 6, 9)).astype(np.float32)
    small = x * 1e-3
    torch_ln, ms_ln = torch.nn.LayerNorm(9), ms.nn.LayerNorm((9,))
    unit = np.abs(torch_ln(torch.from_numpy(x)).detach().numpy() - ms_ln(ms.Tensor(x)).asnumpy()).max()
    tiny = np.abs(torch_ln(torch.from_numpy(small)).detach().numpy() - ms_ln(ms.Tensor(small)).asnumpy()).max()
    assert 1e-6 < unit < 1e-4  # measured 2.7e-5 on unit-variance rows
    assert tiny > 0.5  # measured 1.57 on rows with std 1e-3
    spec = translate_layer(LayerKind.LAYER_NORM, TORCH, dict(normalized_shape=9))
    assert spec.mindspore["epsilon"] == 1e-5 and any("epsilon" in d for d in spec.default_differences)


def test_layernorm_refuses_begin_norm_axis_below_minus_one(ms):
    layer = ms.nn.LayerNorm((6, 9), begin_norm_axis=-2, begin_params_axis=-2)
    with pytest.raises(Exception, match="begin_norm_axis"):
        layer(ms.Tensor(np.ones((2, 6, 9), np.float32)))


def test_instancenorm_has_no_cpu_kernel_and_groupnorm_replaces_it(ms):
    with pytest.raises(RuntimeError, match="InstanceNorm"):
        ms.nn.InstanceNorm1d(6, affine=False)(ms.Tensor(np.ones((2, 6, 9), np.float32)))
    spec = translate_layer(LayerKind.INSTANCE_NORM1D, TORCH, dict(num_features=6))
    assert spec.mindspore["affine"] is False and "GroupNorm(6, 6" in spec.note
    assert any("affine" in d for d in spec.default_differences)  # torch False vs MindSpore True
    x = _rng(9).standard_normal((2, 6, 9)).astype(np.float32)
    expected = torch.nn.InstanceNorm1d(6)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ms.nn.GroupNorm(6, 6, eps=1e-5)(ms.Tensor(x)).asnumpy(), expected, atol=1e-5)


def test_embedding_padding_idx_and_lookup(ms):
    spec = translate_layer(LayerKind.EMBEDDING, TORCH, dict(num_embeddings=10, embedding_dim=4, padding_idx=-1))
    assert spec.mindspore["padding_idx"] == 9  # MindSpore accepts [0, vocab_size) only
    torch_layer, ms_layer = _norm_pair(ms, spec)
    ids = np.array([[0, 9, 3]], np.int32)
    np.testing.assert_allclose(ms_layer(ms.Tensor(ids)).asnumpy(), torch_layer(torch.from_numpy(ids).long()).detach().numpy())
    fresh = ms.nn.Embedding(10, 4, padding_idx=9).embedding_table.asnumpy()
    assert not fresh[9].any() and 0.005 < fresh.std() < 0.02  # MindSpore inits N(0, 0.01); torch N(0, 1)


# --- tables and the seed's claims --------------------------------------------------------


@pytest.mark.parametrize("kind", TRANSLATED_KINDS)
def test_signature_tables_match_the_frameworks(ms, kind):
    for framework, table, cls in (
        (TORCH, TORCH_SIGNATURES, getattr(torch.nn, TORCH_SIGNATURES[kind].class_name)),
        (MS, MINDSPORE_SIGNATURES, getattr(ms.nn, MINDSPORE_SIGNATURES[kind].class_name)),
    ):
        real = {
            name: (REQUIRED if p.default is inspect.Parameter.empty else p.default)
            for name, p in inspect.signature(cls.__init__).parameters.items()
            if name not in ("self", "device", "dtype", "_weight", "_freeze")
        }
        assert real == table[kind].defaults, (framework, kind)


def test_torch_same_pads_extra_on_the_right():
    # Seed: "If odd, PyTorch will fill the left ... first". Measured: the right, like MindSpore.
    rng = _rng(10)
    x, w = torch.from_numpy(rng.standard_normal((1, 2, 10)).astype(np.float32)), torch.from_numpy(rng.standard_normal((3, 2, 4)).astype(np.float32))
    same = F.conv1d(x, w, padding="same")
    torch.testing.assert_close(same, F.conv1d(F.pad(x, (1, 2)), w))
    assert not torch.allclose(same, F.conv1d(F.pad(x, (2, 1)), w))


def test_mindspore_same_pads_extra_on_the_right(ms):
    rng = _rng(11)
    x, w = rng.standard_normal((1, 2, 10)).astype(np.float32), rng.standard_normal((3, 2, 4)).astype(np.float32)
    layer = ms.nn.Conv1d(2, 3, 4)  # pad_mode='same' is the default
    layer.weight.set_data(ms.Tensor(w[:, :, None, :]))
    expected = F.conv1d(F.pad(torch.from_numpy(x), (1, 2)), torch.from_numpy(w)).numpy()
    np.testing.assert_allclose(layer(ms.Tensor(x)).asnumpy(), expected, atol=ATOL)


def test_defaults_bias_and_padding_differ(ms):
    # Seed Code Examples 1 and 4: lengths 637 vs 640, and MindSpore has no bias by default.
    x = np.ones((1, 120, 640), np.float32)
    assert torch.nn.Conv1d(120, 240, 4)(torch.from_numpy(x)).shape == (1, 240, 637)
    assert ms.nn.Conv1d(120, 240, 4)(ms.Tensor(x)).shape == (1, 240, 640)
    assert ms.nn.Conv1d(120, 240, 4, pad_mode="valid")(ms.Tensor(x)).shape == (1, 240, 637)
    assert torch.nn.Conv1d(120, 240, 4).bias is not None and ms.nn.Conv1d(120, 240, 4).bias is None


def test_seed_example_3_pads_the_channel_axis(ms):
    # nn.Pad(((0,0),(1,1),(1,1))) on (N, C, L) pads C too: 122 "channels" of reflected data.
    x = np.ones((1, 120, 640), np.float32)
    padded = ms.nn.Pad(paddings=((0, 0), (1, 1), (1, 1)), mode="REFLECT")(ms.Tensor(x))
    assert padded.shape == (1, 122, 642)
    # The faithful translation pads the last axis only, and keeps 120 channels and the bias.
    layer = _compare_conv(ms, LayerKind.CONV1D, TORCH,
                          dict(in_channels=120, out_channels=240, kernel_size=4, padding=1, padding_mode="reflect"), [640])
    assert layer["mindspore"]["in_channels"] == 120 and layer["pre_pad"]["pads"] == [1, 1]
    assert layer["mindspore"]["has_bias"] is True


def test_seed_example_2_omits_has_bias(ms):
    # Same shape (1, 240, 639), different values: torch adds a bias, the seed's MindSpore layer none.
    torch_layer = torch.nn.Conv1d(120, 240, 4, padding=1)
    ms_layer = ms.nn.Conv1d(120, 240, 4, padding=1, pad_mode="pad")
    ms_layer.weight.set_data(ms.Tensor(torch_layer.weight.detach().numpy()[:, :, None, :]))
    x = _rng(12).standard_normal((1, 120, 640)).astype(np.float32)
    with torch.no_grad():
        expected = torch_layer(torch.from_numpy(x)).numpy()
    got = ms_layer(ms.Tensor(x)).asnumpy()
    assert got.shape == expected.shape == (1, 240, 639)
    np.testing.assert_allclose(expected - got, np.broadcast_to(torch_layer.bias.detach().numpy()[None, :, None], got.shape), atol=1e-4)


def test_padding_mode_is_zeros_not_zero():
    with pytest.raises(ValueError, match="padding_mode"):
        torch.nn.Conv1d(2, 3, 4, padding_mode="zero")


def test_mindspore_padding_is_an_int_and_only_with_pad_mode_pad(ms):
    with pytest.raises(TypeError, match="padding"):
        ms.nn.Conv1d(2, 3, 4, pad_mode="pad", padding=(1, 2))
    with pytest.raises(TypeError, match="padding"):
        ms.nn.Conv1d(2, 3, 4, pad_mode="pad", padding=(1,))  # the docstring allows it; 2.10 refuses it
    with pytest.raises(ValueError, match="pad"):
        ms.nn.Conv1d(2, 3, 4, pad_mode="same", padding=1)


def test_transposed_torch_accepts_only_zeros_and_int_padding():
    with pytest.raises(ValueError, match="zeros"):
        torch.nn.ConvTranspose1d(2, 3, 4, padding_mode="reflect")


def test_pad_modes_agree(ms):
    x = np.arange(10, dtype=np.float32).reshape(1, 2, 5)
    for mode in ("constant", "reflect", "replicate", "circular"):
        np.testing.assert_array_equal(ms.ops.pad(ms.Tensor(x), (2, 3), mode=mode).asnumpy(),
                                      F.pad(torch.from_numpy(x), (2, 3), mode=mode).numpy())


@pytest.mark.parametrize("transposed", [False, True])
def test_weight_init_bounds_agree(ms, transposed):
    # Seed: HeUniform / Uniform like PyTorch. Both bound |w| and |b| by 1/sqrt(fan_in), with
    # fan_in = shape[1] * K (C_in/g * K for Conv1d, C_out/g * K for the transposed layer).
    torch_cls, ms_cls = (torch.nn.ConvTranspose1d, ms.nn.Conv1dTranspose) if transposed else (torch.nn.Conv1d, ms.nn.Conv1d)
    torch_layer, ms_layer = torch_cls(256, 512, 3), ms_cls(256, 512, 3, has_bias=True)
    bound = 1 / np.sqrt((512 if transposed else 256) * 3)
    for values in (torch_layer.weight.detach().numpy(), ms_layer.weight.asnumpy(),
                   torch_layer.bias.detach().numpy(), ms_layer.bias.asnumpy()):
        assert 0.98 * bound < np.abs(values).max() <= bound * (1 + 1e-6)


def test_mindspore_weight_has_a_unit_axis_at_position_2(ms):
    # Seed: "zero filling ... in the 0 dimension". The extra axis is axis 2 (Conv2d's height), size 1.
    assert ms.nn.Conv1d(4, 8, 3).weight.shape == (8, 4, 1, 3)
    assert ms.nn.Conv1dTranspose(4, 8, 3).weight.shape == (4, 8, 1, 3)
    assert tuple(torch.nn.Conv1d(4, 8, 3).weight.shape) == (8, 4, 3)
