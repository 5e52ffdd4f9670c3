"""Checkpoints as people have them, made by the real libraries (issue 13).

Each builder writes one file the way training code writes it and returns what reading it must
give: the `model.state_dict()` the tensors must equal bit for bit, the `--select` key that
reaches it (None: the automatic choice), and the modules whose classes the pickle names (a
reading process must not need them: tests poison them in `sys.modules`).

    lightning   a LightningModule checkpoint saved by a Trainer, omegaconf DictConfig/ListConfig
                hyper-parameters (what weights_only refuses since PyTorch 2.6)
    training    a training script's dict: argparse.Namespace, pathlib paths, NumPy scalars and
                arrays, random states, an optimizer state
    whole       torch.save(model) of a class defined in a module deleted before reading, with a
                non-persistent buffer, a missing bias, old-style weight norm, a submodule list
    gan         a GAN checkpoint: generator, discriminator and their optimizers
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import random
import sys
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn


@dataclass
class Wild:
    path: Path
    expected: dict[str, torch.Tensor]  # model.state_dict(), in its order
    select: str | None  # --select that reaches it (None: found automatically)
    foreign_modules: tuple[str, ...]  # modules the pickle names that the reader must never import


def conv_net(channels: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv1d(2, channels, 3, padding=1), nn.BatchNorm1d(channels), nn.ReLU(),
                        nn.Conv1d(channels, 1, 3, padding=1))
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 1.5)
    return net


def lightning_checkpoint(folder: Path) -> Wild:
    """A LightningModule trained two steps by a Trainer, saved by its ModelCheckpoint."""
    import lightning
    from omegaconf import OmegaConf

    class PitchModule(lightning.LightningModule):
        def __init__(self, cfg) -> None:  # a Hydra config: DictConfig with a ListConfig inside
            super().__init__()
            self.save_hyperparameters(cfg)
            self.net = conv_net(cfg.model.channels)

        def training_step(self, batch, _index):
            return self.net(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=self.hparams.optim.lr)

    cfg = OmegaConf.create({"model": {"channels": 4, "kernels": [3, 3]}, "optim": {"lr": 1e-3},
                            "data": {"root": "/data/pitch", "sample_rate": 16000}})
    module = PitchModule(cfg)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2, 16)), batch_size=4)
    checkpoints = lightning.pytorch.callbacks.ModelCheckpoint(dirpath=folder, filename="pitch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = lightning.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                                    enable_model_summary=False, callbacks=[checkpoints], default_root_dir=folder)
        trainer.fit(module, loader)
    return Wild(folder / "pitch.ckpt", dict(module.state_dict()), None, ("lightning", "pytorch_lightning", "omegaconf"))


def training_checkpoint(folder: Path) -> Wild:
    """What a hand-written training loop saves: its argparse args beside the model."""
    net = conv_net(seed=1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(2, 2, 8)).sum().backward()
    optimizer.step()
    args = argparse.Namespace(lr=0.1, data=pathlib.Path("/data/speech"), out=pathlib.PurePosixPath("runs/1"),
                              channels=[4, 1], seed=np.int64(7))
    checkpoint = {
        "model_state_dict": net.state_dict(), "optimizer_state_dict": optimizer.state_dict(), "args": args,
        "epoch": np.int64(3), "best_loss": np.float32(0.25), "history": np.linspace(1.0, 0.25, 4),
        "numpy_rng": np.random.default_rng(0), "python_rng": random.Random(0).getstate(), "torch_rng": torch.get_rng_state(),
    }
    path = folder / "train.pt"
    torch.save(checkpoint, path)
    return Wild(path, dict(net.state_dict()), None, ("argparse", "pathlib", "numpy.core.multiarray", "numpy.random", "numpy._core"))


WHOLE_MODEL_SOURCE = '''
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = torch.nn.utils.weight_norm(nn.Conv1d(channels, channels, 3, padding=1))  # weight_g / weight_v
        self.norm = nn.BatchNorm1d(channels)
        self.register_buffer("window", torch.hann_window(8), persistent=False)  # not in the state dict
        self.register_buffer("scale", torch.tensor([2.0]))
        self.register_buffer("unused", None)

    def forward(self, x):
        return self.norm(self.conv(x)) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv1d(2, 4, 5, padding=2, bias=False)
        self.blocks = nn.ModuleList([Block(4), Block(4)])
        self.nothing = None
        self.head = nn.Linear(4, 3)
        self.register_parameter("temperature", nn.Parameter(torch.tensor(0.7)))

    def forward(self, x):
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h.mean(-1)) / self.temperature
'''


def _module_from_source(folder: Path, source: str) -> tuple[str, object]:
    name = f"wild_{uuid.uuid4().hex[:12]}"
    (folder / f"{name}.py").write_text(source)
    sys.path.insert(0, str(folder))
    try:
        return name, importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


def _forget_module(folder: Path, name: str) -> None:
    """Delete the module's file and forget it: the pickle now names a class that exists nowhere."""
    (folder / f"{name}.py").unlink()
    sys.modules.pop(name, None)
    for cached in folder.glob(f"__pycache__/{name}.*"):
        cached.unlink()


