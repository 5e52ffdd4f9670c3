"""The layers library and the `convmigrate layers` command, without MindSpore.

The translations themselves are proven on the real frameworks in test_layers_frameworks.py;
here: the safe parser, the rule decisions, JSON read/write, the model factory, the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from convmigrate.layers import (
    LayerExpressionError,
    LayerKind,
    LayerTranslationError,
    UnverifiedTranslationError,
    parse_layer_expression,
    translate_source,
    verify_spec,
    write_layers_json,
)
from convmigrate.layers.translate import translate_kwargs
from convmigrate.vocab import Framework

TORCH, MS = Framework.TORCH, Framework.MINDSPORE
REQUIRED_KEYS = {"name", "kind", "torch", "mindspore", "pre_pad", "code", "exact", "note", "verified"}


# --- the parser ------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "__import__('os').system('x')",  # a call as the callee
    "torch.nn.Conv1d(1, 2, __import__('os').system('x'))",  # a call as an argument
    "torch.nn.Conv1d(1, 2, k)",  # a name
    "torch.nn.Conv1d(1, 2, 3 + 1)",  # an operator
    "torch.nn.Conv1d(*args)",  # starred
    "torch.nn.Conv1d(1, 2, 3, **kw)",  # double-starred
    "torch.nn.Conv1d(1, 2, 3, padding=(lambda: 1)())",  # a lambda
    "torch.nn.Conv1d(1, 2, 3).weight",  # not a call
    "torch.nn.Conv1d(1, 2, 3); import os",  # two statements
    "os.system('x')",  # not a layer class
    "torch.nn.Linear(2, 3)",  # a class this tool does not translate
    "torch.nn.Conv1d(1, 2, 3, stride=[x for x in y])",  # a comprehension
])
def test_parser_refuses_anything_but_a_literal_constructor_call(text):
    with pytest.raises(LayerExpressionError):
        parse_layer_expression(text)


@pytest.mark.parametrize("text,framework,kind", [
    ("torch.nn.Conv1d(120, 240, 4, padding=1, padding_mode='reflect')", TORCH, LayerKind.CONV1D),
    ("nn.ConvTranspose1d(64, 32, 4, stride=2, padding=1)", TORCH, LayerKind.CONV_TRANSPOSE1D),  # torch-only name
    ("mindspore.nn.Conv1d(120, 240, 4, pad_mode='same')", MS, LayerKind.CONV1D),
    ("ms.nn.Conv1dTranspose(4, 8, 3)", MS, LayerKind.CONV_TRANSPOSE1D),
    ("nn.Conv1d(1, 2, 3)", None, LayerKind.CONV1D),  # in both: --to decides
    ("LayerNorm([6, 9], eps=-1e-5)", None, LayerKind.LAYER_NORM),  # lists and unary minus are literals
])
def test_parser_reads_constructor_calls(text, framework, kind):
    parsed = parse_layer_expression(text)
    assert (parsed.framework, parsed.kind) == (framework, kind)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_parser_never_raises_anything_but_its_own_error(text):
    try:
        parse_layer_expression(text)
    except LayerExpressionError:
        pass


@pytest.mark.parametrize("text,message", [
    ("torch.nn.Conv1d(1, 2)", "needs kernel_size"),
    ("torch.nn.Conv1d(1, 2, 3, pad_mode='same')", "has no parameter 'pad_mode'"),
    ("torch.nn.Conv1d(1, 2, 3, 1, 0, 1, 1, True, 'zeros', 9)", "at most 9 positional"),
    ("torch.nn.Conv1d(1, 2, 3, stride=2, padding='same')", "strided"),  # torch's own check
    ("torch.nn.Conv1d(2, 3, 3, groups=2)", "must divide"),
    ("mindspore.nn.Conv1d(1, 2, 3, padding=1)", "needs pad_mode='pad'"),
    ("mindspore.nn.Conv1d(1, 2, 3, pad_mode='pad', padding=(1, 2))", "must be an int"),
    ("mindspore.nn.Conv1d(2, 3, 3, group=2)", "must divide"),
    ("torch.nn.ConvTranspose1d(2, 3, 3, padding='same')", "only Conv1d"),
])
def test_invalid_hyperparameters_are_one_line_errors(text, message):
    with pytest.raises((LayerExpressionError, LayerTranslationError), match=message):
        translate_source(text)


# --- rule decisions (proven numerically in test_layers_frameworks.py) ------------------------

@pytest.mark.parametrize("text,pad_mode,padding,pre_pad", [
    ("torch.nn.Conv1d(4, 8, 3)", "valid", 0, None),  # padding 0: not MindSpore's default 'same'
    ("torch.nn.Conv1d(4, 8, 3, padding=2)", "pad", 2, None),
    ("torch.nn.Conv1d(4, 8, 4, padding='same')", "same", 0, None),
    ("torch.nn.Conv1d(4, 8, 4, padding='same', padding_mode='circular')", "valid", 0, ("circular", 1, 2)),
    ("torch.nn.Conv1d(4, 8, 3, padding=1, padding_mode='replicate')", "valid", 0, ("replicate", 1, 1)),
    ("torch.nn.Conv1d(4, 8, 3, padding='valid', padding_mode='reflect')", "valid", 0, None),
])
def test_torch_conv1d_rules(text, pad_mode, padding, pre_pad):
    [spec] = translate_source(text)
    assert (spec.mindspore["pad_mode"], spec.mindspore["padding"]) == (pad_mode, padding)
    assert (None if spec.pre_pad is None else (spec.pre_pad.mode, spec.pre_pad.left, spec.pre_pad.right)) == pre_pad
    assert spec.exact and spec.verified is not None and spec.verified < 1e-4


@pytest.mark.parametrize("text,padding", [
    ("mindspore.nn.Conv1d(4, 8, 3)", 1),  # default 'same', even total
    ("mindspore.nn.Conv1d(4, 8, 4)", "same"),  # odd total: torch's 'same' splits it the same way
    ("mindspore.nn.Conv1d(4, 8, 4, pad_mode='pad', padding=3)", 3),
    ("mindspore.nn.Conv1d(4, 8, 4, pad_mode='valid', stride=2)", 0),
])
def test_mindspore_conv1d_rules(text, padding):
    [spec] = translate_source(text)
    assert spec.torch["padding"] == padding and spec.exact


def test_mindspore_same_strided_is_not_exact_and_says_why():
    [spec] = translate_source("mindspore.nn.Conv1d(4, 8, 5, stride=2)")
    assert spec.exact is False and spec.length_multiple == 2
    assert "depends on the input length" in spec.note
    assert "x.shape[-1]" in spec.code["torch"]  # the per-call pad


def test_a_translation_that_does_not_verify_is_an_error():
    spec = translate_kwargs(LayerKind.CONV1D, TORCH, dict(in_channels=2, out_channels=2, kernel_size=3, padding=1))
    spec.mindspore["padding"] = 2  # a broken rule
    with pytest.raises(UnverifiedTranslationError, match="bug in convmigrate"):
        verify_spec(spec)


def test_norm_defaults_that_differ_are_reported():
    [ln] = translate_source("torch.nn.LayerNorm(64)")
    assert ln.mindspore["epsilon"] == 1e-5 and ln.default_differences
    [bn] = translate_source("torch.nn.BatchNorm1d(8, momentum=0.2)")
    assert bn.mindspore["momentum"] == 0.8
    [bn_back] = translate_source("mindspore.nn.BatchNorm1d(8, use_batch_statistics=True)")
    assert bn_back.torch["track_running_stats"] is False and bn_back.torch["momentum"] == 0.1
    [bn_moving] = translate_source("mindspore.nn.BatchNorm1d(8, use_batch_statistics=False)")
    assert bn_moving.exact is False
    [emb] = translate_source("torch.nn.Embedding(10, 4, max_norm=1.0)")
    assert emb.exact is False and "max_norm" in emb.note
    [prelu] = translate_source("mindspore.nn.PReLU(3, 0.1)")
    assert prelu.torch == {"num_parameters": 3, "init": 0.1}


# --- sources -------------------------------------------------------------------------------

def test_model_factory_lists_layers_by_qualified_name(monkeypatch, torch):
    monkeypatch.chdir(REPO)
    specs = translate_source("tests.layer_models:small_encoder")
    assert [(s.name, s.kind.value) for s in specs] == [
        ("embed", "Embedding"), ("stem", "Conv1d"), ("bn", "BatchNorm1d"), ("block.conv", "Conv1d"),
        ("block.norm", "GroupNorm"), ("block.act", "PReLU"), ("ln", "LayerNorm"), ("inorm", "InstanceNorm1d"),
        ("up", "ConvTranspose1d"),
    ]
    by_name = {s.name: s for s in specs}
    assert by_name["block.conv"].pre_pad.mode == "reflect" and by_name["block.conv"].mindspore["group"] == 2
    assert by_name["up"].post_crop is not None and by_name["up"].exact is False


@pytest.mark.parametrize("factory,message", [
    ("tests.layer_models:not_a_model", "not a torch.nn.Module"),
    ("tests.layer_models:broken", "factory exploded"),
    ("tests.layer_models:missing", "no attribute"),
    ("tests.no_such_module:f", "cannot import"),
])
def test_model_factory_errors(monkeypatch, factory, message, torch):
    monkeypatch.chdir(REPO)
    with pytest.raises(LayerExpressionError, match=message):
        translate_source(factory)


def test_layers_json_round_trip(tmp_path):
    specs = translate_source("torch.nn.Conv1d(4, 8, 4, padding='same', padding_mode='reflect')")
    path = write_layers_json(tmp_path / "layers.json", specs)
    again = translate_source(str(path))
    assert [s.to_json() for s in again] == [s.to_json() for s in specs]


@pytest.mark.parametrize("content,message", [
    ("[]", "one object"),
    ('{"layers": [{"kind": "Dense"}]}', "not one of"),
    ('{"layers": [{"kind": "Conv1d", "source": "torch"}]}', "no 'torch' kwargs"),
    ("{not json", "not a layers JSON"),
])
def test_bad_layers_json(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(LayerTranslationError, match=message):
        translate_source(str(path))


# --- the CLI -------------------------------------------------------------------------------

def test_cli_json_has_every_required_key(cli):
    result = cli("layers", "torch.nn.Conv1d(120, 240, 4, padding=1, padding_mode='reflect')", "--json")
    assert result.exit_code == 0, result.stderr
    [layer] = json.loads(result.stdout)["layers"]
    assert REQUIRED_KEYS <= set(layer)
    assert layer["kind"] == "Conv1d" and layer["exact"] is True
    assert layer["pre_pad"] == {"mode": "reflect", "pads": [1, 1], "value": 0.0}
    assert layer["mindspore"] == {
        "in_channels": 120, "out_channels": 240, "kernel_size": 4, "stride": 1, "pad_mode": "valid", "padding": 0,
        "dilation": 1, "group": 1, "has_bias": True, "weight_init": None, "bias_init": None,
    }
    assert layer["torch"]["padding_mode"] == "reflect" and layer["torch"]["bias"] is True
    assert "mindspore.ops.pad(x, (1, 1), mode='reflect')" in layer["code"]["mindspore"]
    assert layer["verified"] < 1e-4 and len(layer["verified_lengths"]) >= 3


def test_cli_prints_code(cli):
    result = cli("layers", "mindspore.nn.Conv1d(120, 240, 4, pad_mode='same')")
    assert result.exit_code == 0, result.stderr
    assert "torch.nn.Conv1d(120, 240, 4, padding='same', bias=False)" in result.stdout


def test_cli_model_factory_writes_layers_json(cli, tmp_path, monkeypatch, torch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "layers.json"
    result = cli("layers", "tests.layer_models:small_encoder", "--to", "ms", "--report", out)
    assert result.exit_code == 0, result.stderr
    names = [layer["name"] for layer in json.loads(out.read_text())["layers"]]
    assert "block.conv" in names and "up" in names
    again = cli("layers", out, "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout) == json.loads(out.read_text())
    # The report of a layers JSON may not overwrite it (the input of this run).
    assert cli("layers", out, "--report", out).exit_code == 2


@pytest.mark.parametrize("args", [
    ("__import__('os').system('x')",),
    ("torch.nn.Conv1d(1, 2, 3)", "--to", "torch"),
    ("not a layer",),
    ("missing.json",),
])
def test_cli_errors_are_one_line_with_exit_code_2(cli, args):
    result = cli("layers", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_cli_bare_nn_conv1d_follows_to(cli):
    result = cli("layers", "nn.Conv1d(4, 8, 3)", "--to", "torch", "--json")
    [layer] = json.loads(result.stdout)["layers"]
    assert layer["source"] == "mindspore" and layer["torch"]["padding"] == 1


def test_library_has_no_cli_imports():
    for path in (REPO / "convmigrate" / "layers").glob("*.py"):
        text = Path(path).read_text()
        assert "import typer" not in text and "from rich" not in text and "import mindspore" not in text, path
