"""Entries that are not model parameters: training counters and optimizer state.

A migration drops them by default and says so; `--keep-extras` passes them through. The names
are the ones MindSpore's Model/TrainOneStepCell and its optimizers write into a .ckpt, and the
ones PyTorch training scripts commonly keep beside a state dict.
"""

from __future__ import annotations

# mindspore.train.Model / callbacks write these scalars.
TRAINING_STATE_NAMES = frozenset(
    {
        "epoch_num", "step_num", "global_step", "learning_rate", "current_iterator_step",
        "last_overflow_iterator_step", "scale_sense", "loss_scale", "beta1_power", "beta2_power",
    }
)
# MindSpore optimizers (Adam/AdamWeightDecay/Momentum/...) prefix their slots with these.
OPTIMIZER_STATE_PREFIXES = (
    "moments.", "moment1.", "moment2.", "adam_m.", "adam_v.", "accum.", "mean_grad.", "mean_square.",
    "optimizer.",
)


def is_training_extra(name: str) -> bool:
    """True for an optimizer slot or training counter, which is not part of the model."""
    return name in TRAINING_STATE_NAMES or name.startswith(OPTIMIZER_STATE_PREFIXES)