def whole_model(folder: Path) -> Wild:
    """torch.save(model) of a class whose module is deleted before anyone reads the file."""
    name, module = _module_from_source(folder, WHOLE_MODEL_SOURCE)
    torch.manual_seed(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # weight_norm is deprecated in favour of parametrizations
        model = module.Net()
        model(torch.randn(1, 2, 8))  # weight norm computes `weight` from g and v on each call
        expected = dict(model.state_dict())
        path = folder / "whole.pt"
        torch.save(model, path)
    _forget_module(folder, name)
    return Wild(path, expected, None, (name,))


PARAMETRIZED_SOURCE = '''
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(2, 4, 3))  # parametrizations.weight.original0 / original1
        self.out = nn.Conv1d(4, 1, 1)
'''


def parametrized_model(folder: Path) -> Wild:
    """torch.save(model) with a parametrized Conv1d (new-style weight norm).

    torch refuses to pickle parametrized modules (their class is made at run time and their
    __getstate__ raises); a checkpoint holding one comes from code that made the class
    reachable, as done here, before the module is deleted.
    """
    name, module = _module_from_source(folder, PARAMETRIZED_SOURCE)
    torch.manual_seed(3)
    model = module.Net()
    parametrized = type(model.conv)
    parametrized.__module__, parametrized.__qualname__ = name, parametrized.__name__
    setattr(module, parametrized.__name__, parametrized)
    del parametrized.__getstate__
    model.conv._load_state_dict_pre_hooks.clear()  # a local function, for loading pre-2.1 state dicts
    expected = dict(model.state_dict())
    path = folder / "parametrized.pt"
    torch.save(model, path)
    _forget_module(folder, name)
    return Wild(path, expected, None, (name, "torch"))


def gan_checkpoint(folder: Path, select: str = "discriminator") -> Wild:
    """A GAN's checkpoint: both networks and both optimizers; `select` names the one wanted."""
    generator = nn.Sequential(nn.ConvTranspose1d(8, 4, 4, stride=2, padding=1), nn.Tanh())
    discriminator = nn.Sequential(nn.Conv1d(4, 8, 3), nn.LeakyReLU(0.2), nn.Conv1d(8, 1, 3))
    checkpoint = {
        "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
        "optim_g": torch.optim.Adam(generator.parameters()).state_dict(),
        "optim_d": torch.optim.Adam(discriminator.parameters()).state_dict(), "epoch": 12,
    }
    path = folder / "gan.pt"
    torch.save(checkpoint, path)
    wanted = {"generator": generator, "discriminator": discriminator}[select]
    return Wild(path, dict(wanted.state_dict()), select, ())


BUILDERS: dict[str, Callable[[Path], Wild]] = {
    "lightning": lightning_checkpoint,
    "training": training_checkpoint,
    "whole": whole_model,
    "parametrized": parametrized_model,
    "gan": gan_checkpoint,
}
