"""What users read: --quiet, --json, --report, counts, whole names in logs, and names from a file
shown as text (issue 11 cases 5, 6, 8; issue 12 cases 9, 10, 11).

Every test runs the real CLI on files the real frameworks (or a hand-written safetensors header,
for names no framework would write) produced, and checks what is printed as well as what is
written.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import convmigrate.migrate as migrate
from tests.nets import TorchNet, mindspore_net, randomize_mindspore, randomize_torch

REPO = Path(__file__).resolve().parents[1]


def safetensors_with_names(path: Path, names: list[str]) -> Path:
    """A safetensors file whose tensors (2, 2, 3) float32 carry exactly these names.

    Written by hand (the safetensors library refuses some of these names, a hostile file does not):
    the header is JSON, so a lone surrogate is written as the escape \\ud800, as a file would.
    """
    block = np.arange(12, dtype=np.float32).reshape(2, 2, 3).tobytes()
    header = {name: {"dtype": "F32", "shape": [2, 2, 3], "data_offsets": [i * len(block), (i + 1) * len(block)]}
              for i, name in enumerate(names)}
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + block * len(names))
    return path


def pt_with_names(path: Path, names: list[str]) -> Path:
    """A torch.save file whose tensors (2, 2, 3) float32 carry exactly these names: a pickle
    carries any str, a lone surrogate included (safetensors headers cannot: see below)."""
    torch.save({name: torch.arange(12, dtype=torch.float32).reshape(2, 2, 3) for name in names}, path)
    return path


def run_logged(*args: object, columns: int = 160) -> subprocess.CompletedProcess:
    """The console script with stdout and stderr piped, as in a CI log of `columns` columns."""
    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(REPO)}
    env.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run([sys.executable, "-m", "convmigrate", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=REPO)


# -- issue 11, case 5: --quiet ----------------------------------------------------------------------------

def test_quiet_prints_nothing_on_success_on_every_command(ms, cli, tmp_path):
    torch.save(randomize_torch(TorchNet()).state_dict(), tmp_path / "net.pt")
    ms.save_checkpoint(randomize_mindspore(mindspore_net()), str(tmp_path / "net_ms.ckpt"))
    runs = [
        ("torch2ms", tmp_path / "net.pt", "-o", tmp_path / "a.ckpt"),
        ("ms2torch", tmp_path / "net_ms.ckpt", "-o", tmp_path / "b.pt"),
        ("verify", tmp_path / "net.pt", tmp_path / "a.ckpt"),
        ("convert", tmp_path / "net.pt", "-o", tmp_path / "c.safetensors"),
        ("inspect", tmp_path / "net.pt"),
        ("layers", "torch.nn.Conv1d(4, 8, 3)"),
    ]
    for args in runs:
        result = cli(*args, "-q")
        assert (result.exit_code, result.stdout, result.stderr) == (0, "", ""), args


def swapped_weights(first: str, second: str):
    """A migration bug for the test to catch: two same-shape conv weights written under each other's name."""
    real = migrate.target_entries

    def target_entries(plan, checkpoint):
        entries = real(plan, checkpoint)
        names = [e.name for e in entries]
        a, b = names.index(first), names.index(second)
        entries[a], entries[b] = entries[b].renamed(first), entries[a].renamed(second)
        return entries

    return target_entries


def test_quiet_failure_is_the_error_and_the_failing_names(ms, cli, tmp_path, monkeypatch):
    """ms2torch -q used to print the whole verification table on a failure."""
    ms_net = randomize_mindspore(mindspore_net())
    ms.save_checkpoint(ms_net, str(tmp_path / "net.ckpt"))
    loud = cli("ms2torch", tmp_path / "net.ckpt", "-o", tmp_path / "ok.pt")
    assert loud.exit_code == 0 and "bit-identical" in loud.stdout  # the tables, without -q
    monkeypatch.setattr(migrate, "target_entries", swapped_weights("bn.weight", "bn.bias"))
    result = cli("ms2torch", tmp_path / "net.ckpt", "-o", tmp_path / "bad.pt", "-q")
    assert result.exit_code == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: verification failed for bn.weight (layer bn), bn.bias (layer bn)")
    assert lines[1:] == ["  bn.weight (layer bn)", "  bn.bias (layer bn)"]
    assert not (tmp_path / "bad.pt").exists()


