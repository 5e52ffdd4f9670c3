"""Claimed sizes against verification (issue 12, case 4): valid files whose shapes claim far more
than they hold, so that any array sized from a shape instead of the bytes would blow up.

A zero-element conv weight may claim a kernel of 2**27: the file is a few dozen bytes, the
tensor is real (torch.empty((0, 1, 2**27)) is one), and nothing may refuse it; but a check
that sized its random input from the kernel took 1.6 GB (2**30: 12 GB). Verification must
bound every array by what the tensors really hold: a zero-element layer needs no numerics at
all (its shape and bytes are compared), so every command finishes in a few dozen MiB.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from convmigrate.entries import TensorEntry
from convmigrate.formats import write_checkpoint
from convmigrate.vocab import DTYPES, Format
from tests.corpus import register
from tests.corpus.build import ckpt_value, written

HUGE = 2**27
# The commands that verify: a conversion (whose output is verified before it takes its name),
# verify on either side, and a conversion against it as the reference.
MS_SIDE = ("inspect", "ms2torch", "verify (as original)", "verify (as converted)", "ms2torch --reference")
TORCH_SIDE = ("inspect", "torch2ms", "verify (as original)", "verify (as converted)", "torch2ms --reference")


def empty(dims: list[int]) -> tuple[list[int], str, bytes]:
    return dims, "Float32", b""


def safetensors(path: Path, tensors: dict[str, tuple[list[int], bytes]]) -> Path:
    """A safetensors file written by hand (the offsets follow the bytes given)."""
    header, offset, data = {}, 0, b""
    for name, (shape, content) in tensors.items():
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(content)]}
        offset, data = offset + len(content), data + content
    encoded = json.dumps(header).encode()
    return written(path, struct.pack("<Q", len(encoded)) + encoded + data)


@register("12.4", "a zero-element conv weight with a 2**27 kernel (a 39-byte .ckpt)", "", accepted=True, commands=MS_SIDE)
def zero_kernel_ckpt(folder: Path) -> Path:
    return written(folder / "zero_kernel.ckpt", ckpt_value("conv.weight", *empty([0, 1, 1, HUGE])))


@register("12.4", "a zero-element conv weight with a 2**30 kernel (.ckpt)", "", accepted=True, commands=MS_SIDE)
def zero_kernel_30_ckpt(folder: Path) -> Path:
    return written(folder / "zero_kernel_30.ckpt", ckpt_value("conv.weight", *empty([0, 1, 1, 2**30])))


@register("12.4", "a zero-element conv weight with a 2**27 kernel (a 93-byte safetensors)", "", accepted=True,
          commands=TORCH_SIDE)
def zero_kernel_safetensors(folder: Path) -> Path:
    return safetensors(folder / "zero_kernel.safetensors", {"conv.weight": ([0, 1, HUGE], b"")})


@register("12.4", "a zero-element conv weight with a 2**27 kernel (torch.save zip)", "", accepted=True, commands=TORCH_SIDE)
def zero_kernel_pt(folder: Path) -> Path:
    weight = TensorEntry("conv.weight", DTYPES["float32"], (0, 1, HUGE), lambda: (memoryview(b""),))
    write_checkpoint(folder / "zero_kernel.pt", [weight], Format.TORCH, durable=False)
    return folder / "zero_kernel.pt"


@register("12.4", "a zero-element conv weight with 2**27 input channels", "", accepted=True, commands=MS_SIDE)
def zero_weight_many_inputs(folder: Path) -> Path:
    return written(folder / "many_inputs.ckpt", ckpt_value("conv.weight", *empty([0, HUGE, 1, 3])))


@register("12.4", "a zero-element conv weight with 2**27 output channels", "", accepted=True, commands=MS_SIDE)
def zero_weight_many_outputs(folder: Path) -> Path:
    return written(folder / "many_outputs.ckpt", ckpt_value("conv.weight", *empty([HUGE, 0, 1, 3])))


@register("12.4", "a zero-element transposed conv with a real bias and a 2**27 kernel", "", accepted=True, commands=MS_SIDE)
def zero_transposed(folder: Path) -> Path:
    bias = np.ones(2, np.float32).tobytes()  # (2,) = the weight's second axis: a transposed conv
    return written(folder / "transposed.ckpt", ckpt_value("up.weight", *empty([0, 2, 1, HUGE]))
                   + ckpt_value("up.bias", [2], "Float32", bias))


@register("12.4", "a zero-element weight-normalised conv with a 2**27 kernel", "", accepted=True, commands=TORCH_SIDE)
def zero_weight_norm(folder: Path) -> Path:
    return safetensors(folder / "weight_norm.safetensors",
                       {"tcn.weight_g": ([0, 1, 1], b""), "tcn.weight_v": ([0, 1, HUGE], b"")})


@register("12.4", "200 zero-element convs of one shape with a 2**20 kernel (checked in stacks)", "", accepted=True,
          commands=MS_SIDE)
def zero_weights_stacked(folder: Path) -> Path:
    # Small plain convs of one shape are checked 64 at a time as one grouped conv: stacked,
    # 64 claimed kernels of 2**20 would make one input of 128 x 2**20 samples.
    return written(folder / "stacked.ckpt", b"".join(
        ckpt_value(f"blocks.{i}.conv.weight", *empty([0, 2, 1, 2**20])) for i in range(200)))
