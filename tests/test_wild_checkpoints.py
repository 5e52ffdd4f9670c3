"""Checkpoints as people have them, read where nothing they name can be imported (issue 13).

The files are made by the real libraries (tests/wild_checkpoints.py: a Lightning Trainer's
checkpoint with omegaconf hyper-parameters, a training script's dict with argparse / pathlib /
NumPy objects, whole models of a class whose module was deleted, a GAN). Each is then read by
`inspect --json`, `torch2ms`, `convert` and `verify`, each in its own process where:

- every module the pickle names that the tool does not load itself (omegaconf, lightning, torch,
  argparse, the deleted module ...) is poisoned in `sys.modules`: a stand-in that fails on any
  attribute and records the touch in a file the test reads, however the reader handles the error.
  (Modules the tool and its libraries use, such as collections, typing, pathlib and numpy, stay:
  poisoning their names would break the tool, not the reader.);
- an audit hook records every process the run would start (`os.system`, `subprocess`, exec).

The run must touch nothing, start nothing, and give exactly `model.state_dict()`: the same
names in the same order, shapes, dtypes and bytes, bit for bit.
"""

from __future__ import annotations

import json
import os
import pickletools
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from tensor_cases import torch_bytes

from convmigrate.formats import open_checkpoint
from tests.wild_checkpoints import BUILDERS, Wild

REPO = Path(__file__).resolve().parents[1]

# The child: load all of convmigrate first (so that its own lazy imports are done), then poison
# what the pickle names, watch for processes, and run the command.
GUARDED_RUN = r'''
import importlib, json, pkgutil, sys, types
names, touched_file, argv = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3:]
import convmigrate
for found in pkgutil.walk_packages(convmigrate.__path__, "convmigrate."):
    # not the --trust-pickle reader (it imports torch), nor __main__ (it runs the CLI)
    if found.name not in ("convmigrate.formats.torch_load", "convmigrate.__main__"):
        importlib.import_module(found.name)
from convmigrate.cli.app import main

def touched(what):
    with open(touched_file, "a") as out:
        out.write(what + "\n")

class Poisoned(types.ModuleType):
    """A module the pickle names that this process never loaded: any attribute is a failure."""
    def __getattr__(self, attribute):
        touched(f"{self.__name__}.{attribute}")
        raise ImportError(f"poisoned: {self.__name__}.{attribute}")

for module in {module for module, _ in names}:
    if module.split(".")[0] not in sys.modules:  # omegaconf, lightning, torch, argparse, a deleted module...
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):
            sys.modules[".".join(parts[:depth])] = Poisoned(".".join(parts[:depth]))

def audit(event, args):
    if event in ("os.system", "subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.fork"):
        touched(f"{event} {args!r}")
sys.addaudithook(audit)
sys.argv = ["convmigrate", *argv]
main()
'''