def test_strict_quiet_failure_does_not_print_the_plan(cli, tmp_path):
    """--strict -q used to print the whole plan; the guess that fails it is named, nothing else."""
    torch.save(randomize_torch(TorchNet()).state_dict(), tmp_path / "net.pt")
    result = cli("torch2ms", tmp_path / "net.pt", "--strict", "-q")
    assert result.exit_code == 1 and result.stdout == ""
    error, *names = result.stderr.splitlines()
    assert error.startswith("error: ") and "fail this migration" in error and "nothing was written" in error
    assert names and all(name.startswith("  ") for name in names) and "  emb.weight" in names
    assert not (tmp_path / "net.ckpt").exists()


# -- issue 11, case 6: counts -----------------------------------------------------------------------------

def test_a_short_plan_has_no_negative_count(cli, tmp_path):
    torch.save(randomize_torch(TorchNet()).state_dict(), tmp_path / "net.pt")
    result = cli("torch2ms", tmp_path / "net.pt")
    assert result.exit_code == 0, result.stderr
    assert " -" not in "".join(line for line in result.stdout.splitlines() if "more" in line)
    assert "... and" not in result.stdout  # fewer than 40 changes: every one is shown
    assert "conv_same.weight" in result.stdout and "reshape" in result.stdout


def test_a_long_plan_says_how_many_more(cli, tmp_path):
    torch.save({f"blocks.{i}.conv.weight": torch.zeros(2, 2, 3) for i in range(45)}, tmp_path / "m.pt")
    result = cli("torch2ms", tmp_path / "m.pt", "--no-verify")
    assert result.exit_code == 0, result.stderr
    assert "... and 5 more changed tensors" in result.stdout


# -- issue 11, case 8: whole names in a 160-column log ----------------------------------------------------

def test_long_names_stay_whole_in_a_160_column_log(tmp_path):
    names = [f"encoder.{'very_long_block_name_' * 6}{i:03d}.conv.weight" for i in range(3)]
    assert all(len(n) > 140 for n in names)
    torch.save({name: torch.randn(2, 2, 3) for name in names}, tmp_path / "long.pt")
    result = run_logged("torch2ms", tmp_path / "long.pt")
    assert result.returncode == 0, result.stderr
    for name in names:
        plan_row = next(line for line in result.stdout.splitlines() if line.lstrip().startswith(name))
        assert plan_row.count(name) == 2 and "reshape" in plan_row  # source and target, whole, on one line
        assert any(line.lstrip().startswith(name.removesuffix(".weight") + " ") for line in result.stdout.splitlines())


# -- issue 12, cases 9-11: names from a file are text ------------------------------------------------------

NASTY = {
    "[/]": "[/]",  # was: "unexpected MarkupError" after the output was written, exit 2
    "[bold red]w[/bold red]": "[bold red]w[/bold red]",  # was shown as "w"
    "\x1b[31mred\x1b[0m.weight": "\\x1b[31mred\\x1b[0m.weight",  # ESC reached the terminal raw
    "x\x1b]0;pwned\x07": "x\\x1b]0;pwned\\x07",  # retitles the terminal
    "conv.weight\nerror: forged row": "conv.weight\\nerror: forged row",  # forged an error: row
    "conv\ud800.weight": "conv\\ud800.weight",  # was a two-line UnicodeEncodeError
    "rtl\u202egnp.exe": "rtl\\u202egnp.exe",  # a bidi override reorders what is shown
}


@pytest.mark.parametrize("name", NASTY, ids=lambda n: ascii(n)[1:-1])
@pytest.mark.parametrize("command", ["inspect", "convert", "torch2ms"])
def test_names_from_a_file_are_shown_escaped_never_as_markup(tmp_path, name, command):
    source = pt_with_names(tmp_path / "nasty.pt", [name, "plain.weight"])
    args = {"inspect": ("inspect", source),
            "convert": ("convert", source, "-o", tmp_path / "out.safetensors"),
            "torch2ms": ("torch2ms", source, "--dry-run")}[command]
    result = run_logged(*args)
    if command == "convert" and "\ud800" in name:  # safetensors holds only Unicode names: one escaped line
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert "conv\\ud800.weight" in result.stderr and "not valid Unicode" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    printed = result.stdout
    assert "\x1b" not in printed and "\x07" not in printed and "\u202e" not in printed
    assert not any(line.startswith("error:") for line in printed.splitlines())
    if command != "convert":  # convert prints one summary line, no names
        assert NASTY[name] in printed, printed


