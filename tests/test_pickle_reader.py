"""The inert pickle reader against Python's own pickle: same data, nothing run, bounded.

Plain data (what a checkpoint keeps beside its tensors) must come out as `pickle.loads` gives
it, for every protocol, through every opcode Python's pickler writes (hypothesis). Anything that
would be called is recorded instead (placeholders), and the reader's own tables cannot be changed
by a file. Limits are checked with the limit lowered, so a test needs no huge file.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import pickle
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convmigrate.formats.pickle_reader as pickle_reader
from convmigrate.formats.pickle_reader import (
    ALLOWED,
    Global,
    Opaque,
    PickleError,
    StorageRecord,
    TensorRecord,
    load_pickle,
)
from convmigrate.vocab import DTYPES
from tests.corpus.pickles import state_dict, tensor

atoms = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**600), max_value=2**600),
    st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=20),
)
keys = st.one_of(st.integers(), st.text(max_size=10), st.tuples(st.integers(), st.text(max_size=5)))
plain = st.recursive(
    atoms,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.tuples(children, children),
        st.lists(children, max_size=6).map(tuple),
        st.dictionaries(keys, children, max_size=6),
        st.frozensets(keys, max_size=5),
        st.sets(keys, max_size=5),
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(value=plain, protocol=st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_plain_data_comes_out_as_pickle_loads_gives_it(value: object, protocol: int) -> None:
    data = pickle.dumps(value, protocol=protocol)
    assert load_pickle(data) == pickle.loads(data)


def test_shared_and_self_referencing_objects_keep_their_identity() -> None:
    shared = [1, 2]
    looped: dict = {"shared": shared, "again": shared}
    looped["self"] = looped
    loaded = load_pickle(pickle.dumps(looped, protocol=2))
    assert loaded["shared"] is loaded["again"] and loaded["self"] is loaded


class Marker:
    """Pickles as os.system("touch marker"): proves whether anything ran."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        import os

        return (os.system, (f"touch {self.marker}",))


