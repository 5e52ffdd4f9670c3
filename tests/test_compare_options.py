"""The network as the reference (`torch2ms --ms-model`, `ms2torch --model`), compare's inputs,
and the optional extras: what a user without MindSpore (or with numpy 2) reads."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import zipfile

import numpy as np
import pytest

from convmigrate.compare.inputs import read_npz
from convmigrate.errors import UnreadableCheckpointError
from tests.conftest import REPO, run_console_script


@pytest.fixture
def audio_pt(tmp_path):
    import torch

    from tests.compare_nets import audio_net

    path = tmp_path / "audio.pt"
    torch.save(audio_net().state_dict(), path)
    return path


@pytest.fixture
def unread(tmp_path):
    """A weights path for errors that come before anything is read (these tests need no torch)."""
    path = tmp_path / "never_read.pt"
    path.write_bytes(b"never read")
    return path


def test_torch2ms_ms_model_is_the_exact_reference(ms, cli, audio_pt, tmp_path):
    result = cli("torch2ms", audio_pt, "--ms-model", "tests.compare_ports:faithful", "-o", tmp_path / "a.ckpt",
                 "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["reference"] == "tests.compare_ports:faithful (the MindSpore network)"
    steps = {step["target"]: step for step in report["plan"]["steps"] if step["target"]}
    assert steps["wn.weight"]["op"] == "fold_weight_norm"  # the network has no weight norm: folded, no flag
    assert steps["bn.moving_variance"]["sources"] == ["bn.running_var"]
    assert all(step["confidence"] == "reference" for step in steps.values())
    from tests.compare_ports import faithful

    params = ms.load_checkpoint(str(tmp_path / "a.ckpt"))
    assert ms.load_param_into_net(faithful(), params, strict_load=True) == ([], [])


def test_torch2ms_ms_model_fails_naming_every_missing_and_unused_name(ms, cli, audio_pt, tmp_path):
    result = cli("torch2ms", audio_pt, "--ms-model", "tests.compare_ports:renamed_layer", "-o", tmp_path / "a.ckpt")
    assert result.exit_code == 1
    for name in ("projection.weight", "projection.bias", "proj.weight", "proj.bias"):
        assert name in result.stderr
    assert not (tmp_path / "a.ckpt").exists()
    assert "error:" in result.stdout and "in the reference, not produced from the input" in result.stdout


def test_ms2torch_model_is_the_exact_reference(ms, cli, tmp_path):
    import torch

    from tests.nets import mindspore_net, randomize_mindspore

    ms.save_checkpoint(randomize_mindspore(mindspore_net()), str(tmp_path / "net.ckpt"))
    result = cli("ms2torch", tmp_path / "net.ckpt", "--model", "tests.nets:TorchNet", "-o", tmp_path / "net.pt")
    assert result.exit_code == 0, result.stdout + result.stderr
    from tests.nets import TorchNet

    TorchNet().load_state_dict(torch.load(tmp_path / "net.pt", weights_only=True), strict=True)
    wrong = cli("ms2torch", tmp_path / "net.ckpt", "--model", "tests.compare_nets:audio_net", "-o", tmp_path / "w.pt")
    assert wrong.exit_code == 1 and "lstm.weight_ih_l0" in wrong.stdout and not (tmp_path / "w.pt").exists()


def test_two_references_are_a_usage_error(cli, unread, tmp_path):
    result = cli("torch2ms", unread, "--reference", unread, "--ms-model", "tests.compare_ports:faithful")
    assert result.exit_code == 2
    assert "--reference and --ms-model both give the target's names and shapes: give one" in result.stderr
    result = cli("ms2torch", unread, "--model", "tests.nets:TorchNet", "--reference", unread)
    assert result.exit_code == 2 and "--reference and --model" in result.stderr


@pytest.mark.parametrize("hidden", ["mindspore", "torch"])
def test_a_missing_framework_is_one_line_naming_the_extra(cli, unread, monkeypatch, hidden):
    other = {"mindspore": "torch", "torch": "mindspore"}[hidden]
    if importlib.util.find_spec(other) is None:  # (the numpy-2 run has neither: the first missing is named)
        pytest.skip(f"needs {other} installed, to show that {hidden} alone is named")
    monkeypatch.setitem(sys.modules, hidden, None)  # `import hidden` now fails as if it were not installed
    result = cli("compare", unread, "--torch-model", "tests.compare_nets:audio_net", "--ms-model",
                 "tests.compare_ports:faithful", "--input", "1,4,20")
    assert result.exit_code == 2
    assert result.stderr == f"error: compare needs {hidden}, which is not installed: pip install 'convmigrate[{hidden}]'\n"


def test_mindspore_beside_numpy_2_is_refused_up_front(cli, unread, monkeypatch):
    from convmigrate.compare import frameworks

    monkeypatch.setattr(frameworks, "_mindspore_installed", lambda: True)  # as if installed, even where it is not
    monkeypatch.setattr(np, "__version__", "2.1.0")
    result = cli("torch2ms", unread, "--ms-model", "tests.compare_ports:faithful")
    assert result.exit_code == 2
    assert result.stderr == ("error: --ms-model needs mindspore, which cannot run beside numpy 2.1.0 (it needs numpy<2): "
                             "pip install 'convmigrate[mindspore]'\n")


@pytest.mark.parametrize(("args", "message"), [
    ([], "give the forward call's inputs: --input SHAPE (repeatable) or --inputs FILE.npz"),
    (["--input", "2,x"], "--input '2,x': a shape is written as comma-separated sizes, e.g. 2,4,50"),
    (["--input", "2,0,5"], "--input '2,0,5': every size must be at least 1"),
    (["--input", "100000,100000"], "bytes of inputs exceed COMPARE_MAX_INPUT_BYTES"),
])
def test_bad_inputs_are_usage_errors_before_any_framework_loads(cli, unread, args, message):
    result = cli("compare", unread, "--torch-model", "m:f", "--ms-model", "m:g", *args)
    assert result.exit_code == 2 and message in result.stderr


def test_npz_positional_and_named(tmp_path):
    x, ids = np.ones((2, 3), np.float32), np.arange(4, dtype=np.int64).reshape(1, 4)
    np.savez(tmp_path / "a.npz", x, np.asfortranarray(np.eye(3, dtype=np.float64)), ids=ids)
    args, kwargs = read_npz(tmp_path / "a.npz")
    assert [name for name, _ in args] == ["a.npz:arr_0", "a.npz:arr_1"]
    np.testing.assert_array_equal(args[1][1], np.eye(3))
    assert list(kwargs) == ["ids"] and kwargs["ids"].dtype == np.int64
    np.testing.assert_array_equal(kwargs["ids"], ids)


def _npz(path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


# (members of a hostile or broken .npz, the problem the one-line error names)
BAD_NPZ = [
    ({"arr_0.npy": _npy(np.array([{"a": 1}], dtype=object))}, "holds Python objects"),
    ({"arr_0.npy": _npy(np.zeros(4, np.float32))[:-8]}, "float32 [4] needs 16 bytes, the file holds 8"),
    # a header claiming 10^12 elements over 16 bytes of data: refused before any allocation
    ({"arr_0.npy": _npy(np.zeros(4, np.float32)).replace(b"(4,)", b"(1000000000000,)", 1)},
     "float32 [1000000000000] needs 4,000,000,000,000 bytes"),
    ({"arr_0.npy": _npy(np.zeros(1)), "arr_2.npy": _npy(np.zeros(1))}, "arr_0, arr_1, ... without gaps"),
    ({"../x.npy": _npy(np.zeros(1))}, "is not an array of numpy.savez"),
    ({"arr_0.txt": b"hello"}, "is not an array of numpy.savez"),
    ({"arr_0.npy": b"\x93NUMPY\x09\x00" + b"x" * 20}, "not a .npy array"),
]


@pytest.mark.parametrize(("members", "problem"), BAD_NPZ)
def test_hostile_npz_is_refused_with_one_line(tmp_path, members, problem):
    _npz(tmp_path / "bad.npz", members)
    with pytest.raises(UnreadableCheckpointError, match=re.escape(problem)):
        read_npz(tmp_path / "bad.npz")


def test_not_a_zip_is_unreadable(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(UnreadableCheckpointError, match="not an .npz"):
        read_npz(tmp_path / "x.npz")


def test_real_process_exit_code_and_one_error_line(ms, audio_pt, tmp_path):
    result = run_console_script("compare", audio_pt, "--torch-model", "tests.compare_nets:audio_net", "--ms-model",
                                "tests.compare_ports:missing_layer", "--input", "1,4,20", "-q", cwd=REPO)
    assert result.exit_code == 1 and result.stdout == ""
    error, *names = result.stderr.splitlines()
    assert error.startswith("error: the weights do not load strictly; MindSpore network: 2 tensor(s) with no home")
    assert [n.strip() for n in names] == ["down.weight", "down.bias"]


def test_nan_outputs_that_agree_are_no_proof(ms, cli, tmp_path):
    import torch

    from tests.compare_nets import Broken

    torch.save(Broken().state_dict(), tmp_path / "b.pt")
    result = cli("compare", tmp_path / "b.pt", "--torch-model", "tests.compare_nets:Broken", "--ms-model",
                 "tests.compare_ports:BrokenPort", "--input", "3,4")
    assert result.exit_code == 1
    assert "PyTorch's output holds 6 NaN: nothing to compare against" in result.stdout
    assert "lin" in result.stdout and "ok" in result.stdout  # the layer before the NaN is fine
