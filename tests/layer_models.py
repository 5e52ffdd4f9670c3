"""Tiny PyTorch models for `convmigrate layers tests.layer_models:<factory>` (no weights loaded)."""

from __future__ import annotations

import torch


class _Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(8, 8, 5, padding=2, padding_mode="reflect", groups=2)
        self.norm = torch.nn.GroupNorm(2, 8)
        self.act = torch.nn.PReLU(8)


def small_encoder() -> torch.nn.Module:
    """Embedding -> Conv1d stack -> norms -> transposed conv: every kind the layers command reads."""
    model = torch.nn.Module()
    model.embed = torch.nn.Embedding(20, 4, padding_idx=0)
    model.stem = torch.nn.Conv1d(4, 8, 4, stride=2, padding=1)
    model.bn = torch.nn.BatchNorm1d(8)
    model.block = _Block()
    model.ln = torch.nn.LayerNorm(8)
    model.inorm = torch.nn.InstanceNorm1d(8)
    model.up = torch.nn.ConvTranspose1d(8, 4, 3, stride=2, padding=1, output_padding=1)
    model.head = torch.nn.Linear(4, 2)  # not a translated kind: skipped
    model.spec = torch.nn.Conv2d(1, 2, (1, 3))  # nor this one (a spectrogram front end)
    return model


def not_a_model() -> str:
    return "nope"


def broken() -> torch.nn.Module:
    raise RuntimeError("factory exploded")
