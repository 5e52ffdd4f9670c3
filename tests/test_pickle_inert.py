"""Code in a pickle is never run, and the state dict beside it is still read (issue 13).

Each case of `tests/corpus/cases_pickle.INERT` is the corpus's good model as a torch.save zip
with an attack in stand-in position: `os.system`, `exec`, `eval`, `subprocess`, a
`bytearray(10**12)`, `pickle.loads` of a second pickle ..., beside the state dict, among its
tensors, or around it (an object of an unknown class holding both). Every attack would create a
marker file if anything ran it.

The commands that read it in each role (inspected, converted, migrated, verified, as a
reference; each in its own capped, timed process, as the corpus runs them) must succeed exactly
as on the clean file (same exit code, byte-identical outputs), never create the marker, and say in
a note what they left out. (The reader is one function for every command: the corpus runs the
refusals through all twelve.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.corpus import COMMANDS as ALL_COMMANDS
from tests.corpus import MAX_SECONDS
from tests.corpus.build import snapshot
from tests.corpus.cases_pickle import INERT
from tests.test_corpus import good_files, run_capped

ROLES = ("inspect", "convert -> pt", "torch2ms", "verify (as original)", "ms2torch --reference")
COMMANDS = {what: ALL_COMMANDS[what] for what in ROLES}


def outputs_of(folder: Path) -> dict[str, str]:
    return snapshot(folder) if folder.exists() else {}


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], list[dict], dict[str, str]]:
    """The good model's files, every command's result on the clean .pt, and what they wrote."""
    folder = tmp_path_factory.mktemp("clean")
    files = good_files(folder / "good")
    (folder / "out").mkdir()
    names = {"src": str(files["good_pt"]), "out": str(folder / "out"), **{k: str(v) for k, v in files.items()}}
    results = run_capped([[arg.format(**names) for arg in args] for args in COMMANDS.values()], MAX_SECONDS + 5)
    return files, results, outputs_of(folder / "out")


@pytest.mark.parametrize("title", list(INERT))
def test_code_in_stand_in_position_never_runs_and_the_state_dict_is_read(tmp_path: Path, title: str, clean) -> None:
    files, clean_results, clean_outputs = clean
    marker = tmp_path / "pwned"
    source = INERT[title](tmp_path, marker)
    (tmp_path / "out").mkdir()
    names = {"src": str(source), "out": str(tmp_path / "out"), **{k: str(v) for k, v in files.items()}}
    results = run_capped([[arg.format(**names) for arg in args] for args in COMMANDS.values()], MAX_SECONDS + 5)
    assert not marker.exists(), f"{title}: the pickle's code ran"
    for what, result, expected in zip(COMMANDS, results, clean_results):
        shown = f"{title} / {what}: exit {result['exit_code']}\nstdout: {result['stdout']}\nstderr: {result['stderr']}"
        assert not result["timed_out"] and result["exit_code"] == expected["exit_code"] == 0, shown
        assert result["stderr"] == "", shown
    assert outputs_of(tmp_path / "out") == clean_outputs, f"{title}: the outputs differ from the clean file's"
    inspected = results[list(COMMANDS).index("inspect")]["stdout"]
    assert "note:" in inspected and ("'evil'" in inspected or "'hook'" in inspected), inspected
