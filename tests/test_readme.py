"""The README tells the truth (issues 11 and 14): its commands run as written and print what a
user should read, its Python example runs, and its report example has a real report's keys
(tests/test_limits_table.py checks its limits tables)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def blocks(language: str, text: str = README) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end >= 0 else None]


def shell(folder: Path, columns: int = 160) -> dict[str, str]:
    """`convmigrate` on PATH as this checkout; output piped as into a CI log of `columns` columns."""
    bin_dir = folder / ".bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "convmigrate"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m convmigrate "$@"\n')
    script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO),
           "COLUMNS": str(columns)}
    env.pop("GITHUB_STEP_SUMMARY", None)
    return env


def run(command: str, folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=folder, env=env, capture_output=True,
                          text=True)


def test_the_first_command_migrates_the_fixture_and_says_what_it_did(tmp_path):
    """The README's first command (after installing): the plan's reasons, no negative counts
    (issue 11, case 6), whole names in a 160-column log (case 8), the verification."""
    [first] = [line for line in blocks("bash")[0].splitlines() if " torch2ms " in line and not line.startswith("#")]
    command = first.split(" && ")[-1]
    assert command.startswith("convmigrate torch2ms fixtures/tiny_tcn.pt")
    shutil.copytree(REPO / "fixtures", tmp_path / "fixtures")
    result = run(command, tmp_path, shell(tmp_path))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    out = result.stdout
    assert "wn.parametrizations.weight.original0" in out and "weight norm folded over all axes but 0" in out
    assert "BatchNorm (has running_mean/running_var)" in out and "Conv1d (3-D weight)" in out
    assert not re.search(r"and -\d+ more", out) and "... and" not in out
    for name in ("wn.parametrizations.weight.original0", "wn.parametrizations.weight.original1",
                 "bn.num_batches_tracked", "bn.moving_variance"):  # whole, never folded in a log
        assert any(name in line for line in out.splitlines()), name
    assert "other tensors: 12/12 bit-identical" in out
    assert (tmp_path / "fixtures" / "tiny_tcn.ckpt").exists()


def test_the_command_examples_run_in_order_as_written(tmp_path):
    """Every example under ## Commands, in a folder holding model.pt (the fixture)."""
    commands = [line for block in blocks("bash", section("Commands")) for line in block.splitlines()
                if line.startswith("convmigrate ")]
    assert len(commands) == 30  # five for each of the six commands
    shutil.copy(REPO / "fixtures" / "tiny_tcn.pt", tmp_path / "model.pt")
    env = shell(tmp_path)
    for command in commands:
        result = run(command, tmp_path, env)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        assert result.stderr == "", f"{command}\n{result.stderr}"
        assert not re.search(r"and -\d+ more", result.stdout), command
        if " -q" in command:
            assert result.stdout == "", command
    assert json.loads((tmp_path / "plan.json").read_text())["dry_run"] is True
    assert json.loads((tmp_path / "verify.json").read_text())["ok"] is True
    assert (tmp_path / "copy.pt").exists() and (tmp_path / "weights.dat").exists()


def test_the_python_example_runs(tmp_path, monkeypatch, capsys):
    [example] = blocks("python", section("Python API"))
    shutil.copytree(REPO / "fixtures", tmp_path / "fixtures")
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "README.md (Python API)", "exec"), {})  # the README's own example, as written
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("True tiny_tcn.ckpt {'copy': 6,")
    assert printed[1] == "stem Conv1d 0.0"
    assert any(line.startswith("16 {'float32': 16}") for line in printed)
    assert printed[-1].startswith("tiny_tcn.ckpt: output is the input file")
    assert json.loads((tmp_path / "verify.json").read_text())["ok"] is True


@pytest.fixture(scope="module")
def real_report(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("report")
    shutil.copytree(REPO / "fixtures", folder / "fixtures")
    result = run("convmigrate torch2ms fixtures/tiny_tcn.pt --fold-weight-norm --json", folder, shell(folder))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_report_example_has_a_real_reports_keys(real_report):
    [example] = [block for block in blocks("json") if '"command": "torch2ms"' in block]
    documented = json.loads(example)
    assert list(documented) == list(real_report)
    for key in ("input", "output", "plan", "verification"):
        assert list(documented[key]) == list(real_report[key]), key
    assert list(documented["plan"]["steps"][0]) == list(real_report["plan"]["steps"][0])
    assert documented["plan"]["steps"][0] == real_report["plan"]["steps"][0]
    assert documented["plan"]["counts"] == real_report["plan"]["counts"]
    assert list(documented["verification"]["layers"][0]) == list(real_report["verification"]["layers"][0])


def test_where_things_go_names_every_module_and_package():
    """The module map stays the map: each top-level module and package of convmigrate has its line."""
    tree = section("Where things go")
    package = REPO / "convmigrate"
    names = {p.name if p.is_dir() else p.stem for p in package.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__main__")}
    shown = {name for name in names if re.search(rf"(^|[ ,]){name}(\.py|/)", tree, re.M)}
    assert shown == names, sorted(names - shown)
