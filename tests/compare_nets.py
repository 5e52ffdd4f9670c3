"""A small audio network in PyTorch, for `convmigrate compare --torch-model tests.compare_nets:audio_net`.

Its MindSpore port (faithful and deliberately wrong ones) is in tests/compare_ports.py. It holds
what ports break on: Conv1d with every padding form (int, 'same' with an even kernel, 'valid'
with dilation, reflect / replicate / circular), a grouped conv, a weight-normalised conv, a
BatchNorm, a strided conv, a transposed conv, a bidirectional LSTM and a second LSTM, Linears, a LayerNorm
on a quiet signal (where its epsilon matters) and a parameter-free activation.
"""

from __future__ import annotations

import torch
from torch import nn

IN_CHANNELS = 4
QUIET = 1e-3  # the LayerNorm's input is this quiet: its variance (~1e-7) is below the epsilon


class AudioNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pre = nn.Conv1d(IN_CHANNELS, 8, 5, padding=2)
        self.act = nn.ReLU()
        self.same = nn.Conv1d(8, 8, 4, padding="same")  # even kernel: 1 left, 2 right
        self.valid = nn.Conv1d(8, 8, 3, padding="valid", dilation=2)
        self.reflect = nn.Conv1d(8, 8, 3, padding=1, padding_mode="reflect")
        self.replicate = nn.Conv1d(8, 8, 3, padding=1, padding_mode="replicate", bias=False)
        self.circular = nn.Conv1d(8, 8, 3, padding=1, padding_mode="circular")
        self.grouped = nn.Conv1d(8, 16, 3, padding=1, groups=4)
        self.wn = nn.utils.parametrizations.weight_norm(nn.Conv1d(16, 16, 3, padding=1))
        self.bn = nn.BatchNorm1d(16)
        self.down = nn.Conv1d(16, 16, 4, stride=2, padding=1)
        self.up = nn.ConvTranspose1d(16, 8, 4, stride=2, padding=1)
        self.lstm = nn.LSTM(8, 6, batch_first=True, bidirectional=True)
        self.rnn = nn.LSTM(12, 6, batch_first=True)  # not a GRU: MindSpore's runs ~0.2 s per step on CPU
        self.proj = nn.Linear(6, 6)
        self.ln = nn.LayerNorm(6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.act(self.pre(x))
        h = self.valid(self.same(h))
        h = self.circular(self.replicate(self.reflect(h)))
        h = self.act(self.bn(self.wn(self.grouped(h))))
        h = self.up(self.down(h))
        seq, _state = self.lstm(h.transpose(1, 2))
        seq, _last = self.rnn(seq)
        features = self.ln(self.proj(seq) * QUIET)
        return self.head(features), h


def audio_net() -> AudioNet:
    torch.manual_seed(0)
    net = AudioNet()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 1.5)
    return net.eval()


class Broken(nn.Module):
    """A Linear whose output a NaN spoils: the run must not call two NaNs agreeing a proof."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * float("nan")