def test_calls_are_recorded_never_made(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "pwned"
    value = {"evil": Marker(marker), "args": argparse.Namespace(lr=0.1, root=pathlib.Path("/data"))}
    loaded = load_pickle(pickle.dumps(value, protocol=2))
    assert not marker.exists()
    evil = loaded["evil"]
    assert isinstance(evil, Opaque) and evil.callee == Global("posix", "system") and evil.args == (f"touch {marker}",)
    namespace = loaded["args"]
    assert namespace.type_name == "argparse.Namespace"  # NEWOBJ of the class, then BUILD of its __dict__
    assert namespace.state["lr"] == 0.1 and namespace.state["root"].type_name == "pathlib.PosixPath"
    assert namespace.state["root"].args == ("/", "data")


class Params(dict):
    """A dict subclass, as Lightning's AttributeDict: pickled by NEWOBJ, then SETITEMS."""


def test_a_dict_subclass_keeps_its_items() -> None:
    loaded = load_pickle(pickle.dumps(Params(a=1, b=[2]), protocol=2))
    assert isinstance(loaded, Opaque) and loaded.items == [("a", 1), ("b", [2])]


def test_the_allow_list_is_read_only_and_its_stand_ins_take_no_state() -> None:
    with pytest.raises(TypeError):
        ALLOWED[("os", "system")] = None  # type: ignore[index]
    before = vars(DTYPES["float32"]).copy()
    # BUILD on the allow-listed torch.float32 (issue 12, case 8): refused, the table unchanged.
    poison = b"\x80\x02ctorch\nfloat32\n}X\t\x00\x00\x00mindsporeX\x05\x00\x00\x00Int32sb."
    with pytest.raises(PickleError, match="BUILD gives state to torch.float32, which takes no state"):
        load_pickle(poison)
    assert vars(DTYPES["float32"]) == before
    for stand_in in ("FloatStorage", "float32"):
        with pytest.raises(PickleError):
            load_pickle(f"\x80\x02ctorch\n{stand_in}\nK\x01a.".encode())


def test_storages_and_tensors_are_records_of_claims() -> None:
    data = state_dict({"w": tensor("0", "FloatStorage", (2, 2), stride=(2, 1), offset=2, numel=6)})
    record = load_pickle(data)["w"]
    assert isinstance(record, TensorRecord)
    assert (record.storage.key, record.storage.numel, record.dtype.name) == ("0", 6, "float32")
    assert (record.offset, record.shape, record.stride, record.byte_span()) == (2, (2, 2), (2, 1), (8, 24))


@pytest.mark.parametrize("shape, stride, offset, negative", [
    ((3, 4), (4, 1), 0, False),  # contiguous: a slice of the storage, no copy
    ((4, 3), (1, 4), 0, False),  # transposed
    ((2, 2), (4, 2), 5, False),  # offset, strided
    ((3, 2), (0, 1), 1, False),  # expanded (stride 0)
    ((0, 5), (5, 1), 12, False),  # empty
    ((3, 4), (4, 1), 0, True),  # torch's negative bit
])
def test_a_tensor_gives_its_own_elements_as_numpy_sees_them(shape: tuple, stride: tuple, offset: int, negative: bool) -> None:
    for name in ("float32", "bfloat16", "int16", "uint8"):
        dtype = DTYPES[name]
        storage = np.arange(12, dtype=np.uint8 if name == "uint8" else np.int16).astype(dtype.numpy)
        record = TensorRecord(StorageRecord("0", dtype, 12), dtype, offset, shape, stride, negative)
        expected = np.lib.stride_tricks.as_strided(
            storage[offset:], shape, [s * dtype.itemsize for s in stride]) if math.prod(shape) else np.empty(shape, dtype.numpy)
        if negative:
            expected = (expected.view(np.uint16) ^ np.uint16(0x8000)).view(dtype.numpy) if name == "bfloat16" else -expected
        first, stop = record.byte_span()
        got = bytes(record.own_bytes(memoryview(storage.tobytes())[first:stop]))
        assert got == np.ascontiguousarray(expected).tobytes(), (name, shape, stride)


@pytest.mark.parametrize("limit, value, data, problem", [
    ("PICKLE_MAX_MEMO", 10, b"\x80\x02N" + b"\x94" * 11 + b".", "memo grows past 10 entries"),
    ("PICKLE_MAX_OBJECTS", 100, b"\x80\x02(" + b"]" * 101 + b"t.", "more than 100 objects"),
    ("PICKLE_MAX_NESTING", 50, b"\x80\x02K\x00" + b"\x85" * 51 + b".", "nests tuples deeper than 50"),
    ("PICKLE_MAX_NESTING", 50, b"\x80\x02" + b"(" * 51, "nests MARKs deeper than 50"),
    ("PICKLE_MAX_INT_BYTES", 8, b"\x80\x02\x8a\x09" + bytes(9) + b".", "integer of 9 bytes"),
])
def test_each_limit_is_checked_before_it_is_passed(monkeypatch: pytest.MonkeyPatch, limit: str, value: int, data: bytes,
                                                   problem: str) -> None:
    monkeypatch.setattr(pickle_reader, limit, value)
    with pytest.raises(PickleError, match=problem):
        load_pickle(data)


def test_tuples_up_to_the_nesting_limit_are_keys_deeper_ones_are_refused() -> None:
    deep = b"K\x00" + b"\x85" * 1000  # 1000 levels: allowed, and hashable as a key
    assert len(load_pickle(b"\x80\x02}" + deep + b"K\x01s.")) == 1
    with pytest.raises(PickleError, match="deeper than 1000"):
        load_pickle(b"\x80\x02}" + deep + b"\x85K\x01s.")


@pytest.mark.parametrize("opcode, length", [
    (b"X", struct.pack("<I", 2**32 - 1)), (b"\x8d", struct.pack("<Q", 2**64 - 1)), (b"B", struct.pack("<I", 2**31)),
    (b"\x8e", struct.pack("<Q", 2**63)), (b"\x96", struct.pack("<Q", 10**12)), (b"T", struct.pack("<i", 2**31 - 1)),
    (b"\x8c", b"\xff"), (b"C", b"\xff"), (b"U", b"\xff"), (b"\x8b", struct.pack("<i", 1000)), (b"\x8a", b"\xff"),
])
def test_every_length_is_checked_against_what_remains(opcode: bytes, length: bytes) -> None:
    with pytest.raises(PickleError, match=r"claims [\d,]+ bytes at byte \d+, where 1 remain"):
        load_pickle(b"\x80\x02" + opcode + length + b".")
