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

LIMITS: tuple[Limit, ...] = (
    Limit("SAFETENSORS_MAX_HEADER", SAFETENSORS_MAX_HEADER, "the JSON header of a safetensors file",
          "the safetensors library refuses headers over 100 MB too"),
)


def limit_table() -> str:
    """LIMITS as the README's Markdown table."""
    rows = ["| limit | value | bounds | why |", "| --- | --- | --- | --- |"]
    rows += [f"| `{limit.name}` | {limit.value:,} | {limit.bounds} | {limit.why} |" for limit in LIMITS]
    return "\n".join(rows)
