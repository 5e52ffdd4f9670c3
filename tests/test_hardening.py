"""Hostile, broken and odd inputs through the real commands a CI step runs (issue 7).

Every file here is generated at test time. Each refused case must give, for every command that
reads it (`inspect`, `convert`, `torch2ms`, `ms2torch`, `verify`): exit code 2, one line on
stderr that names the file and the problem (no traceback, never the catch-all "unexpected"),
no new file anywhere under tmp_path (no output, no temporary or staging file), nothing changed,
and nothing executed (a malicious pickle would create a marker file).

The output-side cases (output = input, a missing folder, a read-only target, a write that fails
half-way) must also leave the previous file at the output path intact.

Not detectable, and so not tested as refusals: a flipped bit inside the raw tensor bytes of a
safetensors file or of a .ckpt without CRC tail (the formats carry no checksum), or of a .pt
(the zip's CRC-32 is not checked by torch.load either). Flips in their structure are refused.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pickle
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from convmigrate.formats import atomic
from tests.conftest import run_cli, run_console_script
from tests.corpus.build import (
    Marker,
    ckpt_value,
    flip,
    pt_record_offset,
    snapshot,
    written,
)

# --------------------------------------------------------------------------- corpus helpers


def state_dict() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    return {
        "enc.conv.weight": torch.randn(8, 4, 3, generator=generator),
        "enc.conv.bias": torch.randn(8, generator=generator),
        "head.weight": torch.randn(3, 8, generator=generator),
        "head.bias": torch.randn(3, generator=generator),
    }


def good_pt(path: Path) -> Path:
    torch.save(state_dict(), path)
    return path


def good_safetensors(path: Path) -> Path:
    from safetensors.torch import save_file

    save_file(state_dict(), str(path))
    return path


def marker_of(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


def good_ckpt_bytes() -> bytes:
    return b"".join(ckpt_value(name, list(t.shape), "Float32", t.numpy().tobytes()) for name, t in state_dict().items())


# --------------------------------------------------------------------------- running the commands


def commands(source: Path, tmp_path: Path, good: Path) -> dict[str, list[object]]:
    """Every command a CI step could run on `source`, writing (if at all) into tmp_path/out."""
    out = tmp_path / "out"
    return {
        "inspect": ["inspect", source],
        "inspect --json": ["inspect", source, "--json"],
        "convert": ["convert", source, "-o", out / "converted.safetensors"],
        "convert ckpt": ["convert", source, "-o", out / "converted.ckpt", "--crc"],
        "torch2ms": ["torch2ms", source, "-o", out / "model.ckpt"],
        "ms2torch": ["ms2torch", source, "-o", out / "model.pt"],
        "verify original": ["verify", source, good],
        "verify converted": ["verify", good, source],
    }


def assert_one_line_error(result, path: Path, problem: str, what: str) -> str:
    """Exit code 2 and one `error:` line on stderr naming `path` and matching `problem`."""
    assert result.exit_code == 2, f"{what}: exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    line = result.stderr.strip()
    assert "\n" not in line, f"{what}: stderr is not one line:\n{result.stderr}"
    assert line.startswith("error: "), f"{what}: {line}"
    assert "Traceback" not in result.stderr and "unexpected" not in line, f"{what}: {line}"
    assert str(path) in line, f"{what}: the message does not name {path}: {line}"
    assert re.search(problem, line), f"{what}: {problem!r} not in: {line}"
    return line


def assert_refused_everywhere(tmp_path: Path, source: Path, problem: str, skip: tuple[str, ...] = ()) -> list[str]:
    """Run every command on `source`; each must refuse it and leave tmp_path exactly as it was."""
    (tmp_path / "out").mkdir(exist_ok=True)
    (tmp_path / "reference").mkdir(exist_ok=True)
    good = tmp_path / "reference" / "good.safetensors"
    if not good.exists():
        good_safetensors(good)
    before = snapshot(tmp_path)
    lines = []
    for what, args in commands(source, tmp_path, good).items():
        if what in skip:
            continue
        lines.append(assert_one_line_error(run_cli(*args), source, problem, what))
        assert snapshot(tmp_path) == before, f"{what}: files changed under {tmp_path}"
    assert not marker_of(tmp_path).exists(), "pickle code ran"
    return lines


# --------------------------------------------------------------------------- the refused inputs


def evil_zip_pt(tmp_path: Path) -> Path:
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(2), "evil": Marker(marker_of(tmp_path))}, path)
    return path


def evil_plain_pickle(tmp_path: Path) -> Path:
    return written(tmp_path / "evil_plain.pt", pickle.dumps({"evil": Marker(marker_of(tmp_path))}, protocol=2))


def evil_legacy_pt(tmp_path: Path) -> Path:
    path = tmp_path / "evil_legacy.pt"
    torch.save({"w": torch.ones(2), "evil": Marker(marker_of(tmp_path))}, path, _use_new_zipfile_serialization=False)
    return path


def pickled_module(tmp_path: Path) -> Path:
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Sequential(torch.nn.Conv1d(4, 8, 3), torch.nn.ReLU()), path)
    return path


def truncated_pt(tmp_path: Path) -> Path:
    data = good_pt(tmp_path / "full.pt").read_bytes()
    (tmp_path / "full.pt").unlink()
    return written(tmp_path / "truncated.pt", data[: len(data) // 2])


def bit_flipped_pt_pickle(tmp_path: Path) -> Path:
    """A flipped bit in the first opcode of data.pkl (PROTO 0x80 -> 0x90)."""
    good = good_pt(tmp_path / "full.pt")
    at = pt_record_offset(good, "data.pkl")
    data = good.read_bytes()
    good.unlink()
    return written(tmp_path / "flipped.pt", flip(data, at, 0x10))


def bit_flipped_pt_directory(tmp_path: Path) -> Path:
    """A flipped bit in the zip's end-of-central-directory signature."""
    good = good_pt(tmp_path / "full.pt")
    data = good.read_bytes()
    good.unlink()
    return written(tmp_path / "flipped_zip.pt", flip(data, data.rindex(b"PK\x05\x06") + 2))










































CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "pickle os.system (plain pickle, not torch.save)": (evil_plain_pickle, r"is a pickle but not a torch\.save file"),
    "truncated .pt": (truncated_pt, r"damaged zip archive: no zip end record at its end \(truncated"),
    "bit-flipped .pt pickle": (bit_flipped_pt_pickle, r"pickle"),
    "bit-flipped .pt zip": (bit_flipped_pt_directory, r"damaged zip archive: no zip end record at its end"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_with_one_line_and_no_output(tmp_path: Path, case: str) -> None:
    build, problem = CASES[case]
    source = build(tmp_path)
    assert_refused_everywhere(tmp_path, source, problem)


def test_encrypted_mindspore_checkpoint(ms, tmp_path: Path) -> None:
    """Each of save_checkpoint's enc_mode values, under a .ckpt name and under another name."""
    params = [{"name": "w", "data": ms.Tensor(np.arange(64, dtype=np.float32))}]
    for mode in ("AES-GCM", "AES-CBC", "SM4-CBC"):
        path = tmp_path / f"enc-{mode}.ckpt"
        ms.save_checkpoint(params, str(path), enc_key=b"0123456789abcdef", enc_mode=mode)
        renamed = written(tmp_path / f"enc-{mode}.bin", path.read_bytes())
        for source in (path, renamed):
            assert_refused_everywhere(tmp_path, source, r"is an encrypted MindSpore checkpoint \(saved with enc_key\).*dec_key")


@pytest.mark.parametrize("build", [evil_zip_pt, evil_legacy_pt], ids=["torch.save zip", "legacy torch.save"])
def test_pickle_code_beside_the_state_dict_is_read_by_the_console_script_and_never_run(tmp_path: Path, build) -> None:
    """The real process: the state dict is read and converted, the shell command never runs."""
    source = build(tmp_path)
    output = tmp_path / "model.ckpt"
    result = run_console_script("torch2ms", source, "-o", output)
    assert result.exit_code == 0, result.stderr
    assert "'evil' (posix.system)" in result.stdout  # the note: left out, built by code never run
    assert output.exists() and not marker_of(tmp_path).exists()


def test_an_unknown_pickle_protocol_is_one_line(tmp_path: Path) -> None:
    source = written(tmp_path / "odd_protocol.pt", b"\x80\x84" + pickle.dumps({"a": 1}, protocol=2)[2:])
    result = run_console_script("inspect", source)
    assert_one_line_error(result, source, r"the pickle is of protocol 132", "inspect")


@pytest.mark.parametrize("trust", [False, True], ids=["inert", "--trust-pickle"])
def test_whole_pickled_module_is_converted(tmp_path: Path, trust: bool) -> None:
    source = pickled_module(tmp_path)
    result = run_cli("torch2ms", source, "-o", tmp_path / "module.ckpt", *(["--trust-pickle"] if trust else []))
    assert result.exit_code == 0, result.stderr
    assert "whole pickled Sequential module" in result.stdout
    described = json.loads(run_cli("inspect", tmp_path / "module.ckpt", "--json").stdout)
    model = torch.load(source, weights_only=False)
    conv = model[0]
    by_name = {t["name"]: t for t in described["tensors"]}
    assert by_name["0.weight"]["shape"] == [8, 4, 1, 3]  # MindSpore's Conv1d layout
    assert by_name["0.weight"]["sha256"] == hashlib.sha256(conv.weight.detach().numpy().tobytes()).hexdigest()
    assert by_name["0.bias"]["sha256"] == hashlib.sha256(conv.bias.detach().numpy().tobytes()).hexdigest()


# --------------------------------------------------------------------------- output-side cases


@pytest.mark.parametrize(
    "command",
    [
        ["convert", "{pt}", "-o", "{pt}", "--format", "pt"],
        ["convert", "{pt}", "-o", "{pt}", "--format", "pt", "--force"],
        ["convert", "{pt}", "-o", "{dotted}", "--format", "pt", "--force"],
        ["torch2ms", "{pt}", "-o", "{pt}", "--force"],
        ["torch2ms", "{pt}", "-o", "{link}", "--force", "--no-verify"],
        ["ms2torch", "{ckpt}", "-o", "{ckpt}", "--force"],
    ],
    ids=["convert", "convert --force", "convert via ..", "torch2ms --force", "torch2ms via a symlink", "ms2torch --force"],
)
def test_output_path_equal_to_the_input(tmp_path: Path, command: list[str]) -> None:
    pt = good_pt(tmp_path / "model.pt")
    ckpt = written(tmp_path / "model.ckpt", good_ckpt_bytes())
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.ckpt").symlink_to(pt)
    names = {"pt": pt, "ckpt": ckpt, "dotted": tmp_path / "sub" / ".." / "model.pt", "link": tmp_path / "link.ckpt"}
    args = [a.format(**names) for a in command]
    before = snapshot(tmp_path)
    result = run_cli(*args)
    target = Path(args[args.index("-o") + 1])
    assert_one_line_error(result, target, r"output is the input file; choose another output path", " ".join(command))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["convert", "torch2ms", "ms2torch"])
