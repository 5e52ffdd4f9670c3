"""Indexes of .ckpt and torch shards (`model.ckpt.index.json`, `pytorch_model.bin.index.json`),
read by formats/shards.py: an index decides which files are opened, so it must never name a
file outside its folder, itself, or anything that is not a regular file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from convmigrate.entries import TensorEntry
from convmigrate.formats import write_checkpoint
from convmigrate.vocab import Format
from tests.corpus import register
from tests.corpus.build import written


def shard(path: Path, fmt: Format, *names: str) -> str:
    """A valid shard of small conv tensors (torch layout), written by convmigrate; its file name."""
    entries = [TensorEntry.from_array(name, np.full((4, 2, 3), i, np.float32)) for i, name in enumerate(names)]
    write_checkpoint(path, entries, fmt, durable=False)
    return path.name


def index(path: Path, weight_map: dict[str, str]) -> Path:
    return written(path, json.dumps({"metadata": {"total_size": 96}, "weight_map": weight_map}).encode())


@register("extra", "a .ckpt index naming a shard outside its folder", r"shard '\.\./outside\.ckpt' is not a file name beside the index")
def shard_outside(folder: Path) -> Path:
    shard(folder.parent / "outside.ckpt", Format.CKPT, "a.weight")
    return index(folder / "model.ckpt.index.json", {"a.weight": "../outside.ckpt"})


@register("extra", "a .ckpt index naming itself as its shard", r"shard 'model\.ckpt\.index\.json' is not a file name beside the index")
def shard_is_index(folder: Path) -> Path:
    return index(folder / "model.ckpt.index.json", {"a.weight": "model.ckpt.index.json"})


@register("extra", "a .ckpt index whose shard is a FIFO", r"shard 'model-00001-of-00001\.ckpt' is not a regular file")
def shard_fifo(folder: Path) -> Path:
    os.mkfifo(folder / "model-00001-of-00001.ckpt")
    return index(folder / "model.ckpt.index.json", {"a.weight": "model-00001-of-00001.ckpt"})


@register("extra", "a torch shards index placing a tensor in a shard that lacks it", r"index places 'ghost' in shard .*which does not hold it")
def shard_lacks_tensor(folder: Path) -> Path:
    name = shard(folder / "pytorch_model-00001-of-00001.bin", Format.TORCH, "a.weight")
    return index(folder / "pytorch_model.bin.index.json", {"a.weight": name, "ghost": name})


@register("extra", "a torch shards index whose shard holds a tensor the index does not place there",
          r"shard 'pytorch_model-00002-of-00002\.bin' holds 'b\.weight', which the index does not place there")
def shard_holds_unplaced(folder: Path) -> Path:
    first = shard(folder / "pytorch_model-00001-of-00002.bin", Format.TORCH, "a.weight")
    second = shard(folder / "pytorch_model-00002-of-00002.bin", Format.TORCH, "b.weight", "c.weight")
    return index(folder / "pytorch_model.bin.index.json", {"a.weight": first, "c.weight": second})


@register("extra", "an index mixing .ckpt and torch shards", r"shard 'b\.pt' is pt, the shards before it ckpt")
def shards_of_two_formats(folder: Path) -> Path:
    first = shard(folder / "a.ckpt", Format.CKPT, "a.weight")
    second = shard(folder / "b.pt", Format.TORCH, "b.weight")
    return index(folder / "model.ckpt.index.json", {"a.weight": first, "b.weight": second})


# Symlinks: a shard reached through a symlink is read only when the link's target is directly in
# the index's folder (an alias within the checkpoint). The index itself may be a symlink: its
# shards are the files beside the name the user gave, never the ones beside the link's target.
LEAVES = r"shard '{name}' is a symlink to a file outside .*; copy the shards into one folder"


def model_and_outside(folder: Path) -> tuple[Path, Path]:
    """folder/model (the checkpoint) and folder/outside (not part of it), both created."""
    (folder / "model").mkdir()
    (folder / "outside").mkdir()
    return folder / "model", folder / "outside"


@register("extra", "a .ckpt shard that is a symlink to a .ckpt outside the model's folder",
          LEAVES.format(name=r"model-00001-of-00001\.ckpt"))
def shard_symlink_out(folder: Path) -> Path:
    model, outside = model_and_outside(folder)
    shard(outside / "secret.ckpt", Format.CKPT, "a.weight")
    (model / "model-00001-of-00001.ckpt").symlink_to(outside / "secret.ckpt")
    return index(model / "model.ckpt.index.json", {"a.weight": "model-00001-of-00001.ckpt"})


@register("extra", "a torch shard that is a relative symlink to another model folder's shard",
          LEAVES.format(name=r"pytorch_model-00002-of-00002\.bin"))
def shard_symlink_sibling(folder: Path) -> Path:
    model, other = model_and_outside(folder)
    first = shard(model / "pytorch_model-00001-of-00002.bin", Format.TORCH, "a.weight")
    second = shard(other / "pytorch_model-00002-of-00002.bin", Format.TORCH, "b.weight")
    (model / second).symlink_to(Path("..") / other.name / second)
    return index(model / "pytorch_model.bin.index.json", {"a.weight": first, "b.weight": second})


@register("extra", "a torch shard that is an in-folder symlink chain ending outside the folder",
          LEAVES.format(name=r"pytorch_model-00001-of-00001\.bin"))
def shard_symlink_chain(folder: Path) -> Path:
    model, outside = model_and_outside(folder)
    shard(outside / "secret.bin", Format.TORCH, "a.weight")
    (model / "hop.bin").symlink_to(Path("..") / outside.name / "secret.bin")
    (model / "pytorch_model-00001-of-00001.bin").symlink_to("hop.bin")
    return index(model / "pytorch_model.bin.index.json", {"a.weight": "pytorch_model-00001-of-00001.bin"})


@register("extra", "a symlinked .ckpt index whose shards lie only beside its target",
          r"shard 'model-00001-of-00001\.ckpt' listed in the index is missing from .*model")
def index_symlink(folder: Path) -> Path:
    model, elsewhere = model_and_outside(folder)
    name = shard(elsewhere / "model-00001-of-00001.ckpt", Format.CKPT, "a.weight")
    index(elsewhere / "model.ckpt.index.json", {"a.weight": name})
    (model / "model.ckpt.index.json").symlink_to(elsewhere / "model.ckpt.index.json")
    return model / "model.ckpt.index.json"


@register("extra", "a .ckpt shard that is a symlink to the index's folder itself",
          LEAVES.format(name=r"model-00001-of-00001\.ckpt"))
def shard_symlink_to_folder(folder: Path) -> Path:
    model, _ = model_and_outside(folder)
    (model / "model-00001-of-00001.ckpt").symlink_to(".")
    return index(model / "model.ckpt.index.json", {"a.weight": "model-00001-of-00001.ckpt"})


@register("extra", "a .ckpt shard that is an in-folder symlink to its own index", r"shard 'model-00001-of-00001\.ckpt' is an index")
def shard_symlink_to_index(folder: Path) -> Path:
    (folder / "model-00001-of-00001.ckpt").symlink_to("model.ckpt.index.json")
    return index(folder / "model.ckpt.index.json", {"a.weight": "model-00001-of-00001.ckpt"})
