"""Fuzzing the .ckpt and safetensors readers (issue 7): mutated valid files either read (every
tensor's bytes complete) or raise the tool's own error, one line naming the file; never
IndexError, struct.error, UnicodeDecodeError, MemoryError, OverflowError or anything else.

Files go through `open_checkpoint`, so detection is fuzzed too (a mutated file may look like
another format). Mutations, one to four per case: bit flips, truncations, insertions, byte
overwrites, deletions and splices of the file's own bytes. Case counts: MUTATED_EXAMPLES per
seed file (3 .ckpt and 3 safetensors seeds, one a sharded index), plus every single-bit flip of
a small .ckpt file and of a safetensors header.
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convmigrate.entries import TensorEntry, ValueEntry
from convmigrate.errors import ConvmigrateError
from convmigrate.formats import open_checkpoint
from convmigrate.formats.ckpt import write_ckpt
from convmigrate.formats.safetensors_file import write_ms_safetensors, write_safetensors
from convmigrate.vocab import DTYPES

MUTATED_EXAMPLES = 1000


def sample_entries() -> list:
    rng = np.random.default_rng(11)
    return [
        TensorEntry.from_array("enc.conv.weight", rng.standard_normal((4, 2, 3)).astype(np.float32)),
        TensorEntry.from_array("enc.conv.bias", rng.standard_normal(4).astype(np.float16)),
        TensorEntry.from_array("bf", DTYPES["bfloat16"].from_float32(rng.standard_normal(5).astype(np.float32)), DTYPES["bfloat16"]),
        TensorEntry.from_array("ids", np.arange(6, dtype=np.int64).reshape(2, 3)),
        TensorEntry.from_array("mask", np.array([True, False])),
        TensorEntry.from_array("scalar", np.array(0.5, np.float64)),
        TensorEntry.from_array("empty.rows", np.zeros((0, 2), np.int8)),
        TensorEntry.from_array("ünï.名", np.array([1, 2], np.uint16)),
        ValueEntry("note", "text ✓"),
        ValueEntry("epoch", 3),
    ]


def ckpt_seed(**options) -> bytes:
    buffer = io.BytesIO()
    write_ckpt(buffer, sample_entries(), metadata={}, **options)
    return buffer.getvalue()


def safetensors_seed(writer=write_safetensors, metadata=None) -> bytes:
    buffer = io.BytesIO()
    writer(buffer, sample_entries(), metadata=metadata or {})
    return buffer.getvalue()


SEEDS = {
    "ckpt": lambda: ckpt_seed(),
    "ckpt with CRC": lambda: ckpt_seed(crc=True),
    "ckpt split in 16-byte values": lambda: ckpt_seed(split_bytes=16),
    "safetensors": lambda: safetensors_seed(metadata={"format": "pt", "note": "ünï"}),
    "ms-safetensors": lambda: safetensors_seed(write_ms_safetensors),
}


def read_everything(path: Path) -> None:
    """Open, then touch every byte of every tensor as the writers and `inspect` would."""
    with open_checkpoint(path) as checkpoint:
        for entry in checkpoint.entries:
            if isinstance(entry, TensorEntry):
                assert len(entry.raw_bytes()) == entry.nbytes
                assert entry.array().shape == entry.shape
                entry.sha256()


def assert_reads_or_refuses(path: Path) -> None:
    try:
        read_everything(path)
    except ConvmigrateError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert str(path) in message or path.name in message, message
    # anything else (IndexError, struct.error, UnicodeDecodeError, MemoryError...) fails the test


@st.composite
def mutations(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite", "delete", "splice"]))
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        if kind == "flip" and out:
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del out[at:]
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "overwrite":
            patch = draw(st.one_of(st.binary(min_size=1, max_size=8), st.sampled_from([b"\xff" * 10, b"\x80", b"\x00" * 8, b"9999999", b'"', b"\x0a"])))
            out[at : at + len(patch)] = patch
        elif kind == "delete":
            del out[at : at + draw(st.integers(1, 16))]
        elif kind == "splice" and out:
            start = draw(st.integers(0, len(out) - 1))
            out[at:at] = out[start : start + draw(st.integers(1, 32))]
    return bytes(out)


def temporary(base: Path, suffix: str) -> Path:
    return base / f"{uuid.uuid4().hex}{suffix}"


@pytest.mark.parametrize("seed", list(SEEDS))
@settings(max_examples=MUTATED_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_files_read_or_raise_our_error(tmp_path: Path, seed: str, data: st.DataObject) -> None:
    original = SEEDS[seed]()
    path = temporary(tmp_path, ".ckpt" if seed.startswith("ckpt") else ".safetensors")
    path.write_bytes(data.draw(mutations(original), label="mutated"))
    try:
        assert_reads_or_refuses(path)
    finally:
        path.unlink()


def sharded(folder: Path) -> tuple[Path, Path]:
    """A two-shard checkpoint with its index; returns (index, first shard)."""
    entries = [e for e in sample_entries() if isinstance(e, TensorEntry)]
    shards = {"model-00001-of-00002.safetensors": entries[:4], "model-00002-of-00002.safetensors": entries[4:]}
    weight_map = {}
    for name, part in shards.items():
        with open(folder / name, "wb") as stream:
            write_safetensors(stream, part, metadata={"format": "pt"})
        weight_map.update({e.name: name for e in part})
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map}, ensure_ascii=False))
    return index, folder / "model-00001-of-00002.safetensors"


@settings(max_examples=MUTATED_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data(), target=st.sampled_from(["index", "shard"]))
def test_mutated_sharded_checkpoints_read_or_raise_our_error(tmp_path: Path, data: st.DataObject, target: str) -> None:
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    index, shard = sharded(folder)
    victim = index if target == "index" else shard
    victim.write_bytes(data.draw(mutations(victim.read_bytes()), label="mutated"))
    try:
        read_everything(index)
    except ConvmigrateError as exc:
        assert "\n" not in str(exc) and str(folder) in str(exc), str(exc)


def small_ckpt() -> bytes:
    entries = [TensorEntry.from_array("w", np.arange(6, dtype=np.float32).reshape(2, 3)), TensorEntry.from_array("b", np.array([1, 2], np.int8)), ValueEntry("s", "x")]
    buffer = io.BytesIO()
    write_ckpt(buffer, entries, metadata={}, split_bytes=16)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("suffix", "data", "span"),
    [
        (".ckpt", small_ckpt(), None),
        (".safetensors", safetensors_seed(metadata={"format": "pt"}), "header"),
    ],
    ids=["every bit of a small .ckpt", "every bit of a safetensors header"],
)
def test_every_single_bit_flip(tmp_path: Path, suffix: str, data: bytes, span: str | None) -> None:
    end = len(data) if span is None else 8 + int.from_bytes(data[:8], "little")
    path = tmp_path / f"flipped{suffix}"
    for position in range(end):
        for bit in range(8):
            changed = bytearray(data)
            changed[position] ^= 1 << bit
            path.write_bytes(bytes(changed))
            assert_reads_or_refuses(path)
