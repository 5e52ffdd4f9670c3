"""The torch-free data.pkl writer against torch.save's own pickler, byte for byte.

torch.save of a state dict and our writer of the same entries must give the same data.pkl:
random state dicts (hypothesis) cover every dtype, 0-d and zero-size tensors, dims and values
past each integer opcode's range, unicode names and values; fixed cases cover pickle's batches
of 1000 items and memo indexes past 255.
"""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import hypothesis.strategies as st
import torch
from hypothesis import HealthCheck, given, settings

from convmigrate.entries import TensorEntry, ValueEntry
from convmigrate.formats.torch_write import state_dict_pickle
from convmigrate.vocab import DTYPES

TORCH_DTYPES = {name: getattr(torch, name) for name in DTYPES}


def torch_pickle(state: OrderedDict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return zipfile.ZipFile(buffer).read("archive/data.pkl")


def entries_of(state: OrderedDict) -> list:
    """Entries as our readers make them: shapes and dtypes, the bytes never asked for."""
    entries = []
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            dtype = DTYPES[str(value.dtype).removeprefix("torch.")]
            entries.append(TensorEntry(name, dtype, tuple(value.shape), lambda: ()))
        else:
            entries.append(ValueEntry(name, value))
    return entries


def assert_same_pickle(state: OrderedDict) -> None:
    assert state_dict_pickle(entries_of(state)) == torch_pickle(state)


names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
# Dimensions around each integer opcode's limits; a zero-size dimension keeps the big ones cheap.
small_dims = st.sampled_from([0, 1, 2, 3])
big_dims = st.sampled_from([255, 256, 300, 65535, 65536, 2**31 - 1, 2**31, 2**40])
values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 255, 256, 65535, 65536, -1, -256, 2**31 - 1, -(2**31), 2**31, -(2**31) - 1, 2**63]),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)


@st.composite
def tensors(draw: st.DrawFn) -> torch.Tensor:
    dtype = TORCH_DTYPES[draw(st.sampled_from(sorted(DTYPES)))]
    shape = draw(st.lists(small_dims, max_size=3))
    if draw(st.booleans()):
        big = draw(big_dims)
        shape.insert(draw(st.integers(0, len(shape))), big)
        if big > 300 and 0 not in shape:
            shape.append(0)
    return torch.zeros(shape, dtype=dtype)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(names, st.one_of(tensors(), values)), max_size=12, unique_by=lambda item: item[0]))
def test_matches_torch_save_for_random_state_dicts(items: list) -> None:
    assert_same_pickle(OrderedDict(items))


def test_batches_of_a_thousand_items_and_a_last_single_item() -> None:
    for count in (1, 2, 999, 1000, 1001, 2000, 2001):
        state = OrderedDict((f"layers.{i}.weight", torch.zeros(2, 3)) for i in range(count))
        assert_same_pickle(state)  # 2001 tensors: memo indexes far past 255 (LONG_BINPUT/BINGET)


def test_values_beside_tensors_and_one_char_names() -> None:
    state = OrderedDict(
        [("a", torch.zeros(1)), ("0", torch.zeros(())), ("epoch", 3), ("lr", 1e-3), ("tag", "vocoder"), ("ok", True)]
    )
    assert_same_pickle(state)


def test_ms2torch_and_convert_to_pt_do_not_import_torch(tmp_path: Path, cli) -> None:
    torch.save({"conv.weight": torch.randn(8, 4, 3), "conv.bias": torch.randn(8)}, tmp_path / "m.pt")
    assert cli("torch2ms", tmp_path / "m.pt", "-o", tmp_path / "m.ckpt", "--quiet").exit_code == 0
    script = (
        "import sys\n"
        "from convmigrate.cli.app import app\n"
        f"for args in (['ms2torch', {str(tmp_path / 'm.ckpt')!r}, '-o', {str(tmp_path / 'back.pt')!r}, '--quiet'],\n"
        f"             ['convert', {str(tmp_path / 'm.ckpt')!r}, '-o', {str(tmp_path / 'c.pt')!r}, '--quiet']):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit as done:\n"
        "        assert done.code == 0, args\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert torch.equal(back["conv.weight"], torch.load(tmp_path / "m.pt")["conv.weight"])
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=True)["conv.weight"][:, :, 0, :], back["conv.weight"])
