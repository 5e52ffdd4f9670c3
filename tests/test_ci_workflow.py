"""The CI step (issue 14): docs/ci.md's workflow commands run as written, and the GitHub step
summary, JUnit and JSON reports they leave say what happened, on success and on failure."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

import convmigrate
from convmigrate.entries import TensorEntry
from convmigrate.formats import open_checkpoint, write_checkpoint

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "fixtures" / "tiny_tcn.pt"


def workflow_commands() -> list[str]:
    """The `run:` lines of docs/ci.md's workflow that call convmigrate (installing is CI's job)."""
    text = (REPO / "docs" / "ci.md").read_text()
    workflow = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    runs = re.findall(r"^\s+run: (.+)$", workflow, re.M)
    return [run for run in runs if "convmigrate " in run and not run.startswith("pip ")]


def job_folder(tmp_path: Path) -> dict[str, str]:
    """A checkout with the model under checkpoints/, and `convmigrate` on PATH as this checkout."""
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(FIXTURE, tmp_path / "checkpoints" / "model.pt")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "convmigrate"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m convmigrate "$@"\n')
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}


def run_step(command: str, folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=folder, env=env, capture_output=True,
                          text=True)


def test_the_documented_workflow_runs_as_written(tmp_path):
    commands = workflow_commands()
    assert len(commands) == 2 and "torch2ms" in commands[0] and "verify" in commands[1]
    env = job_folder(tmp_path)
    for command in commands:
        step = run_step(command, tmp_path, env)
        assert (step.returncode, step.stdout, step.stderr) == (0, "", ""), command  # -q: silent on success
    for name in ("torch2ms", "verify"):
        report = json.loads((tmp_path / "reports" / f"{name}.json").read_text())
        assert report["ok"] is True and report["exit_code"] == 0 and report["command"] == name
        suite = ET.parse(tmp_path / "reports" / f"{name}.xml").getroot()
        assert suite.get("failures") == "0" and int(suite.get("tests")) == 5  # 4 convs + the other tensors
    summary = (tmp_path / "summary.md").read_text()
    assert "### convmigrate torch2ms: ✅ passed" in summary and "### convmigrate verify: ✅ passed" in summary
    assert "| layer | kind | converted weight | max abs error | max rel error | result |" in summary
    assert "| `wn` | Conv1d |" in summary and "| `up` | ConvTranspose1d |" in summary  # folded weight norm too
    assert convmigrate.inspect(tmp_path / "model.ckpt").summary["format"] == "ckpt"


def damaged(converted: Path, name: str) -> None:
    """The converted file with one tap of `name` changed (written by convmigrate's own writer)."""
    with open_checkpoint(converted) as checkpoint:
        entries = []
        for entry in checkpoint.entries:
            if entry.name == name:
                array = entry.array().copy()
                array.flat[1] += np.float32(0.5)
                entry = TensorEntry.from_array(name, array)
            entries.append(entry)
        write_checkpoint(converted.with_suffix(".tmp"), entries, checkpoint.format)
    converted.with_suffix(".tmp").replace(converted)


def test_a_failing_verify_step_fails_and_says_why_everywhere(tmp_path):
    env = job_folder(tmp_path)
    convert, verify = workflow_commands()
    assert run_step(convert, tmp_path, env).returncode == 0
    damaged(tmp_path / "model.ckpt", "dilated.weight")
    step = run_step(verify, tmp_path, env)
    assert step.returncode == 1 and step.stdout == ""
    assert step.stderr.splitlines() == ["error: verification failed for dilated.weight (layer dilated)",
                                        "  dilated.weight (layer dilated)"]
    report = json.loads((tmp_path / "reports" / "verify.json").read_text())
    assert report["ok"] is False and report["exit_code"] == 1 and report["failures"] == ["dilated.weight (layer dilated)"]
    suite = ET.parse(tmp_path / "reports" / "verify.xml").getroot()
    failed = [case.get("name") for case in suite if case.find("failure") is not None]
    assert failed == ["dilated"]
    summary = (tmp_path / "summary.md").read_text().split("### convmigrate verify")[1]
    assert summary.startswith(": ❌ failed")
    first_row = next(line for line in summary.splitlines() if line.startswith("| `"))
    assert first_row.startswith("| `dilated` | Conv1d |") and "**FAIL**" in first_row  # failures first


def test_the_summary_escapes_names_and_reports_errors(tmp_path):
    env = job_folder(tmp_path)
    nasty = "a|b`c\n### forged heading <img src=x>"
    torch_state = {f"{nasty}.weight": np.ones((2, 2, 3), np.float32)}
    write_checkpoint(tmp_path / "nasty.pt", [TensorEntry.from_array(k, v) for k, v in torch_state.items()],
                     convmigrate.vocab.Format.TORCH)
    assert run_step("convmigrate torch2ms nasty.pt -q", tmp_path, env).returncode == 0
    assert run_step("convmigrate inspect missing.pt -q", tmp_path, env).returncode == 2  # inspect writes no summary
    assert run_step("convmigrate verify nasty.pt missing.ckpt -q", tmp_path, env).returncode == 2
    summary = (tmp_path / "summary.md").read_text()
    assert "\n### forged" not in summary and "<img" in summary  # inside a code span, on the row's line
    row = next(line for line in summary.splitlines() if "forged" in line)
    assert row.startswith("| ``a\\|b`c\\n### forged heading <img src=x>`` |")
    assert "### convmigrate verify: ❌ error" in summary and "missing.ckpt" in summary


def test_ms2torch_appends_its_section_and_a_failing_plan_lists_its_problems(tmp_path):
    env = job_folder(tmp_path)
    convert, _ = workflow_commands()
    assert run_step(convert, tmp_path, env).returncode == 0
    assert run_step("convmigrate ms2torch model.ckpt -o back.pt -q", tmp_path, env).returncode == 0
    ms_state = {"conv.weight": np.ones((8, 4, 1, 3), np.float32), "emb.embedding_table": np.ones((10, 4), np.float32)}
    write_checkpoint(tmp_path / "guess.ckpt", [TensorEntry.from_array(k, v) for k, v in ms_state.items()],
                     convmigrate.vocab.Format.CKPT)
    step = run_step("convmigrate ms2torch guess.ckpt --strict -q", tmp_path, env)
    assert step.returncode == 1 and step.stdout == ""
    sections = (tmp_path / "summary.md").read_text().split("### convmigrate ")
    assert [s.split("\n")[0] for s in sections[1:]] == ["torch2ms: ✅ passed", "ms2torch: ✅ passed",
                                                       "ms2torch: ❌ failed"]
    assert "| `wn` | Conv1d |" in sections[2]  # the per-layer table of the way back
    failed = sections[3]
    assert "**not written**" in failed and "**Problems**" in failed
    assert "- ❌ warning `guess` `conv.weight`: " in failed


def test_an_unwritable_summary_is_a_warning_and_never_fails_the_step(tmp_path):
    env = {**job_folder(tmp_path), "GITHUB_STEP_SUMMARY": str(tmp_path / "no such folder" / "summary.md")}
    step = run_step("convmigrate verify checkpoints/model.pt checkpoints/model.pt -q", tmp_path, env)
    assert step.returncode == 0 and step.stdout == ""
    assert step.stderr.startswith("warning: cannot append to GITHUB_STEP_SUMMARY ") and step.stderr.count("\n") == 1
