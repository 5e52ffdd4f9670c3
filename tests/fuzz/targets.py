"""The fuzz targets: one per reader, each a seed set of valid files and a function of the bytes.

A target writes the fuzzer's bytes where the reader expects a file (a scratch folder beside
the fuzzing corpus), reads it the way the CLI does, touches every tensor byte, and lets only a
ConvmigrateError (one line, naming the file) pass. The index target splits its input into an
index and two shards with atheris' FuzzedDataProvider, so the fuzzer varies all three.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convmigrate.entries import Checkpoint, TensorEntry, ValueEntry
from convmigrate.errors import ConvmigrateError


def sample_entries() -> list:
    """Every dtype, 0-d, empty and split-worthy tensors, plain values, exotic names."""
    from convmigrate.vocab import DTYPES

    rng = np.random.default_rng(5)
    return [
        TensorEntry.from_array("enc.conv.weight", rng.standard_normal((4, 2, 3)).astype(np.float32)),
        TensorEntry.from_array("enc.conv.bias", rng.standard_normal(4).astype(np.float16)),
        TensorEntry.from_array("bf", DTYPES["bfloat16"].from_float32(rng.standard_normal(3).astype(np.float32)), DTYPES["bfloat16"]),
        TensorEntry.from_array("ids", np.arange(6, dtype=np.int64).reshape(2, 3)),
        TensorEntry.from_array("mask", np.array([True, False])),
        TensorEntry.from_array("scalar", np.array(0.5, np.float64)),
        TensorEntry.from_array("empty.rows", np.zeros((0, 2), np.int8)),
        TensorEntry.from_array("ünï.名", np.array([1, 2], np.uint16)),
        TensorEntry.from_array("u32", np.array([7], np.uint32)),
        ValueEntry("note", "text ✓"),
        ValueEntry("epoch", 3),
    ]


def _written(writer: Callable, **options: object) -> bytes:
    buffer = io.BytesIO()
    writer(buffer, sample_entries(), metadata={"format": "pt"}, **options)
    return buffer.getvalue()


def safetensors_seeds() -> list[bytes]:
    from convmigrate.formats.safetensors_file import write_ms_safetensors, write_safetensors
    from tests.corpus.build import record, safetensors_file

    extra = safetensors_file({"__metadata__": None, "w": record("F32", [1], 0, 4, x=[1, {"y": "z"}])}, bytes(4))
    return [_written(write_safetensors), _written(write_ms_safetensors), extra]


def ckpt_seeds() -> list[bytes]:
    from convmigrate.formats.ckpt import write_ckpt

    return [_written(write_ckpt), _written(write_ckpt, crc=True), _written(write_ckpt, split_bytes=8)]


def torch_zip_seeds() -> list[bytes]:
    """torch.save zips written by our own writer (no torch needed), with and without plain values."""
    from convmigrate.formats.torch_write import write_torch

    tensors_only = [e for e in sample_entries() if isinstance(e, TensorEntry)]
    buffer = io.BytesIO()
    write_torch(buffer, tensors_only, metadata={})
    return [_written(write_torch), buffer.getvalue()]


def pickle_seeds() -> list[bytes]:
    return [zipfile.ZipFile(io.BytesIO(seed)).read(name) for seed in torch_zip_seeds()
            for name in zipfile.ZipFile(io.BytesIO(seed)).namelist() if name.endswith("data.pkl")]


def index_seeds() -> list[bytes]:
    """An index and two shards, packed as the index target unpacks them."""
    from convmigrate.formats.safetensors_file import write_safetensors

    tensors = [e for e in sample_entries() if isinstance(e, TensorEntry)]
    shards = []
    for part in (tensors[:4], tensors[4:]):
        buffer = io.BytesIO()
        write_safetensors(buffer, part, metadata={"format": "pt"})
        shards.append(buffer.getvalue())
    weight_map = {t.name: "a.safetensors" for t in tensors[:4]} | {t.name: "b.safetensors" for t in tensors[4:]}
    index = json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map}).encode()
    return [pack_index(index, *shards)]


def pack_index(index: bytes, first: bytes, second: bytes) -> bytes:
    """What the index target's FuzzedDataProvider reads back: lengths, then the three files."""
    return len(index).to_bytes(4, "little") + len(first).to_bytes(4, "little") + index + first + second


def read_everything(checkpoint: Checkpoint) -> None:
    """Touch every byte of every tensor, as the writers and `inspect` would."""
    with checkpoint:
        for entry in checkpoint.entries:
            if isinstance(entry, TensorEntry):
                assert len(entry.raw_bytes()) == entry.nbytes
                assert entry.array().shape == entry.shape


def refused_in_one_line(error: ConvmigrateError, folder: Path) -> None:
    message = str(error)
    assert "\n" not in message, message
    assert str(folder) in message, message


