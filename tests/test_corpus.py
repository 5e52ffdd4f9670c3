"""The adversarial corpus through every command, each in its own capped, timed process (issue 12).

For every case of `tests/corpus` and every command that reads a checkpoint (`inspect`,
`inspect --json`, `convert` to each format, `torch2ms`, `ms2torch`, `verify` on either side, and
as `--reference`): exit code 2, exactly one `error:` line on stderr naming the input and the
problem, no traceback and never the catch-all "unexpected", nothing left behind and the input
untouched, within the time and memory the limits table states.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import tests.corpus
from convmigrate.entries import TensorEntry
from convmigrate.formats import write_checkpoint
from convmigrate.vocab import Format
from tests.corpus import COMMANDS, CORPUS, DATA_LIMIT_MIB, HostileCase
from tests.corpus.build import snapshot

for module in pkgutil.iter_modules(tests.corpus.__path__):
    if module.name.startswith("cases_"):
        importlib.import_module(f"tests.corpus.{module.name}")

REPO = Path(__file__).resolve().parents[1]


def good_files(folder: Path) -> dict[str, Path]:
    """A small trusted model as .pt and as .ckpt (written by convmigrate: no torch needed)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    torch_side = [
        TensorEntry.from_array("enc.conv.weight", rng.standard_normal((8, 4, 3)).astype(np.float32)),
        TensorEntry.from_array("enc.conv.bias", rng.standard_normal(8).astype(np.float32)),
    ]
    ms_side = [torch_side[0].with_shape((8, 4, 1, 3)), torch_side[1]]
    write_checkpoint(folder / "good.pt", torch_side, Format.TORCH, durable=False)
    write_checkpoint(folder / "good.ckpt", ms_side, Format.CKPT, durable=False)
    return {"good_pt": folder / "good.pt", "good_ckpt": folder / "good.ckpt"}


class Driver:
    """One warm `tests.corpus.driver` process per test worker, serving every case in turn."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.corpus.driver"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, cwd=REPO, env={**os.environ, "COLUMNS": "160"},
        )

    def run(self, commands: list[list[str]], timeout: float) -> list[dict]:
        """Each command in its own capped child; the driver kills a child after `timeout`."""
        assert self.process.stdin is not None and self.process.stdout is not None
        request = {"commands": commands, "data_limit": DATA_LIMIT_MIB << 20, "timeout": timeout}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"the driver died (exit {self.process.poll()})"
        return json.loads(line)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run_capped(commands: list[list[str]], timeout: float) -> list[dict]:
    """Each command in its own capped, timed child of a fresh warm driver (for other test modules)."""
    serving = Driver()
    try:
        return serving.run(commands, timeout)
    finally:
        serving.close()


@pytest.fixture(scope="session")
def driver() -> Iterator[Driver]:
    serving = Driver()
    yield serving
    serving.close()


def check_refusal(case: HostileCase, what: str, result: dict, named: Path) -> None:
    shown = f"{case.id} / {what}: exit {result['exit_code']}\nstdout: {result['stdout']}\nstderr: {result['stderr']}"
    assert not result["timed_out"], f"{shown}\ntimed out after {result['seconds']:.1f} s"
    assert result["exit_code"] == 2, shown
    line = result["stderr"].strip()
    assert "\n" not in line and line.startswith("error: "), shown
    assert "Traceback" not in line and "unexpected" not in line, shown
    assert str(named) in line, f"{shown}\nthe error does not name {named}"
    assert re.search(case.problem, line), f"{shown}\n{case.problem!r} not found"
    assert result["seconds"] <= case.max_seconds, f"{shown}\ntook {result['seconds']:.1f} s"
    taken = result["max_rss_mib"] - result["parent_rss_mib"]
    assert taken <= case.max_rss_mib, f"{shown}\npeak RSS {result['max_rss_mib']:.0f} MiB, {taken:.0f} MiB beyond the warm process"


def check_bounded(case: HostileCase, what: str, result: dict) -> None:
    """A valid file that claims a huge size: a normal finish (exit 0, or 1/2 with one error
    line), never a crash, a traceback or the catch-all, within the time and memory bounds."""
    shown = f"{case.id} / {what}: exit {result['exit_code']}\nstdout: {result['stdout']}\nstderr: {result['stderr']}"
    assert not result["timed_out"], f"{shown}\ntimed out after {result['seconds']:.1f} s"
    assert result["exit_code"] in (0, 1, 2), shown
    assert "Traceback" not in result["stderr"] and "unexpected" not in result["stderr"], shown
    if result["exit_code"]:
        error = result["stderr"].strip()
        assert "\n" not in error and error.startswith("error: "), shown
    assert result["seconds"] <= case.max_seconds, f"{shown}\ntook {result['seconds']:.1f} s"
    taken = result["max_rss_mib"] - result["parent_rss_mib"]
    assert taken <= case.max_rss_mib, f"{shown}\npeak RSS {result['max_rss_mib']:.0f} MiB, {taken:.0f} MiB beyond the warm process"


@pytest.mark.parametrize("case_id", sorted(CORPUS))
def test_hostile_file_is_refused_by_every_command(
    tmp_path: Path, driver: Driver, case_id: str, request: pytest.FixtureRequest
) -> None:
    case = CORPUS[case_id]
    missing = [module for module in case.requires if importlib.util.find_spec(module) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}, which is not installed")
    if case.known_failure:
        request.applymarker(pytest.mark.xfail(reason=case.known_failure, strict=True))
    (tmp_path / "in").mkdir()
    source = case.build(tmp_path / "in")
    names = {"src": str(source), "out": str(tmp_path / "out"), **{k: str(v) for k, v in good_files(tmp_path / "good").items()}}
    (tmp_path / "out").mkdir()
    before = snapshot(tmp_path)
    commands = [[arg.format(**names) for arg in COMMANDS[what]] for what in case.commands]
    results = driver.run(commands, case.max_seconds + 5)
    for what, result in zip(case.commands, results):
        if case.accepted:
            check_bounded(case, what, result)
        else:
            check_refusal(case, what, result, case.names(source) if case.names else source)
    if case.accepted:  # outputs are written; everything else stays as it was
        before = {path: digest for path, digest in before.items() if not path.startswith("out/")}
        assert {path: digest for path, digest in snapshot(tmp_path).items() if not path.startswith("out/")} == before
    else:
        assert snapshot(tmp_path) == before, f"{case.id}: files changed or were left behind under {tmp_path}"


def test_the_corpus_is_not_empty() -> None:
    assert CORPUS, "no case module registered a case"
