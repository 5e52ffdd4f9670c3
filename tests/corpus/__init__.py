"""The adversarial corpus (issue 12): hostile files built at test time, run through every command.

A case is a generator of one hostile input plus what the one-line error must say. Case modules
(`tests/corpus/cases_*.py`, one per format or attack family) register their cases with
`register`; `tests/test_corpus.py` imports every case module and runs each case through every
command that reads a checkpoint, each in its own process under a memory cap and a timeout
(`tests/corpus/driver.py`). Add a case by writing its generator in the module of its format:

    @register("12.1", "zip bomb: a deflated data.pkl of 3 GB", r"data\\.pkl .* compressed")
    def zip_bomb(folder: Path) -> Path:
        ...
        return folder / "bomb.pt"
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Every command a CI step could run on a checkpoint. {src} is the hostile file; {out} a fresh
# folder for outputs; {good_pt} / {good_ckpt} trusted files of the same small model.
COMMANDS: dict[str, tuple[str, ...]] = {
    "inspect": ("inspect", "{src}"),
    "inspect --json": ("inspect", "{src}", "--json"),
    "convert -> pt": ("convert", "{src}", "-o", "{out}/c.pt"),
    "convert -> safetensors": ("convert", "{src}", "-o", "{out}/c.safetensors"),
    "convert -> ms-safetensors": ("convert", "{src}", "-o", "{out}/c.safetensors", "--format", "ms-safetensors"),
    "convert -> ckpt": ("convert", "{src}", "-o", "{out}/c.ckpt", "--crc"),
    "torch2ms": ("torch2ms", "{src}", "-o", "{out}/m.ckpt"),
    "ms2torch": ("ms2torch", "{src}", "-o", "{out}/m.pt"),
    # Sharded outputs: jobs in worker processes, shards staged beside the index (nothing may stay).
    "torch2ms -> shards": ("torch2ms", "{src}", "-o", "{out}/m.safetensors.index.json", "--jobs", "2"),
    "convert -> ckpt shards": ("convert", "{src}", "-o", "{out}/c.ckpt.index.json", "--max-shard-size", "1KB",
                               "--jobs", "2"),
    "verify (as original)": ("verify", "{src}", "{good_ckpt}"),
    "verify (as converted)": ("verify", "{good_pt}", "{src}"),
    "torch2ms --reference": ("torch2ms", "{good_pt}", "-o", "{out}/r.ckpt", "--reference", "{src}"),
    "ms2torch --reference": ("ms2torch", "{good_ckpt}", "-o", "{out}/r.pt", "--reference", "{src}"),
}
# Commands that read a file the user wrote rather than a checkpoint; a case opts in with
# `commands=LAYERS_COMMANDS` or `commands=RULES_COMMANDS`.
COMMANDS.update({
    "verify --layers": ("verify", "{good_pt}", "{good_ckpt}", "--layers", "{src}"),
    "torch2ms --rules": ("torch2ms", "{good_pt}", "-o", "{out}/u.ckpt", "--rules", "{src}"),
    "ms2torch --rules": ("ms2torch", "{good_ckpt}", "-o", "{out}/u.pt", "--rules", "{src}"),
})
CHECKPOINT_COMMANDS: tuple[str, ...] = tuple(c for c in COMMANDS if "--layers" not in c and "--rules" not in c)
LAYERS_COMMANDS: tuple[str, ...] = ("verify --layers",)
RULES_COMMANDS: tuple[str, ...] = ("torch2ms --rules", "ms2torch --rules")

# What every case must stay within, per command (the README's limits table states them).
MAX_SECONDS = 30.0
MAX_RSS_MIB = 600  # resident memory one command takes beyond the warm process it is forked from
DATA_LIMIT_MIB = 2048  # RLIMIT_DATA of each command: an allocation beyond it fails, not the machine


@dataclass(frozen=True)
class HostileCase:
    """One hostile input and the one-line refusal every command must give for it (or, `accepted`,
    the bounded time and memory in which every command must read it)."""

    item: str  # where it comes from: "12.1" (issue 12, case 1), "13", "extra" (our own)
    title: str
    problem: str  # a regex the one `error:` line must match (besides naming the input)
    build: Callable[[Path], Path]  # writes the hostile input into the folder, returns its path
    commands: tuple[str, ...] = CHECKPOINT_COMMANDS
    max_seconds: float = MAX_SECONDS
    max_rss_mib: int = MAX_RSS_MIB
    # The one error line names this file instead of the input (an index naming a bad shard).
    names: Callable[[Path], Path] | None = field(default=None)
    # A valid file that claims a huge size (a zero-element tensor with a 2**27 kernel): no command
    # refuses it, each must finish normally (exit 0, or 1/2 with one error line) within the bounds.
    accepted: bool = False
    # An open bug owned by another area (who and what): the case is a strict xfail until the fix
    # lands, and then fails, so that this field is removed with the fix.
    known_failure: str | None = None
    # Modules the refusal needs (e.g. "torch": the file goes to the torch.load fallback); the case
    # is skipped where one is not installed, as in the torch-free run.
    requires: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.item} {re.sub(r'[^A-Za-z0-9.+-]+', '-', self.title).strip('-')}"


CORPUS: dict[str, HostileCase] = {}


def register(item: str, title: str, problem: str, **options: object) -> Callable[[Callable[[Path], Path]], Callable[[Path], Path]]:
    """Decorator: add the decorated generator to the corpus as one case."""

    def add(build: Callable[[Path], Path]) -> Callable[[Path], Path]:
        case = HostileCase(item, title, problem, build, **options)  # type: ignore[arg-type]
        if case.id in CORPUS:
            raise ValueError(f"two corpus cases are called {case.id!r}")
        CORPUS[case.id] = case
        return build

    return add