def test_json_keeps_the_name_exact_and_the_text_ascii(cli, tmp_path):
    names = list(NASTY)
    source = pt_with_names(tmp_path / "nasty.pt", names)
    result = cli("inspect", source, "--json")
    assert result.exit_code == 0
    assert result.stdout.isascii() and "\x1b" not in result.stdout
    assert [t["name"] for t in json.loads(result.stdout)["tensors"]] == names


def test_a_lone_surrogate_in_a_safetensors_header_is_one_escaped_line(tmp_path):
    """The safetensors library refuses a header string that is not Unicode; so do we, in one line."""
    source = safetensors_with_names(tmp_path / "nasty.safetensors", ["conv\ud800.weight", "plain.weight"])
    result = run_logged("inspect", source)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "lone UTF-16 surrogate" in result.stderr


def test_an_error_naming_a_nasty_tensor_is_one_escaped_line(tmp_path):
    """A refusal that names the tensor: the name is escaped inside the one error line."""
    source = safetensors_with_names(tmp_path / "nasty.safetensors", ["a\nerror: forged\x1b[2J"])
    data = bytearray(source.read_bytes())
    source.write_bytes(data[:-4])  # the tensor's bytes run past the end of the file
    result = run_logged("inspect", source)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "\x1b" not in result.stderr


# -- every command: --json is the --report object ----------------------------------------------------------

def test_json_and_report_are_the_same_object_on_every_command(cli, tmp_path):
    torch.save(randomize_torch(TorchNet()).state_dict(), tmp_path / "net.pt")
    assert cli("torch2ms", tmp_path / "net.pt", "-o", tmp_path / "net.ckpt", "-q").exit_code == 0
    runs = {
        "torch2ms": ("torch2ms", tmp_path / "net.pt", "-o", tmp_path / "a.ckpt", "--force"),
        "ms2torch": ("ms2torch", tmp_path / "net.ckpt", "-o", tmp_path / "b.pt"),
        "verify": ("verify", tmp_path / "net.pt", tmp_path / "net.ckpt"),
        "convert": ("convert", tmp_path / "net.pt", "-o", tmp_path / "c.safetensors", "--force"),
        "inspect": ("inspect", tmp_path / "net.pt"),
        "layers": ("layers", "torch.nn.Conv1d(4, 8, 3)"),
    }
    for command, args in runs.items():
        printed = cli(*args, "--json", "--report", tmp_path / f"{command}.json")
        assert printed.exit_code == 0, (command, printed.stderr)
        document = json.loads(printed.stdout)  # stdout holds the JSON object and nothing else
        assert json.loads((tmp_path / f"{command}.json").read_text()) == document, command
        if command != "layers":  # the layers report is the layers JSON that verify --layers reads
            assert document["command"] == command and document["ok"] is True and document["exit_code"] == 0


# -- the help -----------------------------------------------------------------------------------------------

def test_the_command_list_is_one_line_per_command_and_every_command_has_examples():
    """The top-level help showed verify's docstring line break in the command list."""
    listing = run_logged("--help", columns=120).stdout
    panel = listing.split("Commands")[1].splitlines()[1:]
    rows = [line for line in panel if line.startswith("│")]
    commands = ["inspect", "convert", "torch2ms", "ms2torch", "verify", "layers", "compare"]
    assert [row.split()[1] for row in rows] == commands
    for command in commands:
        text = run_logged(command, "--help", columns=200).stdout
        assert f"  convmigrate {command} " in text.split("Examples:")[1], command
        assert "--json" in text and "--report" in text and "--quiet" in text, command


def test_every_choice_lists_its_values():
    assert "[ckpt|safetensors]" in run_logged("torch2ms", "--help", columns=200).stdout.replace("<", "[").replace(">", "]")
    assert "[pt|safetensors]" in run_logged("ms2torch", "--help", columns=200).stdout.replace("<", "[").replace(">", "]")
    convert_help = run_logged("convert", "--help", columns=200).stdout.replace("<", "[").replace(">", "]")
    assert "[safetensors|ms-safetensors|pt|ckpt]" in convert_help
    assert "[nn|mint]" in run_logged("torch2ms", "--help", columns=200).stdout.replace("<", "[").replace(">", "]")
    assert "[ms|torch]" in run_logged("layers", "--help", columns=200).stdout.replace("<", "[").replace(">", "]")
