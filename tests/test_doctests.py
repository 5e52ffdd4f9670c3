"""Every docstring example of the library runs (issue 14): examples are documentation that
cannot go stale. Each module's examples run in a fresh folder holding a copy of fixtures/, so
that an example may read fixtures/tiny_tcn.pt and write files beside it.

An example marked `# doctest: +SKIP` is one that cannot run by itself (it needs a file or an
object the docstring does not build); prefer an example that builds what it needs.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import shutil
from pathlib import Path

import pytest

import convmigrate

REPO = Path(__file__).resolve().parents[1]
MODULES = ["convmigrate"] + [
    m.name for m in pkgutil.walk_packages(convmigrate.__path__, "convmigrate.")
    if not m.name.endswith("__main__")  # running it would run the CLI
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as missing:  # torch's fallback readers in an environment without torch
        pytest.skip(f"{name} needs {missing.name}")
    tests = [t for t in doctest.DocTestFinder().find(module, name) if t.examples]
    if not tests:
        return
    shutil.copytree(REPO / "fixtures", tmp_path / "fixtures")
    monkeypatch.chdir(tmp_path)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    if runner.failures and "No module named 'torch'" in "".join(report):
        pytest.skip(f"{name}: an example needs torch, which is not installed here")
    assert runner.failures == 0, "".join(report)
