"""Odd but valid checkpoints that must simply work through the CLI (issue 7).

Empty checkpoints of every format, zero-size tensors, scalars, names with unicode and many
dots, 10 000 small tensors, and one tensor above MindSpore's 512 MiB split size. Each goes
through `convert` into every format and through `torch2ms` then `ms2torch`, and must come back
with the same names, shapes, dtypes and SHA-256 of its bytes (as `inspect --json` reports them).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from convmigrate.formats.ckpt import read_ckpt
from convmigrate.vocab import MINDSPORE_SPLIT_BYTES
from tests.conftest import run_cli

FORMATS = {"pt": ".pt", "safetensors": ".safetensors", "ckpt": ".ckpt", "ms-safetensors": ".safetensors"}


def described(path: Path) -> dict[str, tuple]:
    """name -> (shape, dtype, sha256) of every tensor, from `inspect --json`."""
    result = run_cli("inspect", path, "--json")
    assert result.exit_code == 0, result.stderr
    return {t["name"]: (tuple(t["shape"]), t["dtype"], t["sha256"]) for t in json.loads(result.stdout)["tensors"]}


def ok(*args: object) -> str:
    result = run_cli(*args)
    assert result.exit_code == 0, f"{args}: exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    assert result.stderr == "", result.stderr
    return result.stdout


def assert_survives_every_route(tmp_path: Path, source: Path, expected: dict[str, tuple]) -> None:
    """convert into every format and back; torch2ms then ms2torch: the same tensors each time."""
    assert described(source) == expected
    for fmt, suffix in FORMATS.items():
        converted = tmp_path / f"converted-{fmt}{suffix}"
        ok("convert", source, "-o", converted, "--format", fmt, "--quiet")
        assert described(converted) == expected, fmt
        back = tmp_path / f"back-{fmt}.safetensors"
        ok("convert", converted, "-o", back, "--quiet")
        assert described(back) == expected, fmt
    for target in ("ckpt", "safetensors"):
        ms_file = tmp_path / f"migrated-{target}{FORMATS[target]}"
        ok("torch2ms", source, "-o", ms_file, "--format", target, "--quiet")
        torch_file = tmp_path / f"returned-{target}.pt"
        ok("ms2torch", ms_file, "-o", torch_file, "--quiet")
        assert described(torch_file) == expected, target


def expected_of(tensors: dict[str, torch.Tensor]) -> dict[str, tuple]:
    return {
        name: (tuple(t.shape), str(t.dtype).removeprefix("torch."), hashlib.sha256(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest())
        for name, t in tensors.items()
    }


# --------------------------------------------------------------------------- empty checkpoints


def empty_pt(path: Path) -> None:
    torch.save({}, path)


def empty_safetensors(path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({}, str(path))


def empty_ckpt_with_crc(path: Path) -> None:
    path.write_bytes(b"crc_num" + bytes(10))  # what save_checkpoint([], crc_check=True) writes


@pytest.mark.parametrize(("make", "name"), [(empty_pt, "empty.pt"), (empty_safetensors, "empty.safetensors"), (empty_ckpt_with_crc, "empty.ckpt")])
def test_empty_checkpoints(tmp_path: Path, make, name: str) -> None:
    source = tmp_path / name
    make(source)
    assert_survives_every_route(tmp_path, source, {})


def test_empty_ckpt_we_write_is_not_an_empty_file(tmp_path: Path) -> None:
    """A 0-byte file is refused as damaged, so an empty .ckpt is written as the CRC-only file."""
    empty_pt(tmp_path / "empty.pt")
    ok("convert", tmp_path / "empty.pt", "-o", tmp_path / "empty.ckpt")
    assert (tmp_path / "empty.ckpt").read_bytes() == b"crc_num" + bytes(10)


# --------------------------------------------------------------------------- odd tensors and names


def odd_tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    return {
        "encoder.layers.0.卷积.conv.weight": torch.randn(4, 2, 3, generator=generator),
        "encoder.layers.0.卷积.conv.bias": torch.randn(4, generator=generator),
        "décodeur.ünïcödé.ß.ﬁ.Ω.scale": torch.randn(3, generator=generator),
        "emoji.🙂.zero_width\u200b.table": torch.randn(2, 2, generator=generator).to(torch.bfloat16),
        "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.0.1.2.3.4.5.6.7.8.9.deep": torch.arange(6, dtype=torch.int16),
        "dots..double...triple.": torch.ones(1, dtype=torch.float64),
        ".leading.dot": torch.tensor([True, False]),
        "zero.rows": torch.zeros(0, 3),
        "zero.cols.int64": torch.zeros(3, 0, dtype=torch.int64),
        "zero.flat.f16": torch.zeros(0, dtype=torch.float16),
        "zero.conv.weight": torch.zeros(0, 2, 3),
        "scalar.f32": torch.tensor(2.5),
        "scalar.f64": torch.tensor(-1e300, dtype=torch.float64),
        "scalar.i64": torch.tensor(-(2**62), dtype=torch.int64),
        "scalar.bool": torch.tensor(True),
        "scalar.u8": torch.tensor(255, dtype=torch.uint8),
        "scalar.bf16": torch.tensor(0.1, dtype=torch.bfloat16),
    }


def test_zero_size_tensors_scalars_and_odd_names(tmp_path: Path) -> None:
    tensors = odd_tensors()
    torch.save(tensors, tmp_path / "odd.pt")
    assert_survives_every_route(tmp_path, tmp_path / "odd.pt", expected_of(tensors))


def test_ten_thousand_small_tensors(tmp_path: Path) -> None:
    """Correctness only; the time this takes belongs to the benchmark."""
    generator = torch.Generator().manual_seed(9)
    tensors = {f"blocks.{i // 100}.layer{i % 100}.{'weight' if i % 2 else 'scale'}": torch.randn(3, generator=generator) for i in range(10_000)}
    torch.save(tensors, tmp_path / "many.pt")
    expected = expected_of(tensors)
    ok("torch2ms", tmp_path / "many.pt", "-o", tmp_path / "many.ckpt", "--quiet")
    ok("ms2torch", tmp_path / "many.ckpt", "-o", tmp_path / "back.pt", "--quiet")
    assert described(tmp_path / "back.pt") == expected
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert list(back) == list(tensors)  # the order survives too


@pytest.mark.parametrize("name", ["model.safetensors", "model.ckpt", "model"])
def test_a_torch_file_under_another_name_is_read_by_content(tmp_path: Path, name: str) -> None:
    """torch.load itself reads any path named *.safetensors as safetensors."""
    tensors = odd_tensors()
    torch.save(tensors, tmp_path / name)
    assert described(tmp_path / name) == expected_of(tensors)
    ok("ms2torch", tmp_path / name, "-o", tmp_path / "out.pt", "--quiet")
    assert described(tmp_path / "out.pt") == expected_of(tensors)


@pytest.mark.parametrize("header_length", [128, 384, 640])
def test_safetensors_whose_header_length_starts_with_the_pickle_byte(tmp_path: Path, header_length: int) -> None:
    """A header of 128 + 256k bytes makes the file start with 0x80, pickle's protocol opcode."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    source = tmp_path / "w.safetensors"
    source.write_bytes(struct.pack("<Q", header_length) + header.ljust(header_length) + np.float32([1, 2]).tobytes())
    assert source.read_bytes()[0] == 0x80
    assert described(source) == {"w": ((2,), "float32", hashlib.sha256(np.float32([1, 2]).tobytes()).hexdigest())}


