"""One small network written twice, in PyTorch and in MindSpore, layer for layer.

It holds every layer kind the migration renames or reshapes: nn.Conv1d in each pad_mode, with
groups and dilation, a transposed conv, BatchNorm1d, GroupNorm, LayerNorm, Embedding, Dense and
PReLU. MindSpore is imported only inside `mindspore_net`, so this module loads under numpy 2.

The hyperparameters are the translations docs/differences.md explains: MindSpore's 'same' with
stride 1 and an odd kernel equals PyTorch's symmetric padding; LayerNorm's epsilon defaults
differ (1e-7 vs 1e-5), so the torch side sets MindSpore's value.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

IN_CHANNELS, LENGTH, VOCAB = 4, 16, 10


class TorchNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv_same = nn.Conv1d(4, 8, 3, padding=1)  # MindSpore pad_mode='same'
        self.act = nn.PReLU()
        self.conv_valid = nn.Conv1d(8, 8, 3, dilation=2, groups=2)  # pad_mode='valid'
        self.conv_pad = nn.Conv1d(8, 8, 5, padding=2, bias=False)  # pad_mode='pad', padding=2
        self.deconv = nn.ConvTranspose1d(8, 4, 4, stride=2)  # Conv1dTranspose pad_mode='valid'
        self.bn = nn.BatchNorm1d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.ln = nn.LayerNorm(4, eps=1e-7)
        self.emb = nn.Embedding(VOCAB, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv_pad(self.conv_valid(self.act(self.conv_same(x))))
        h = self.gn(self.bn(self.deconv(h)))
        h = self.ln(h.transpose(1, 2))
        return self.head(h), self.head(self.ln(self.emb(ids)))


def randomize_torch(net: TorchNet, seed: int = 0) -> TorchNet:
    """Non-trivial values everywhere, BatchNorm statistics included."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=generator) + 0.5
                tensor.copy_(values if "running_var" in name else values - 1.0)
    return net.eval()


def mindspore_net():
    """The same network in MindSpore's nn layers (parameter names: MindSpore's)."""
    from mindspore import nn as msnn
    from mindspore import ops

    class MsNet(msnn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.conv_same = msnn.Conv1d(4, 8, 3, pad_mode="same", has_bias=True)
            self.act = msnn.PReLU()
            self.conv_valid = msnn.Conv1d(8, 8, 3, pad_mode="valid", dilation=2, group=2, has_bias=True)
            self.conv_pad = msnn.Conv1d(8, 8, 5, pad_mode="pad", padding=2, has_bias=False)
            self.deconv = msnn.Conv1dTranspose(8, 4, 4, stride=2, pad_mode="valid", has_bias=True)
            self.bn = msnn.BatchNorm1d(4)
            self.gn = msnn.GroupNorm(2, 4)
            self.ln = msnn.LayerNorm((4,))
            self.emb = msnn.Embedding(VOCAB, 4)
            self.head = msnn.Dense(4, 3)

        def construct(self, x, ids):
            h = self.conv_pad(self.conv_valid(self.act(self.conv_same(x))))
            h = self.gn(self.bn(self.deconv(h)))
            h = self.ln(ops.transpose(h, (0, 2, 1)))
            return self.head(h), self.head(self.ln(self.emb(ids)))

    net = MsNet()
    net.set_train(False)
    return net


def randomize_mindspore(net, seed: int = 0):  # net: a mindspore Cell
    import mindspore

    rng = np.random.default_rng(seed)
    for param in net.get_parameters():
        values = rng.random(param.shape).astype(np.float32) + 0.5
        param.set_data(mindspore.Tensor(values if "moving_variance" in param.name else values - 1.0))
    return net


def inputs(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, IN_CHANNELS, LENGTH)).astype(np.float32)
    ids = rng.integers(0, VOCAB, size=(2, 5)).astype(np.int32)
    return x, ids


def run_torch(net: TorchNet, x: np.ndarray, ids: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.numpy() for t in net(torch.from_numpy(x), torch.from_numpy(ids.astype(np.int64)))]


def run_mindspore(net, x: np.ndarray, ids: np.ndarray) -> list[np.ndarray]:
    import mindspore

    return [t.asnumpy() for t in net(mindspore.Tensor(x), mindspore.Tensor(ids))]
