"""The planner on names and shapes alone: table-driven cases, one comment each."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

from convmigrate.plan import Direction, Op, PlanOptions, Severity, SourceInfo, build_plan
from convmigrate.rules.user import load_rules
from convmigrate.vocab import Layout, ProblemCode

T2M, M2T = Direction.TORCH_TO_MS, Direction.MS_TO_TORCH


def plan_of(direction, entries, **options):
    sources = [SourceInfo(name, shape, "float32" if shape is not None else None) for name, shape in entries]
    return build_plan(sources, PlanOptions(direction, **options))


def outcome(plan):
    return {tuple(s.sources): (s.target, s.op.value, tuple(s.target_shape) if s.target_shape is not None else None)
            for s in plan.steps}


CASES = [
    # PyTorch Conv1d: unit axis inserted at position 2, bias untouched
    (T2M, [("c.weight", (8, 4, 3)), ("c.bias", (8,))],
     {("c.weight",): ("c.weight", "reshape", (8, 4, 1, 3)), ("c.bias",): ("c.bias", "copy", (8,))}),
    # MindSpore Conv1d back: unit axis removed
    (M2T, [("c.weight", (8, 4, 1, 3))], {("c.weight",): ("c.weight", "reshape", (8, 4, 3))}),
    # a MindSpore Conv2d (kernel (3, 3)) is no Conv1d: untouched
    (M2T, [("c2.weight", (8, 4, 3, 3))], {("c2.weight",): ("c2.weight", "copy", (8, 4, 3, 3))}),
    # BatchNorm: four renames, num_batches_tracked dropped
    (T2M, [("bn.weight", (4,)), ("bn.bias", (4,)), ("bn.running_mean", (4,)), ("bn.running_var", (4,)),
           ("bn.num_batches_tracked", ())],
     {("bn.weight",): ("bn.gamma", "rename", (4,)), ("bn.bias",): ("bn.beta", "rename", (4,)),
      ("bn.running_mean",): ("bn.moving_mean", "rename", (4,)),
      ("bn.running_var",): ("bn.moving_variance", "rename", (4,)),
      ("bn.num_batches_tracked",): (None, "drop", None)}),
    # ... and back: num_batches_tracked recreated
    (M2T, [("bn.gamma", (4,)), ("bn.beta", (4,)), ("bn.moving_mean", (4,)), ("bn.moving_variance", (4,))],
     {("bn.gamma",): ("bn.weight", "rename", (4,)), ("bn.beta",): ("bn.bias", "rename", (4,)),
      ("bn.moving_mean",): ("bn.running_mean", "rename", (4,)),
      ("bn.moving_variance",): ("bn.running_var", "rename", (4,)),
      (): ("bn.num_batches_tracked", "create", ())}),
    # LayerNorm / GroupNorm
    (T2M, [("ln.weight", (4,)), ("ln.bias", (4,))],
     {("ln.weight",): ("ln.gamma", "rename", (4,)), ("ln.bias",): ("ln.beta", "rename", (4,))}),
    # Embedding and PReLU in MindSpore
    (M2T, [("emb.embedding_table", (10, 4)), ("act.w", (1,))],
     {("emb.embedding_table",): ("emb.weight", "rename", (10, 4)), ("act.w",): ("act.weight", "rename", (1,))}),
    # Linear / Dense keep their names
    (T2M, [("fc.weight", (3, 4)), ("fc.bias", (3,))],
     {("fc.weight",): ("fc.weight", "copy", (3, 4)), ("fc.bias",): ("fc.bias", "copy", (3,))}),
    # training state is dropped, with a reason
    (M2T, [("epoch_num", ()), ("moments.c.weight", (8, 4, 1, 3))],
     {("epoch_num",): (None, "drop", None), ("moments.c.weight",): (None, "drop", None)}),
]


@pytest.mark.parametrize("direction,entries,expected", CASES)
def test_plan_cases(direction, entries, expected):
    plan = plan_of(direction, entries)
    assert outcome(plan) == expected
    assert all(step.reason for step in plan.steps)


def test_mint_layout_keeps_pytorch_names_and_shapes():
    plan = plan_of(T2M, [("c.weight", (8, 4, 3)), ("bn.weight", (4,)), ("bn.running_mean", (4,)),
                         ("bn.running_var", (4,)), ("bn.bias", (4,))], layout=Layout.MINT)
    assert all(step.op is Op.COPY for step in plan.steps)


def test_weight_norm_is_reported_without_the_flag_and_folded_with_it():
    entries = [("pos.parametrizations.weight.original0", (1, 1, 5)),
               ("pos.parametrizations.weight.original1", (8, 2, 5)), ("pos.bias", (8,))]
    unfolded = plan_of(T2M, entries)
    assert [p.code for p in unfolded.problems] == [ProblemCode.WEIGHT_NORM]
    assert "--fold-weight-norm" in unfolded.problems[0].message
    folded = plan_of(T2M, entries, fold_weight_norm=True)
    fold = next(s for s in folded.steps if s.op is Op.FOLD_WEIGHT_NORM)
    assert fold.target == "pos.weight" and fold.target_shape == [8, 2, 1, 5] and fold.fold_dim == 2


def test_legacy_weight_norm_dim_zero():
    plan = plan_of(T2M, [("c.weight_g", (8, 1, 1)), ("c.weight_v", (8, 4, 3))], fold_weight_norm=True)
    (step,) = plan.steps
    assert step.op is Op.FOLD_WEIGHT_NORM and step.fold_dim == 0 and step.sources == ["c.weight_g", "c.weight_v"]


def test_guesses_are_warnings_and_strict_makes_them_fail():
    entries = [("enc.emb.weight", (10, 4))]
    plan = plan_of(T2M, entries)
    assert outcome(plan) == {("enc.emb.weight",): ("enc.emb.embedding_table", "rename", (10, 4))}
    assert [p.code for p in plan.problems] == [ProblemCode.GUESS] and plan.failures() == []
    assert plan_of(T2M, entries, strict=True).failures()


def test_a_lone_1d_weight_without_a_hint_is_ambiguous_and_kept():
    plan = plan_of(T2M, [("mystery.weight", (4,))])
    assert outcome(plan) == {("mystery.weight",): ("mystery.weight", "copy", (4,))}
    assert [p.code for p in plan.problems] == [ProblemCode.AMBIGUOUS]


def test_mindspore_conv_is_a_guess_unless_a_pattern_names_it():
    entries = [("c.weight", (8, 4, 1, 3))]
    assert [p.code for p in plan_of(M2T, entries).problems] == [ProblemCode.GUESS]
    named = plan_of(M2T, entries, conv1d_patterns=["c.*"])
    assert named.problems == [] and named.steps[0].confidence.value == "pattern"


def test_exclude_keeps_a_tensor_untouched():
    plan = plan_of(T2M, [("stft.weight", (8, 1, 3))], exclude_patterns=["stft.*"])
    assert outcome(plan) == {("stft.weight",): ("stft.weight", "copy", (8, 1, 3))}


def test_a_pattern_naming_a_non_conv_is_an_error():
    plan = plan_of(T2M, [("fc.weight", (3, 4)), ("fc.bias", (3,))], conv1d_patterns=["fc.weight"])
    assert [p.code for p in plan.failures()] == [ProblemCode.PATTERN]


def test_reference_decides_names_and_shapes():
    # the lone 2-D weight is an Embedding because the reference says so, not because of its name
    entries = [("tok.weight", (10, 4)), ("c.weight", (8, 4, 3)), ("extra.weight", (2, 2))]
    reference = {"tok.embedding_table": (10, 4), "c.weight": (8, 4, 1, 3), "head.weight": (3, 4)}
    plan = plan_of(T2M, entries, reference=reference)
    assert outcome(plan) == {
        ("tok.weight",): ("tok.embedding_table", "rename", (10, 4)),
        ("c.weight",): ("c.weight", "reshape", (8, 4, 1, 3)),
        ("extra.weight",): (None, "drop", None),
    }
    codes = sorted((p.code, p.name) for p in plan.problems)
    assert codes == [(ProblemCode.MISSING, "head.weight"), (ProblemCode.UNEXPECTED, "extra.weight")]


def test_reference_reports_shape_mismatch():
    plan = plan_of(T2M, [("c.weight", (8, 4, 3))], reference={"c.weight": (8, 4, 1, 5)})
    assert [p.code for p in plan.problems] == [ProblemCode.SHAPE_MISMATCH]


def test_user_rules_extend_the_tables(tmp_path):
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(
        '[[param]]\nkind = "RMSNorm"\ntorch = "weight"\nmindspore = "gamma"\n'
        '[[layer]]\nmatch = "*.rms"\nkind = "RMSNorm"\n'
        '[[prefix]]\ntorch = "layers."\nmindspore = "blocks."\n'
    )
    rules = load_rules(rules_file)
    plan = build_plan([SourceInfo("layers.0.rms.weight", (4,), "float32")],
                      PlanOptions(T2M, rules=rules.names))
    assert outcome(plan) == {("layers.0.rms.weight",): ("blocks.0.rms.gamma", "rename", (4,))}
    back = build_plan([SourceInfo("blocks.0.rms.gamma", (4,), "float32")], PlanOptions(M2T, rules=rules.names))
    assert outcome(back) == {("blocks.0.rms.gamma",): ("layers.0.rms.weight", "rename", (4,))}


def test_created_parameters_follow_the_reference():
    # ms2torch with a torch reference: num_batches_tracked is created once, with the reference's shape
    entries = [("bn.gamma", (4,)), ("bn.beta", (4,)), ("bn.moving_mean", (4,)), ("bn.moving_variance", (4,))]
    reference = {"bn.weight": (4,), "bn.bias": (4,), "bn.running_mean": (4,), "bn.running_var": (4,),
                 "bn.num_batches_tracked": ()}
    plan = plan_of(M2T, entries, reference=reference, strict=True)
    assert plan.problems == []
    created = [s for s in plan.steps if s.op is Op.CREATE]
    assert [(s.target, s.confidence.value) for s in created] == [("bn.num_batches_tracked", "reference")]


def test_a_reference_shape_of_another_size_fails_the_plan(cli, tmp_path):
    """Warnings only would let the writer meet a shape the input's elements cannot fill (it was
    "unexpected ValueError: cannot view (8, 2, 3) as (4, 2, 5)"): another size is an error."""
    plan = plan_of(T2M, [("c.weight", (8, 4, 3)), ("d.weight", (2, 6))], reference={"c.weight": (8, 4, 1, 5), "d.weight": (3, 4)})
    assert {p.name: p.severity for p in plan.problems} == {"c.weight": Severity.ERROR, "d.weight": Severity.WARNING}

    save_file({"stem.weight": np.zeros((8, 2, 3), np.float32)}, tmp_path / "model.safetensors")
    save_file({"stem.weight": np.zeros((4, 2, 1, 5), np.float32)}, tmp_path / "reference.safetensors")
    result = cli("torch2ms", tmp_path / "model.safetensors", "-o", tmp_path / "out.ckpt",
                 "--reference", tmp_path / "reference.safetensors")
    assert result.exit_code == 1, result.stderr
    assert "error: stem.weight: the reference has (4, 2, 1, 5), the input gives (8, 2, 3)" in result.stdout + result.stderr
    assert "unexpected" not in result.stderr and not (tmp_path / "out.ckpt").exists()
