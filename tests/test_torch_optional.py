"""convmigrate without torch (issue 13): `pip install convmigrate` reads and writes every format.

Every test here runs in a process where torch cannot be imported (`sys.modules["torch"] = None`
before anything else, as if it were not installed; in CI's torch-free run it is not installed at
all). The torch.save files are the fixtures real torch wrote (fixtures/make_fixtures.py): a zip
state dict, the same in the legacy format, and a whole pickled model whose class (`__main__`)
no reader has. What needs torch says which extra to install, in one line, exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures"
WITHOUT_TORCH = "import sys; sys.modules['torch'] = None\n"  # `import torch` now fails as if not installed


def convmigrate_without_torch(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`convmigrate ARGS` in a process where torch cannot be imported."""
    code = WITHOUT_TORCH + (
        "from convmigrate.cli.app import main\n"
        "sys.argv = ['convmigrate', *sys.argv[1:]]\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    assert 'torch' not in sys.modules or sys.modules['torch'] is None, 'torch was imported'\n"
    )
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO, env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)})


def described(path: Path) -> dict:
    result = convmigrate_without_torch("inspect", path, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def tensors_of(description: dict) -> dict[str, tuple]:
    return {t["name"]: (tuple(t["shape"]), t["dtype"], t["sha256"]) for t in description["tensors"]}


def test_every_torch_save_fixture_reads_the_same_without_torch() -> None:
    zipped = tensors_of(described(FIXTURES / "tiny_tcn.pt"))
    legacy = described(FIXTURES / "tiny_tcn_legacy.pt")
    assert tensors_of(legacy) == zipped and list(tensors_of(legacy)) == list(zipped)
    assert any("legacy (pre-1.6)" in note for note in legacy["notes"])
    whole = described(FIXTURES / "tiny_vocoder_whole.pt")
    assert tensors_of(whole) == tensors_of(described(FIXTURES / "tiny_vocoder_whole.state.pt"))
    assert list(tensors_of(whole)) == ["pre.bias", "pre.weight_g", "pre.weight_v", "up.weight", "up.bias",
                                       "post.weight", "post.bias"]
    assert any("whole pickled TinyVocoder module" in note for note in whole["notes"])


@pytest.mark.parametrize("fixture", ["tiny_tcn.pt", "tiny_tcn_legacy.pt", "tiny_vocoder_whole.pt"])
def test_the_main_job_without_torch(tmp_path: Path, fixture: str) -> None:
    """torch2ms (verified), convert to every format, ms2torch back, verify: all without torch."""
    source = FIXTURES / fixture
    steps = [
        ("torch2ms", source, "-o", tmp_path / "m.ckpt", "-q"),
        ("convert", source, "-o", tmp_path / "c.safetensors", "-q"),
        ("convert", tmp_path / "c.safetensors", "-o", tmp_path / "c.pt", "-q"),
        ("ms2torch", tmp_path / "m.ckpt", "-o", tmp_path / "back.pt", "-q"),
        ("verify", source, tmp_path / "m.ckpt", "-q"),
    ]
    for step in steps:
        result = convmigrate_without_torch(*step)
        assert result.returncode == 0, f"{step}: {result.stderr}"
    original = tensors_of(described(source))
    assert tensors_of(described(tmp_path / "c.pt")) == original
    assert tensors_of(described(tmp_path / "back.pt")) == original  # the round trip, bit for bit


@pytest.mark.parametrize("args, feature", [
    (("inspect", FIXTURES / "tiny_tcn.pt", "--trust-pickle"), "--trust-pickle"),
    (("torch2ms", FIXTURES / "tiny_tcn.pt", "--model", "tests.layer_models:small_encoder", "--dry-run"), "--model"),
    (("layers", "tests.layer_models:small_encoder"), "PyTorch model factory"),
    (("ms2torch", FIXTURES / "tiny_tcn.pt", "--model", "tests.layer_models:small_encoder", "--dry-run"), "--model"),
    (("compare", FIXTURES / "tiny_tcn_legacy.pt", "--torch-model", "tests.layer_models:small_encoder",
      "--ms-model", "tests.layer_models:small_encoder", "--input", "1,4,50"), "compare"),
])
def test_what_needs_torch_names_the_extra(args: tuple, feature: str) -> None:
    result = convmigrate_without_torch(*args)
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, result.stderr
    assert line.startswith("error: ") and feature in line, line
    assert "needs torch, which is not installed: pip install 'convmigrate[torch]'" in line, line


def test_layers_json_without_torch(tmp_path: Path) -> None:
    """A layers JSON is read, translated and used by verify / torch2ms --layers without torch
    (it once reached torch's meta device: "unexpected ModuleNotFoundError")."""
    made = convmigrate_without_torch("layers", "torch.nn.Conv1d(2, 8, 3, padding=1)", "--report", tmp_path / "l.json")
    assert made.returncode == 0, made.stderr
    document = json.loads((tmp_path / "l.json").read_text())
    document["layers"][0]["name"] = "stem"  # tiny_tcn.pt's first conv has these hyperparameters
    (tmp_path / "stem.layers.json").write_text(json.dumps(document))
    layers = tmp_path / "stem.layers.json"
    steps = [
        ("layers", layers),
        ("torch2ms", FIXTURES / "tiny_tcn.pt", "-o", tmp_path / "m.ckpt", "--layers", layers),
        ("verify", FIXTURES / "tiny_tcn_legacy.pt", tmp_path / "m.ckpt", "--layers", layers, "--report", tmp_path / "r.json"),
    ]
    results = [convmigrate_without_torch(*step) for step in steps]
    for step, result in zip(steps, results):
        assert result.returncode == 0, f"{step}: {result.stderr}"
    translated = results[0].stdout.splitlines()
    assert translated[0].startswith("stem  Conv1d  torch -> mindspore  exact, verified")
    assert translated[1] == "mindspore.nn.Conv1d(2, 8, 3, pad_mode='pad', padding=1, has_bias=True)"
    checked = {layer["name"]: layer for layer in json.loads((tmp_path / "r.json").read_text())["verification"]["layers"]}
    assert checked["stem"]["passed"]
