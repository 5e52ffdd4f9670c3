"""Shared test fixtures: the real CLI, and the real MindSpore on CPU.

Tests read like the README: they run the `convmigrate` command on files that the real
frameworks wrote into `tmp_path`. MindSpore is a test-time dependency and is never skipped.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.testing
from typer.testing import CliRunner

# Tables are rendered at a fixed width in tests, whatever terminal (or none) runs them. Set
# before the app (and its rich consoles) is imported.
os.environ["COLUMNS"] = "200"

from convmigrate.cli.app import app

REPO = Path(__file__).resolve().parents[1]


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


# Typer's CliRunner builds the command from the app on every call (~35 ms, more than most
# commands take on a small file): the same command, built once per app.
if hasattr(typer.testing, "_get_command"):
    typer.testing._get_command = functools.cache(typer.testing._get_command)


def run_cli(*args: object) -> CliResult:
    """Run `convmigrate ARGS...` in-process (the same Typer app the console script runs)."""
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, [str(a) for a in args], catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout, result.stderr)


def run_console_script(*args: object, cwd: Path | None = None) -> CliResult:
    """Run `python -m convmigrate ARGS...` as a real subprocess (for exit codes and stderr)."""
    completed = subprocess.run(
        [sys.executable, "-m", "convmigrate", *[str(a) for a in args]],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses MindSpore, so the numpy-2 run of CI can leave those out.

    Tests reach MindSpore only through the `ms` fixture (never a module-level import), because
    MindSpore 2.10 cannot run beside numpy 2 while the tool itself must.
    """
    for item in items:
        if "ms" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.mindspore)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def ms():
    """The real MindSpore, on CPU. Import it lazily: it takes about a second."""
    import mindspore

    mindspore.set_context(device_target="CPU")
    return mindspore