def named_globals(path: Path) -> set[tuple[str, str]]:
    """Every (module, name) the file's pickle names, read with pickletools (nothing loaded)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            streams = [archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))]
    else:
        streams = [path.read_bytes()]
    found: set[tuple[str, str]] = set()
    for stream in streams:
        strings: list[str] = []
        for opcode, argument, _ in pickletools.genops(stream):
            if opcode.name in ("GLOBAL", "INST"):
                module, name = argument.split(" ", 1)
                found.add((module, name))
            elif isinstance(argument, str):
                strings.append(argument)
            if opcode.name == "STACK_GLOBAL":
                found.add((strings[-2], strings[-1]))
    return found


def guarded(wild: Wild, touched: Path, *args: object) -> subprocess.CompletedProcess:
    names = sorted(named_globals(wild.path) | {(module, "__file__") for module in wild.foreign_modules})
    if wild.foreign_modules:
        assert {module.split(".")[0] for module, _ in names} & set(wild.foreign_modules), "the file names none"
    select = ("--select", wild.select) if wild.select else ()
    return subprocess.run(
        [sys.executable, "-c", GUARDED_RUN, json.dumps(names), str(touched), *map(str, args), *select],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)},
    )


@pytest.fixture(scope="module", params=list(BUILDERS))
def wild(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Wild:
    return BUILDERS[request.param](tmp_path_factory.mktemp(request.param))


def expected_rows(wild: Wild) -> list[tuple[str, list[int], str]]:
    return [(name, list(t.shape), str(t.dtype).removeprefix("torch.")) for name, t in wild.expected.items()]


def test_read_without_importing_or_running_anything(wild: Wild, tmp_path: Path) -> None:
    touched = tmp_path / "touched.txt"
    out = tmp_path / "out"
    out.mkdir()
    runs = {
        "inspect --json": ("inspect", wild.path, "--json"),
        "torch2ms": ("torch2ms", wild.path, "-o", out / "m.ckpt", "-q"),
        "convert": ("convert", wild.path, "-o", out / "c.safetensors", "-q"),
        "verify": ("verify", wild.path, out / "m.ckpt", "-q"),
    }
    results = {what: guarded(wild, touched, *args) for what, args in runs.items()}
    for what, result in results.items():
        assert result.returncode == 0, f"{what}: {result.stderr}"
    assert not touched.exists(), f"the reader reached what the file names: {touched.read_text()}"

    # inspect --json: exactly model.state_dict(), bit for bit.
    described = json.loads(results["inspect --json"].stdout)
    assert [(t["name"], t["shape"], t["dtype"]) for t in described["tensors"]] == expected_rows(wild)
    # convert: the written tensors are the state dict's bytes (safetensors keeps its own order).
    with open_checkpoint(out / "c.safetensors") as converted:
        assert sorted(e.name for e in converted.tensors()) == sorted(wild.expected)
        for entry in converted.tensors():
            assert entry.raw_bytes() == torch_bytes(wild.expected[entry.name]), entry.name
    # torch2ms wrote every tensor MindSpore has (verified before it took its name); verify proved it again.
    with open_checkpoint(out / "m.ckpt") as migrated:
        kept = [name for name in wild.expected if not name.endswith("num_batches_tracked")]  # MindSpore has none
        assert len(migrated.tensors()) == len(kept)


def test_gan_without_select_notes_the_discriminator_and_with_it_reads_it(tmp_path: Path) -> None:
    from tests.wild_checkpoints import gan_checkpoint

    wild = gan_checkpoint(tmp_path)
    with open_checkpoint(wild.path) as automatic:
        assert [e.name for e in automatic.tensors()] == ["0.weight", "0.bias"]  # the generator's
        assert any("other state dicts" in note and "discriminator" in note for note in automatic.notes)
    with open_checkpoint(wild.path, select="discriminator") as chosen:
        assert [e.name for e in chosen.tensors()] == list(wild.expected)
        for entry in chosen.tensors():
            assert entry.raw_bytes() == torch_bytes(wild.expected[entry.name])


def test_select_a_key_that_is_not_there_names_the_keys_that_are(tmp_path: Path, cli) -> None:
    from tests.wild_checkpoints import gan_checkpoint

    wild = gan_checkpoint(tmp_path)
    for command in (["inspect"], ["convert", "-o", tmp_path / "x.safetensors"], ["torch2ms", "-o", tmp_path / "x.ckpt"],
                    ["verify", "ORIGINAL", tmp_path / "x.ckpt"]):
        args = [wild.path if a == "ORIGINAL" else a for a in command]
        if command[0] != "verify":
            args.insert(1, wild.path)
        result = cli(*args, "--select", "critic")
        assert result.exit_code == 2, result.stdout
        assert result.stderr.strip() == (
            f"error: --select critic: {wild.path}: the file's top level has no key 'critic'; its keys are: "
            "'generator', 'discriminator', 'optim_g', 'optim_d', 'epoch'"
        ), command
    assert not list(tmp_path.glob("x.*"))


def test_select_walks_into_a_whole_model(tmp_path: Path) -> None:
    """--select model.1 on {"model": torch.save'd Sequential}: its submodule 1, named as its own."""
    model = torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3), torch.nn.Sequential(torch.nn.Conv1d(4, 4, 1)))
    torch.save({"model": model, "epoch": 1}, tmp_path / "whole.pt")
    with open_checkpoint(tmp_path / "whole.pt", select="model.1") as checkpoint:
        assert [e.name for e in checkpoint.tensors()] == list(model[1].state_dict())


def test_a_state_dict_deeper_than_the_search_is_named_with_select(tmp_path: Path, cli) -> None:
    """The automatic search looks MAX_WRAPPER_DEPTH (3) keys down; the message says how to reach one further down."""
    model = torch.nn.Conv1d(2, 4, 3)
    torch.save({"run": {"stage": {"ema": {"model": model.state_dict()}}}, "epoch": 3}, tmp_path / "deep.pt")
    refused = cli("inspect", tmp_path / "deep.pt")
    assert refused.exit_code == 2
    assert refused.stderr.strip() == (
        f"error: {tmp_path / 'deep.pt'}: holds no tensors within 3 keys (keys: 'run', 'epoch'); "
        "a state dict further down is read with --select KEY.KEY..., or it is not a model checkpoint")
    chosen = cli("inspect", tmp_path / "deep.pt", "--select", "run.stage.ema.model", "--json")
    assert chosen.exit_code == 0, chosen.stderr
    assert [t["name"] for t in json.loads(chosen.stdout)["tensors"]] == ["weight", "bias"]