# --------------------------------------------------------------------------- above the split size


def test_tensor_above_mindspore_split_size(tmp_path: Path) -> None:
    """One float32 tensor of 512 MiB + 4 KiB: the .ckpt holds it as two same-tag values.

    Written straight to disk (a sparse file with marked bytes at the start, both sides of the
    split and the end), so the test needs about 2 GB of disk and little memory.
    """
    numel = MINDSPORE_SPLIT_BYTES // 4 + 1024
    header = json.dumps({"big": {"dtype": "F32", "shape": [numel], "data_offsets": [0, numel * 4]}}).encode()
    header += b" " * (-(8 + len(header)) % 8)
    source = tmp_path / "big.safetensors"
    marks = {0: 1.5, MINDSPORE_SPLIT_BYTES // 4 - 1: -2.0, MINDSPORE_SPLIT_BYTES // 4: 3.25, numel - 1: 7.0}
    with open(source, "wb") as stream:
        stream.write(struct.pack("<Q", len(header)) + header)
        start = stream.tell()
        stream.truncate(start + numel * 4)
        for index, value in marks.items():
            stream.seek(start + index * 4)
            stream.write(np.float32(value).tobytes())
    expected = described(source)
    try:
        ok("torch2ms", source, "-o", tmp_path / "big.ckpt", "--quiet")
        with read_ckpt(tmp_path / "big.ckpt") as checkpoint:
            (entry,) = checkpoint.tensors()
            assert [length for _, _, length in entry.extents(0, entry.nbytes)] == [MINDSPORE_SPLIT_BYTES, 4096]
            assert {i: float(entry.rows(i, i + 1)[0]) for i in marks} == marks  # one element read each
            del entry
        ok("ms2torch", tmp_path / "big.ckpt", "-o", tmp_path / "back.safetensors", "--format", "safetensors", "--quiet")
        assert described(tmp_path / "back.safetensors") == expected
    finally:
        for name in ("big.safetensors", "big.ckpt", "back.safetensors"):
            (tmp_path / name).unlink(missing_ok=True)
