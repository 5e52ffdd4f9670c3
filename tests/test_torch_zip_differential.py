"""torch.load(weights_only=True) is the oracle for torch zips (issue 12): same tensors, or a refusal.

A real torch.save file is re-packed by the hand-written zip writer (tests/corpus/zipbuild.py) in
every way the zip specification allows and torch reads: stored or deflated records, zip64 end
records and extra fields, data descriptors, other alignments, unknown extra fields, records in
another order, a comment, big-endian data (as torch.save writes it on a big-endian machine: a
'big' byteorder record and every storage byte-swapped by its dtype). Where torch reads the file,
convmigrate returns the same tensors (names, shapes, dtypes, bytes); where torch refuses it,
convmigrate refuses it in one line; where convmigrate is stricter on purpose, a row of
`limits.DEVIATIONS` says so. A hypothesis test mixes the variants at random.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convmigrate.errors import UnreadableCheckpointError
from convmigrate.formats import open_checkpoint
from convmigrate.formats.pickle_reader import TensorRecord, load_pickle
from convmigrate.limits import DEVIATIONS
from tests.corpus.zipbuild import DEFLATED, Member, build_zip, record_index, torch_records, with_record, zip64_extra


def state() -> dict[str, torch.Tensor]:
    """Every dtype torch.save keeps in a typed storage, plus a scalar and an empty tensor."""
    generator = torch.Generator().manual_seed(0)
    return {
        "conv.weight": torch.randn(8, 4, 3, generator=generator),
        "conv.bias": torch.randn(8, generator=generator).double(),
        "norm.weight": torch.randn(8, generator=generator).half(),
        "norm.bias": torch.randn(8, generator=generator).bfloat16(),
        "steps": torch.arange(5, dtype=torch.int64) * 1_000_003,
        "index": torch.arange(6, dtype=torch.int32).reshape(2, 3) - 3,
        "short": torch.arange(4, dtype=torch.int16) * -300,
        "bytes": torch.arange(7, dtype=torch.uint8),
        "signed": torch.arange(7, dtype=torch.int8) - 3,
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
    }


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[Member]:
    path = tmp_path_factory.mktemp("base") / "archive.pt"  # torch.save names the zip folder after the file
    torch.save(state(), path)
    return torch_records(path)


Tensors = dict[str, tuple[tuple[int, ...], str, bytes]]


def by_torch(path: Path) -> Tensors | str:
    """What torch.load(weights_only=True) returns (names, shapes, dtypes, bytes), or why it refused."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any refusal is a refusal
        return f"{type(exc).__name__}: {exc}"
    return {
        name: (tuple(t.shape), str(t.dtype).removeprefix("torch."), t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        for name, t in loaded.items()
    }


def by_us(path: Path) -> Tensors | UnreadableCheckpointError:
    try:
        with open_checkpoint(path) as checkpoint:
            return {t.name: (t.shape, t.dtype.name, t.raw_bytes()) for t in checkpoint.tensors()}
    except UnreadableCheckpointError as exc:
        return exc


def swapped(members: list[Member]) -> list[Member]:
    """The archive torch.save writes on a big-endian machine: each storage reversed by its dtype."""
    pickle = next(m for m in members if m.name.endswith("data.pkl"))
    widths: dict[str, int] = {}

    def walk(value: object) -> None:
        if isinstance(value, TensorRecord) and value.storage.dtype is not None:
            widths[value.storage.key] = value.storage.dtype.itemsize
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(load_pickle(pickle.data))
    out = []
    for member in members:
        key = member.name.rsplit("data/", 1)[-1] if "/data/" in member.name else None
        if member.name.endswith("byteorder"):
            member = replace(member, data=b"big")
        elif key in widths:
            width = widths[key]
            member = replace(member, data=np.frombuffer(member.data, np.uint8).reshape(-1, width)[:, ::-1].tobytes())
        out.append(member)
    return out


def zip64_everywhere(member: Member) -> Member:
    size = len(member.data)
    return replace(member, size=0xFFFFFFFF, compressed_size=0xFFFFFFFF, central_extra=zip64_extra(size, size))


# Files torch reads: convmigrate must return exactly its tensors.
READ_ALIKE: dict[str, Callable[[list[Member]], bytes]] = {
    "rebuilt as torch lays it out": lambda r: build_zip(r),
    "no 64-byte alignment": lambda r: build_zip([replace(m, align=0) for m in r]),
    "4096-byte alignment": lambda r: build_zip([replace(m, align=4096) for m in r]),
    "zip64 end records": lambda r: build_zip(r, zip64=True),
    "zip64 extra fields on every record": lambda r: build_zip([zip64_everywhere(m) for m in r], zip64=True),
    "data descriptors": lambda r: build_zip([replace(m, descriptor=True) for m in r]),
    "every record deflated": lambda r: build_zip([replace(m, method=DEFLATED) for m in r]),
    "data.pkl deflated": lambda r: build_zip(with_record(r, "data.pkl", method=DEFLATED)),
    "tensor records deflated": lambda r: build_zip([replace(m, method=DEFLATED) if "/data/" in m.name else m for m in r]),
    "unknown extra fields": lambda r: build_zip([replace(m, extra=b"\x99\x99\x04\x00abcd", central_extra=b"\x99\x99\x02\x00ab") for m in r]),
    "records in reverse order": lambda r: build_zip(list(reversed(r))),
    "a comment": lambda r: build_zip(r, comment=b"saved on a Tuesday"),
    "no byteorder record": lambda r: build_zip([m for m in r if not m.name.endswith("byteorder")]),
    ".data/version beside version": lambda r: build_zip([*r, Member("archive/.data/version", b"3\n")]),
    "version '3' followed by junk": lambda r: build_zip(with_record(r, "/version", data=b"3 and more")),
    "big-endian (byteorder 'big')": lambda r: build_zip(swapped(r)),
    "big-endian, deflated, zip64": lambda r: build_zip([replace(m, method=DEFLATED) for m in swapped(r)], zip64=True),
}

# Files torch refuses: convmigrate must refuse them too, in one line.
BOTH_REFUSE: dict[str, Callable[[list[Member]], bytes]] = {
    "version 99": lambda r: build_zip(with_record(r, "/version", data=b"99\n")),
    "version 0": lambda r: build_zip(with_record(r, "/version", data=b"0\n")),
    "version 'abc'": lambda r: build_zip(with_record(r, "/version", data=b"abc")),
    "no version record": lambda r: build_zip([m for m in r if not m.name.endswith("/version")]),
    "byteorder 'middle'": lambda r: build_zip(with_record(r, "byteorder", data=b"middle")),
    "a record shorter than its storage": lambda r: build_zip(with_record(r, "data/0", data=bytes(32))),
    "a record longer than its storage": lambda r: build_zip(with_record(r, "data/0", data=bytes(400))),
    "a record compressed with bzip2": lambda r: build_zip(with_record(r, "data/0", method=12, payload=bytes(40))),
    "an encrypted record": lambda r: build_zip(with_record(r, "data/0", flags=0x0801)),
    "more records counted than present": lambda r: build_zip(r, count=len(r) + 1),
    "the directory past the end": lambda r: build_zip(r, directory_offset=1 << 20),
    "a truncated file": lambda r: build_zip(r)[:-100],
    "a first record outside any folder": lambda r: build_zip([Member("stray", b"x"), *r]),
    "a stored record whose sizes differ": lambda r: build_zip(with_record(r, "data/0", compressed_size=32)),
}

# Files torch reads but convmigrate refuses on purpose: each names its DEVIATIONS row.
STRICTER: dict[str, tuple[str, Callable[[list[Member]], bytes]]] = {
    "data/0 twice": ("duplicate record names", lambda r: build_zip(
        [*r[: record_index(r, "data/0") + 1], replace(r[record_index(r, "data/0")], data=bytes(384)), *r[record_index(r, "data/0") + 1 :]])),
    "data/0 and DATA/0": ("duplicate record names", lambda r: build_zip([*r, Member("archive/DATA/0", bytes(384))])),
    "a local header naming another record": ("a local header that disagrees with the central directory (name or method)",
                                             lambda r: build_zip(with_record(r, "data/0", local_name="archive/data/9"))),
    "a local header saying deflated": ("a local header that disagrees with the central directory (name or method)",
                                       lambda r: build_zip(with_record(r, "data/0", local_method=DEFLATED))),
    "bytes after the directory": ("bytes between the central directory and the end record, or a directory shorter than "
                                  "the end record's count", lambda r: build_zip(r, after_directory=b"junk")),
    "one record fewer counted": ("bytes between the central directory and the end record, or a directory shorter than "
                                 "the end record's count", lambda r: build_zip(r, count=len(r) - 1)),
    "a deflated record with a wrong CRC": ("a deflated record whose CRC-32 does not match",
                                           lambda r: build_zip(with_record(r, "data/0", method=DEFLATED, crc=1))),
}


def refused_in_one_line(result: object, path: Path) -> bool:
    return isinstance(result, UnreadableCheckpointError) and "\n" not in str(result) and str(path) in str(result)


@pytest.mark.parametrize("variant", list(READ_ALIKE))
def test_what_torch_reads_we_read_alike(tmp_path, records, variant):
    path = tmp_path / "variant.pt"
    path.write_bytes(READ_ALIKE[variant](records))
    expected = by_torch(path)
    assert isinstance(expected, dict), f"torch.load refused {variant}: {expected}"
    assert by_us(path) == expected


@pytest.mark.parametrize("variant", list(BOTH_REFUSE))
def test_what_torch_refuses_we_refuse_in_one_line(tmp_path, records, variant):
    path = tmp_path / "variant.pt"
    path.write_bytes(BOTH_REFUSE[variant](records))
    assert isinstance(by_torch(path), str), f"torch.load read {variant}"
    result = by_us(path)
    assert refused_in_one_line(result, path), result


@pytest.mark.parametrize("variant", list(STRICTER))
def test_where_we_are_stricter_a_deviation_row_says_why(tmp_path, records, variant):
    row, build = STRICTER[variant]
    assert row in {d.case for d in DEVIATIONS if d.format == "torch.save zip"}
    path = tmp_path / "variant.pt"
    path.write_bytes(build(records))
    assert isinstance(by_torch(path), dict), f"torch.load refused {variant}: the row is not needed"
    assert refused_in_one_line(by_us(path), path)


def test_big_endian_untyped_storages_are_refused_where_torch_returns_unswapped_bytes(tmp_path):
    original = {"w": torch.tensor([1, 258, 515, 772, 1029, 1286], dtype=torch.uint16)}  # uint16: an UntypedStorage
    torch.save(original, tmp_path / "base.pt")
    path = tmp_path / "big.pt"
    records = torch_records(tmp_path / "base.pt")
    index = record_index(records, "data/0")
    data = np.frombuffer(records[index].data, np.uint8).reshape(-1, 2)[:, ::-1].tobytes()
    path.write_bytes(build_zip(with_record(with_record(records, "byteorder", data=b"big"), "data/0", data=data)))
    loaded = by_torch(path)
    assert isinstance(loaded, dict) and loaded["w"][2] != by_torch(tmp_path / "base.pt")["w"][2]  # torch: still swapped
    assert any("untyped storage" in d.case for d in DEVIATIONS)
    assert refused_in_one_line(by_us(path), path)


VARIANT_PARTS = st.fixed_dictionaries({
    "methods": st.lists(st.sampled_from([0, DEFLATED]), min_size=32, max_size=32),
    "align": st.sampled_from([0, 1, 64, 512, 4096]),
    "descriptor": st.booleans(),
    "zip64": st.booleans(),
    "zip64_fields": st.booleans(),
    "extra": st.booleans(),
    "order": st.randoms(use_true_random=False),
    "comment": st.binary(max_size=40).filter(lambda c: b"PK\x05\x06" not in c),
    "big_endian": st.booleans(),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=VARIANT_PARTS)
def test_random_zip_layouts_read_like_torch(tmp_path, records, parts):
    members = swapped(records) if parts["big_endian"] else list(records)
    parts["order"].shuffle(members)
    members = [
        replace(m, method=method, align=parts["align"], descriptor=parts["descriptor"],
                extra=b"\x99\x99\x02\x00ab" if parts["extra"] else b"")
        for m, method in zip(members, parts["methods"])
    ]
    if parts["zip64_fields"]:
        members = [zip64_everywhere(m) if m.method == 0 else m for m in members]
    path = tmp_path / "random.pt"
    path.write_bytes(build_zip(members, zip64=parts["zip64"] or parts["zip64_fields"], comment=parts["comment"]))
    expected = by_torch(path)
    assert isinstance(expected, dict), expected
    assert by_us(path) == expected