def test_output_folder_that_does_not_exist(tmp_path: Path, command: str) -> None:
    source = good_pt(tmp_path / "model.pt") if command != "ms2torch" else written(tmp_path / "model.ckpt", good_ckpt_bytes())
    output = tmp_path / "missing" / ("out.ckpt" if command != "ms2torch" else "out.pt")
    before = snapshot(tmp_path)
    result = run_cli(command, source, "-o", output)
    assert_one_line_error(result, output, rf"folder {re.escape(str(output.parent))} does not exist; create it first", command)
    assert snapshot(tmp_path) == before and not output.parent.exists()


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of `size` at `where` (root with CAP_SYS_ADMIN only); skips otherwise."""
    where.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)], capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mount.stderr.strip() or 'mount failed'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def remount(where: Path, option: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{option}", str(where)], check=True)


@contextlib.contextmanager
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder that refuses writes, holding the previous files `old.ckpt` and `old.pt`.

    chmod stops non-root users only; as root (where these tests usually run) the folder is a
    tmpfs remounted read-only, on which even root gets EROFS.
    """
    if os.geteuid() != 0:
        folder = tmp_path / "readonly"
        folder.mkdir()
        (folder / "old.ckpt").write_bytes(b"previous file")
        (folder / "old.pt").write_bytes(b"previous file")
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    with mounted_tmpfs(tmp_path / "readonly", "1m") as folder:
        (folder / "old.ckpt").write_bytes(b"previous file")
        (folder / "old.pt").write_bytes(b"previous file")
        remount(folder, "ro")
        yield folder


