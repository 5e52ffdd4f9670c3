"""The limits policy: what a file may claim before convmigrate refuses to read it.

Every size, count, depth and offset a checkpoint claims is checked against what the file holds
and against these bounds before anything is allocated, computed or looped over, so a hostile
file costs time and memory linear in its real size. Each limit is one `Limit` row: readers
import the constant, the README's limits table is generated from `LIMITS` (and a test keeps the
two equal), and an error that a limit raises names the limit.

Adding a limit: one constant here, one row in `LIMITS` saying what it bounds, why the value is
safe for real checkpoints, and how the reference library behaves (stricter, laxer, the same).
"""

from __future__ import annotations

from dataclasses import dataclass

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True)
class Limit:
    name: str  # the constant's name
    value: int
    bounds: str  # what it bounds, in a user's words
    why: str  # why this value, and what the reference library does


SAFETENSORS_MAX_HEADER = 100 * MiB
# Verification's arrays for one conv (random input, padded input, outputs) are bounded by the
# weight's real elements, never by what a shape or a layers JSON claims: at most this many times
# the weight's element count, or the floor for small weights.
VERIFY_ELEMENTS_PER_WEIGHT = 64
VERIFY_ELEMENTS_FLOOR = 1 << 22
# The check of a translated conv (`convmigrate layers`, a layers JSON) runs random weights of at
# most 2 channels per group on inputs its hyperparameters size: their arrays stay under this.
LAYER_CHECK_MAX_ELEMENTS = 1 << 24
COMPARE_MAX_INPUT_BYTES = 1 * GiB
COMPARE_MAX_INPUT_ARRAYS = 256
COMPARE_MAX_RECORDED_BYTES = 2 * GiB

LIMITS: tuple[Limit, ...] = (
    Limit("SAFETENSORS_MAX_HEADER", SAFETENSORS_MAX_HEADER, "the JSON header of a safetensors file",
          "the safetensors library refuses headers over 100 MB too"),
    Limit("VERIFY_ELEMENTS_PER_WEIGHT", VERIFY_ELEMENTS_PER_WEIGHT,
          "the largest array verification builds for one conv, per element of its weight",
          "a plain stride-1 check needs under 10x; a layers JSON's dilation, stride or groups claiming more "
          "fails that layer's check (exit 1) instead of allocating; the frameworks have no such check"),
    Limit("VERIFY_ELEMENTS_FLOOR", VERIFY_ELEMENTS_FLOOR,
          "the largest array verification builds for one conv, whatever its weight (16 MiB of float32)",
          "room for small layers with long dilated kernels; a zero-element weight is never run at all"),
    Limit("LAYER_CHECK_MAX_ELEMENTS", LAYER_CHECK_MAX_ELEMENTS,
          "the arrays the check of one translated conv builds (channels x samples), from its hyperparameters",
          "a 1024-group depthwise conv with a 2049-sample dilated kernel needs 4M; a kernel_size, dilation, stride, "
          "padding or groups claiming more is refused (exit 2); the frameworks allocate what they are told"),
    Limit("COMPARE_MAX_INPUT_BYTES", COMPARE_MAX_INPUT_BYTES, "all inputs of `compare` together (--input shapes and "
          "--inputs arrays)", "minutes of 16 kHz float32 audio in a batch fit many times; numpy.load has no bound"),
    Limit("COMPARE_MAX_INPUT_ARRAYS", COMPARE_MAX_INPUT_ARRAYS, "arrays in a `compare --inputs` .npz",
          "a forward call takes a handful of arguments; numpy.load has no bound"),
    Limit("COMPARE_MAX_RECORDED_BYTES", COMPARE_MAX_RECORDED_BYTES, "layer outputs `compare` keeps from the PyTorch "
          "run to pair with MindSpore's (later layers are listed as not recorded)",
          "a base-size speech model on seconds of audio records tens of MB; the outputs themselves are always compared"),
)


def limit_table() -> str:
    """LIMITS as the README's Markdown table."""
    rows = ["| limit | value | bounds | why |", "| --- | --- | --- | --- |"]
    rows += [f"| `{limit.name}` | {limit.value:,} | {limit.bounds} | {limit.why} |" for limit in LIMITS]
    return "\n".join(rows)