# libFuzzer dictionaries: tokens each format is built from, so mutations insert and replace whole
# keys, dtype codes and protobuf keys instead of stumbling on them one bit at a time.
SAFETENSORS_TOKENS = [
    b'"dtype"', b'"shape"', b'"data_offsets"', b'"__metadata__"', b'"F32"', b'"BF16"', b'"U64"', b'"C64"', b'"F8_E4M3"',
    b'"convmigrate.value.x"', b'"format"', b'"ms"', b"[]", b"{}", b"null", b"1e400", b"-0", b"\\ud800", b"9223372036854775808",
    b"18446744073709551616", b'"weight_map"', b'"metadata"', b'"a.safetensors"', b'"b.safetensors"', b'"../a.safetensors"',
]
CKPT_TOKENS = [b"\x0a", b"\x12", b"\x1a", b"\x08", b"\x20", b"Float32", b"BFloat16", b"UInt64", b"str", b"crc_num",
               b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"]
PICKLE_TOKENS = [b"\x80\x02", b"ctorch._utils\n_rebuild_tensor_v2\n", b"ctorch\nFloatStorage\n", b"ccollections\nOrderedDict\n",
                 b"X\x07\x00\x00\x00storage", b"r\xff\xff\xff\x7f", b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"data.pkl"]


def dictionary(tokens: list[bytes]) -> str:
    """libFuzzer's -dict file format: one quoted token per line, bytes as \\xNN."""
    return "".join('"' + "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\x{b:02x}" for b in t) + '"\n' for t in tokens)


@dataclass
class Target:
    """One reader under fuzzing: its seed files and what it does with one input.

    `known`: exceptions of an open bug owned by another area, reported but not a crash, so that
    the fuzzer goes on exploring this reader meanwhile (tests/corpus/cases_fuzz.py has the case).
    """

    name: str
    seeds: Callable[[], list[bytes]]
    run: Callable[[bytes, Path], None]
    known: tuple[type[BaseException], ...] = ()
    tokens: list[bytes] = field(default_factory=list)


def _detect_and_read(file_name: str, fmt: str) -> Callable[[bytes, Path], None]:
    """Detection, then this target's reader when detection chose its format.

    An input that detection gives to another format is that format's target's business (and
    torch.load, the torch fallback, is not fuzzed here: it is torch's parser, not ours).
    """

    def run(data: bytes, folder: Path) -> None:
        from convmigrate.formats.detect import detect_format, load
        from convmigrate.vocab import Format

        path = folder / file_name
        path.write_bytes(data)
        try:
            detected = detect_format(path)
            if detected is Format(fmt):
                read_everything(load(detected.spec.reader)(path))
        except ConvmigrateError as error:
            refused_in_one_line(error, folder)

    return run


def _index(data: bytes, folder: Path) -> None:
    import atheris

    from convmigrate.formats import open_checkpoint

    provider = atheris.FuzzedDataProvider(data)
    index_size, first_size = provider.ConsumeIntInRange(0, 1 << 16), provider.ConsumeIntInRange(0, 1 << 16)
    (folder / "model.safetensors.index.json").write_bytes(provider.ConsumeBytes(index_size))
    (folder / "a.safetensors").write_bytes(provider.ConsumeBytes(first_size))
    (folder / "b.safetensors").write_bytes(provider.ConsumeBytes(provider.remaining_bytes()))
    try:  # detection reads the index too (its sniffer refuses one that is not an index)
        read_everything(open_checkpoint(folder / "model.safetensors.index.json"))
    except ConvmigrateError as error:
        refused_in_one_line(error, folder)


def _torch_zip(data: bytes, folder: Path) -> None:
    """The torch-free zip reader: every tensor read, or one line."""
    from convmigrate.formats.torch_zip import read_torch_zip

    path = folder / "model.pt"
    path.write_bytes(data)
    try:
        checkpoint = read_torch_zip(path)
    except ConvmigrateError as error:
        refused_in_one_line(error, folder)
        return
    read_everything(checkpoint)


def _pickle(data: bytes, folder: Path) -> None:
    """The inert unpickler on its own: plain data, placeholders and tensor records, or PickleError."""
    from convmigrate.formats.pickle_reader import PickleError, load_pickle

    del folder
    try:
        load_pickle(data)
    except PickleError:
        pass  # torch_zip turns it into the one-line error


TARGETS: dict[str, Target] = {
    "safetensors": Target("safetensors", safetensors_seeds, _detect_and_read("model.safetensors", "safetensors"), tokens=SAFETENSORS_TOKENS),
    "index": Target("index", index_seeds, _index, tokens=SAFETENSORS_TOKENS),
    "ckpt": Target("ckpt", ckpt_seeds, _detect_and_read("model.ckpt", "ckpt"), tokens=CKPT_TOKENS),
    "torch-zip": Target("torch-zip", torch_zip_seeds, _torch_zip, tokens=PICKLE_TOKENS),
    "pickle": Target("pickle", pickle_seeds, _pickle, tokens=PICKLE_TOKENS),
}