@pytest.mark.parametrize("command", ["convert", "torch2ms", "ms2torch"])
@pytest.mark.parametrize("existing", [False, True], ids=["new file", "replacing a file"])
def test_read_only_target(tmp_path: Path, command: str, existing: bool) -> None:
    source = good_pt(tmp_path / "model.pt") if command != "ms2torch" else written(tmp_path / "model.ckpt", good_ckpt_bytes())
    with read_only_folder(tmp_path) as folder:
        output = folder / (("old" if existing else "new") + (".pt" if command == "ms2torch" else ".ckpt"))
        args = [command, source, "-o", output, "--force"]
        before = snapshot(tmp_path)
        result = run_cli(*args)
        assert_one_line_error(result, output, rf"cannot create a file in {re.escape(str(folder))} \((Read-only file system|Permission denied)\)", command)
        assert snapshot(tmp_path) == before
        assert sorted(p.name for p in folder.iterdir()) == ["old.ckpt", "old.pt"]


def big_pt(path: Path) -> Path:
    """About 1 MiB of tensors, so a small file system fills up in the middle of writing it."""
    generator = torch.Generator().manual_seed(1)
    torch.save({f"layer{i}.conv.weight": torch.randn(64, 32, 16, generator=generator) for i in range(8)}, path)
    return path


@pytest.mark.parametrize("command", ["convert", "torch2ms", "ms2torch"])
def test_disk_full_half_way_keeps_the_previous_file(tmp_path: Path, command: str) -> None:
    """A real full file system (a 512 KiB tmpfs): the previous output survives, nothing else is left."""
    source = big_pt(tmp_path / "big.pt")
    if command == "ms2torch":
        assert run_cli("convert", source, "-o", tmp_path / "big.ckpt").exit_code == 0
        source = tmp_path / "big.ckpt"
    with mounted_tmpfs(tmp_path / "small", "512k") as folder:
        output = folder / ("previous.pt" if command == "ms2torch" else "previous.ckpt")
        output.write_bytes(b"previous file")
        before = snapshot(tmp_path)
        result = run_cli(command, source, "-o", output, "--force")
        assert_one_line_error(result, output, r"write failed \(No space left on device\); nothing was changed", command)
        assert snapshot(tmp_path) == before
        assert [p.name for p in folder.iterdir()] == [output.name]


class FillsUp:
    """A file object that takes `room` bytes, then raises ENOSPC like a full disk."""

    def __init__(self, stream, room: int) -> None:
        self.stream, self.room = stream, room

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if size > self.room:
            self.stream.write(memoryview(data).cast("B")[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= size
        return self.stream.write(data)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)

    def __enter__(self) -> FillsUp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.close()


@pytest.mark.parametrize("command", ["convert", "torch2ms", "ms2torch"])
@pytest.mark.parametrize("room", [0, 100, 300_000])
def test_write_failing_half_way_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, room: int) -> None:
    """The same on any machine: the output stream raises ENOSPC after `room` bytes."""
    source = big_pt(tmp_path / "big.pt")
    if command == "ms2torch":
        assert run_cli("convert", source, "-o", tmp_path / "big.ckpt").exit_code == 0
        source = tmp_path / "big.ckpt"
    real_fdopen = os.fdopen

    def fdopen(fd, *args, **kwargs):
        return FillsUp(real_fdopen(fd, *args, **kwargs), room)

    monkeypatch.setattr(atomic.os, "fdopen", fdopen)
    output = tmp_path / ("previous.pt" if command == "ms2torch" else "previous.ckpt")
    output.write_bytes(b"previous file")
    before = snapshot(tmp_path)
    result = run_cli(command, source, "-o", output, "--force")
    assert_one_line_error(result, output, r"write failed \(No space left on device\); nothing was changed", command)
    assert snapshot(tmp_path) == before
