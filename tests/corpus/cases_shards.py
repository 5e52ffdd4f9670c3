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


@register("extra", "a .ckpt index whose shard is a FIFO", r"shard 'model-00001-of-00001\.ckpt' listed in the index is not a file")
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
