"""Synthetic Conv1d-heavy fp32 PyTorch checkpoints for the migration benchmark.

    python bench/make_checkpoint.py OUT.pt --gb 1          # one model of ~1 GB
    python bench/make_checkpoint.py OUT.pt --small 10000   # 10 000 small tensors
    python bench/make_checkpoint.py OUT.pt --gb 2.3 --giant-mib 700   # one 700 MiB Conv1d among the blocks
    python bench/make_checkpoint.py DIR --gb 4 --shards 4  # DIR/model.safetensors.index.json + 4 shards

The model is a stack of blocks shaped like a speech encoder / vocoder stage (512 channels):

    blocks.{i}.conv.weight        (512, 512, 5)    Conv1d, PyTorch layout -> (512, 512, 1, 5)
    blocks.{i}.conv.bias          (512,)
    blocks.{i}.dw.weight          (512, 1, 31)     depthwise Conv1d (conformer)
    blocks.{i}.norm.weight/bias/running_mean/running_var (512,), num_batches_tracked ()  BatchNorm1d
    blocks.{i}.ln.weight/bias     (512,)           LayerNorm -> gamma/beta
    blocks.{i}.proj.weight        (512, 512)       Linear
    blocks.{i}.proj.bias          (512,)

With --giant-mib, one Conv1d weight of that size comes first (a wide layer such as a speech LLM's
front end, shaped (C, C, 11) with C a multiple of 64), and the blocks fill the rest:

    giant.conv.weight             (C, C, 11)       e.g. (4096, 4096, 11): 704 MiB
    giant.conv.bias               (C,)

Each tensor is drawn straight into a NumPy array and wrapped with torch.from_numpy (no second
copy), then torch.save writes the state dict: the file is what PyTorch itself writes. With
--shards, the blocks are cut into that many equal shards, each written by the safetensors
library (`safetensors.torch.save_file`, one shard in memory at a time), with the index as
transformers writes it.
"""

from __future__ import annotations

import argparse
from collections import OrderedDict
from pathlib import Path

import numpy as np

CHANNELS = 512
KERNEL = 5
DEPTHWISE_KERNEL = 31


def block_shapes(index: int) -> list[tuple[str, tuple[int, ...]]]:
    c = CHANNELS
    prefix = f"blocks.{index}."
    return [
        (prefix + "conv.weight", (c, c, KERNEL)),
        (prefix + "conv.bias", (c,)),
        (prefix + "dw.weight", (c, 1, DEPTHWISE_KERNEL)),
        (prefix + "norm.weight", (c,)),
        (prefix + "norm.bias", (c,)),
        (prefix + "norm.running_mean", (c,)),
        (prefix + "norm.running_var", (c,)),
        (prefix + "ln.weight", (c,)),
        (prefix + "ln.bias", (c,)),
        (prefix + "proj.weight", (c, c)),
        (prefix + "proj.bias", (c,)),
    ]


BLOCK_BYTES = sum(4 * int(np.prod(shape)) for _, shape in block_shapes(0))


GIANT_KERNEL = 11


def giant_channels(mib: float) -> int:
    """C (a multiple of 64) whose (C, C, 11) float32 weight is closest to `mib` MiB."""
    return max(64, 64 * round((mib * 2**20 / (4 * GIANT_KERNEL)) ** 0.5 / 64))


def model_state(gb: float, seed: int = 0, giant_mib: float = 0) -> OrderedDict:
    """A state dict of about `gb` GiB of float32 (plus BatchNorm's int64 counters), with one
    Conv1d weight of about `giant_mib` MiB first when asked."""
    import torch

    rng = np.random.default_rng(seed)
    state: OrderedDict = OrderedDict()
    giant_bytes = 0
    if giant_mib:
        c = giant_channels(giant_mib)
        state["giant.conv.weight"] = torch.from_numpy(rng.standard_normal((c, c, GIANT_KERNEL), dtype=np.float32))
        state["giant.conv.bias"] = torch.from_numpy(rng.standard_normal((c,), dtype=np.float32))
        giant_bytes = 4 * c * (c * GIANT_KERNEL + 1)
    state.update(model_blocks(range(max(1, round((gb * 2**30 - giant_bytes) / BLOCK_BYTES))), rng))
    return state


def model_blocks(blocks: range, rng: np.random.Generator) -> OrderedDict:
    """The state of these blocks of the model."""
    import torch

    state: OrderedDict = OrderedDict()
    for index in blocks:
        for name, shape in block_shapes(index):
            state[name] = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))
            if name.endswith("running_var"):
                state[name].abs_()
        state[f"blocks.{index}.norm.num_batches_tracked"] = torch.tensor(1000, dtype=torch.int64)
    return state


def small_state(count: int, seed: int = 0) -> OrderedDict:
    """`count` small tensors: layers of a 3-tap Conv1d (16 -> 16) with bias, named as in a model."""
    import torch

    rng = np.random.default_rng(seed)
    state: OrderedDict = OrderedDict()
    for index in range(count // 2):
        state[f"layers.{index}.conv.weight"] = torch.from_numpy(rng.standard_normal((16, 16, 3), dtype=np.float32))
        state[f"layers.{index}.conv.bias"] = torch.from_numpy(rng.standard_normal((16,), dtype=np.float32))
    return state


def write_shards(folder: Path, gb: float, count: int) -> int:
    """`count` safetensors shards of about gb / count GiB each and their index; their total bytes."""
    import json

    from safetensors.torch import save_file

    blocks = max(count, round(gb * 2**30 / BLOCK_BYTES))
    folder.mkdir(parents=True, exist_ok=True)
    weight_map: dict[str, str] = {}
    total = 0
    for shard in range(count):
        name = f"model-{shard + 1:05d}-of-{count:05d}.safetensors"
        state = model_blocks(range(shard * blocks // count, (shard + 1) * blocks // count), np.random.default_rng(shard))
        save_file(state, folder / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(state, name))
        total += sum(t.nbytes for t in state.values())
        del state
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return sum(p.stat().st_size for p in folder.iterdir())


def write(path: Path, state: OrderedDict) -> int:
    import torch

    torch.save(state, path)
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--gb", type=float, help="approximate size in GiB")
    group.add_argument("--small", type=int, help="number of small tensors")
    parser.add_argument("--giant-mib", type=float, default=0, help="with --gb: one Conv1d weight of about this size")
    parser.add_argument("--shards", type=int, default=0, help="with --gb: OUTPUT is a folder of this many safetensors shards")
    args = parser.parse_args()
    if args.shards:
        size = write_shards(args.output, args.gb, args.shards)
        print(f"{args.output}: {args.shards} shards, {size / 2**20:.1f} MiB")
        return
    state = model_state(args.gb, giant_mib=args.giant_mib) if args.gb is not None else small_state(args.small)
    size = write(args.output, state)
    print(f"{args.output}: {len(state)} entries, {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
