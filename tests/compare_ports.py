"""MindSpore ports of tests/compare_nets.AudioNet: one faithful, and one per mistake ports make.

`convmigrate compare --ms-model tests.compare_ports:<factory>`. The faithful port follows
`convmigrate layers` for every layer (pad_mode, explicit pads for reflect / replicate / circular,
has_bias=True, LayerNorm's epsilon). Each other factory makes exactly one mistake.
This module imports MindSpore: only tests that take the `ms` fixture use it.
"""

from __future__ import annotations

from mindspore import nn, ops

from tests.compare_nets import IN_CHANNELS, QUIET


class AudioPort(nn.Cell):
    def __init__(self, mistake: str | None = None) -> None:
        super().__init__()
        self.mistake = mistake
        self.pre = nn.Conv1d(IN_CHANNELS, 8, 5, pad_mode="pad", padding=2, has_bias=True)
        self.act = nn.ReLU()
        self.same = nn.Conv1d(8, 8, 4, pad_mode="same", has_bias=True)
        self.valid = nn.Conv1d(8, 8, 3, pad_mode="valid", dilation=2, has_bias=True)
        if mistake == "padded differently":  # padding=1, padding_mode='reflect' read as zero padding
            self.reflect = nn.Conv1d(8, 8, 3, pad_mode="pad", padding=1, has_bias=True)
        else:
            self.reflect = nn.Conv1d(8, 8, 3, pad_mode="valid", has_bias=True)
        self.replicate = nn.Conv1d(8, 8, 3, pad_mode="valid")
        self.circular = nn.Conv1d(8, 8, 3, pad_mode="valid", has_bias=True)
        # has_bias defaults to False in MindSpore
        self.grouped = nn.Conv1d(8, 16, 3, pad_mode="pad", padding=1, group=4, has_bias=mistake != "forgotten bias")
        self.wn = nn.Conv1d(16, 16, 3, pad_mode="pad", padding=1, has_bias=True)  # weight norm folded
        self.bn = nn.BatchNorm1d(16)
        if mistake != "missing layer":
            self.down = nn.Conv1d(16, 16, 4, stride=2, pad_mode="pad", padding=1, has_bias=True)
        up_mode = {"pad_mode": "valid"} if mistake == "transposed pad_mode" else {"pad_mode": "pad", "padding": 1}
        self.up = nn.Conv1dTranspose(16, 8, 4, stride=2, has_bias=True, **up_mode)
        self.lstm = nn.LSTM(8, 6, batch_first=True, bidirectional=True)
        self.rnn = nn.LSTM(12, 6, batch_first=True)
        if mistake == "renamed layer":
            self.projection = nn.Dense(6, 6)
        else:
            self.proj = nn.Dense(6, 6)
        # MindSpore's default epsilon is 1e-7, PyTorch's 1e-5
        self.ln = nn.LayerNorm((6,)) if mistake == "layernorm epsilon" else nn.LayerNorm((6,), epsilon=1e-5)
        self.head = nn.Dense(6, 3)

    def construct(self, x):
        h = self.act(self.pre(x))
        h = self.valid(self.same(h))
        h = self.reflect(h if self.mistake == "padded differently" else ops.pad(h, (1, 1), mode="reflect"))
        h = self.replicate(ops.pad(h, (1, 1), mode="replicate"))
        h = self.circular(ops.pad(h, (1, 1), mode="circular"))
        h = self.bn(self.wn(self.grouped(h)))
        if self.mistake != "missing activation":
            h = self.act(h)
        if self.mistake != "missing layer":
            h = self.down(h)
        h = self.up(h)
        seq, _state = self.lstm(h if self.mistake == "forgotten transpose" else ops.transpose(h, (0, 2, 1)))
        seq, _last = self.rnn(seq)
        proj = self.projection if self.mistake == "renamed layer" else self.proj
        features = self.ln(proj(seq) * QUIET)
        return self.head(features), h


def faithful() -> AudioPort:
    return AudioPort()


def padded_differently() -> AudioPort:
    return AudioPort("padded differently")


def forgotten_bias() -> AudioPort:
    return AudioPort("forgotten bias")


def transposed_pad_mode() -> AudioPort:
    return AudioPort("transposed pad_mode")


def layernorm_epsilon() -> AudioPort:
    return AudioPort("layernorm epsilon")


def renamed_layer() -> AudioPort:
    return AudioPort("renamed layer")


def missing_layer() -> AudioPort:
    return AudioPort("missing layer")


def missing_activation() -> AudioPort:
    return AudioPort("missing activation")


def forgotten_transpose() -> AudioPort:
    return AudioPort("forgotten transpose")  # the LSTM gets (N, C, L): it raises


class BrokenPort(nn.Cell):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Dense(4, 2)

    def construct(self, x):
        return self.lin(x) * float("nan")
