"""Shared test fixtures: the real CLI, and the real MindSpore on CPU.

Tests read like the README: they run the `convmigrate` command on files that the real
frameworks wrote into `tmp_path`. MindSpore is a test-time dependency and is never skipped.

torch is an optional extra of the tool and a dependency of most tests (they build files with
it). A test that needs it is marked `torch`: its module imports torch (directly or through a
helper module of tests/ that does), or its function imports it. CI's torch-free run installs
neither torch nor MindSpore and runs `-m "not torch and not mindspore"`; there the modules that
import torch are not collected at all (they could not be imported).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import os
import subprocess
import sys
import textwrap
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


TORCH_INSTALLED = importlib.util.find_spec("torch") is not None


def _imports_torch(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "torch" for alias in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "torch":
            return True
    return False


@functools.cache
def module_needs_torch(path: Path) -> bool:
    """The module imports torch at its top, or imports a helper of tests/ that does."""
    tree = ast.parse(path.read_text())
    top = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    if _imports_torch(ast.Module(body=top, type_ignores=[])):
        return True
    for node in top:
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        for name in names:
            helper = REPO / "tests" / f"{name.removeprefix('tests.').replace('.', '/')}.py"
            if helper.is_file() and helper != path and module_needs_torch(helper):
                return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Without torch, a test module that imports it is left out (it could not be imported)."""
    if not TORCH_INSTALLED and collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        return module_needs_torch(collection_path) or None
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses MindSpore or torch, so CI's numpy-2 run can leave those out.

    Tests reach MindSpore only through the `ms` fixture (never a module-level import), because
    MindSpore 2.10 cannot run beside numpy 2 while the tool itself must.
    """
    for item in items:
        if "ms" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.mindspore)
        if "torch" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.torch)
        function = getattr(item, "function", None)
        if item.path.suffix == ".py" and (module_needs_torch(item.path) or (function and _function_imports_torch(function))):
            item.add_marker(pytest.mark.torch)


def _function_imports_torch(function: object) -> bool:
    try:
        return _imports_torch(ast.parse(textwrap.dedent(inspect.getsource(function))))
    except (OSError, TypeError, SyntaxError):
        return False


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def torch():
    """The real torch, for a test that needs it without importing it itself (e.g. through a model
    factory named by a string): taking this fixture marks the test `torch`."""
    import torch as module

    return module


@pytest.fixture(scope="session")
def ms():
    """The real MindSpore, on CPU. Import it lazily: it takes about a second."""
    import mindspore

    mindspore.set_context(device_target="CPU")
    return mindspore
