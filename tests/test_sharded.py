"""Sharded models in and out (issue 16): transformers' layout, shard-parallel, verified per shard.

The inputs are what transformers' `save_pretrained(max_shard_size=...)` and huggingface_hub's
`save_torch_state_dict` write; the outputs are read back by MindSpore (`load_checkpoint(...,
format="safetensors")`, shard by shard), by transformers (`from_pretrained` of the directory)
and by torch, and compared bit for bit with the single-file conversion of the same model.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from convmigrate.formats.shards import parse_size, shard_paths, split_by_size
from convmigrate.sharded import Item, assign
from tests.conftest import REPO, CliResult, run_cli

# --------------------------------------------------------------------------- models


def wav2vec2_config():
    import transformers

    return transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32, 32, 32),
        conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        vocab_size=10,
    )


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Wav2Vec2 (Conv1d feature extractor, weight-normalised positional conv) saved by
    transformers in 4 safetensors shards; returns its index."""
    import transformers

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hf")
    transformers.Wav2Vec2Model(wav2vec2_config()).save_pretrained(folder, max_shard_size="40KB")
    index = folder / "model.safetensors.index.json"
    assert len(set(json.loads(index.read_text())["weight_map"].values())) == 4
    return index


def run(*args: object, preexec=None) -> CliResult:
    """The CLI in this process (its shard jobs fork from it), or with `preexec` the console script
    in a real process set up by it."""
    if preexec is None:
        return run_cli(*args)
    completed = subprocess.run([sys.executable, "-m", "convmigrate", *map(str, args)], capture_output=True, text=True,
                               cwd=REPO, env={**os.environ, "COLUMNS": "200"}, preexec_fn=preexec)
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def ok(result: CliResult) -> CliResult:
    assert result.exit_code == 0, result.stdout + result.stderr
    return result


def index_of(path: Path) -> dict:
    return json.loads(path.read_text())


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def ms_tensors(ms, path: Path) -> dict[str, np.ndarray]:
    fmt = {} if path.suffix == ".ckpt" else {"format": "safetensors"}
    return {name: p.asnumpy() for name, p in ms.load_checkpoint(str(path), **fmt).items()}


def union_by_shard(ms, index: Path) -> dict[str, np.ndarray]:
    """Every shard loaded on its own by MindSpore, joined; each tensor in the shard the index names."""
    weight_map = index_of(index)["weight_map"]
    joined: dict[str, np.ndarray] = {}
    for shard in sorted(set(weight_map.values())):
        loaded = ms_tensors(ms, index.parent / shard)
        assert {name for name, file in weight_map.items() if file == shard} == set(loaded), shard
        assert not set(loaded) & set(joined)
        joined.update(loaded)
    return joined


def assert_same_tensors(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for name, array in want.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape, name
        assert got[name].tobytes() == array.tobytes(), name


# --------------------------------------------------------------------------- sharded in, sharded out


def test_sharded_model_becomes_sharded_mindspore_model_with_the_same_shards(ms, hf_model, tmp_path):
    out = tmp_path / "ms"
    out.mkdir()
    result = ok(run("torch2ms", hf_model, "-o", out / "model.safetensors.index.json", "--fold-weight-norm",
                    "--report", tmp_path / "report.json"))
    assert "4 shards" in result.stdout
    ok(run("torch2ms", hf_model, "-o", tmp_path / "single.safetensors", "--fold-weight-norm", "-q"))

    # MindSpore loads each shard on its own; together they are the single-file conversion, bit for bit.
    assert_same_tensors(union_by_shard(ms, out / "model.safetensors.index.json"),
                        ms_tensors(ms, tmp_path / "single.safetensors"))

    # The same boundaries: a tensor is in the shard its source was in (same number, new names).
    source_map, target_map = index_of(hf_model)["weight_map"], index_of(out / "model.safetensors.index.json")["weight_map"]
    report = json.loads((tmp_path / "report.json").read_text())
    for step in report["plan"]["steps"]:
        if step["target"] in target_map:
            source_shard = source_map[step["sources"][0]]
            assert target_map[step["target"]].replace("model-", "") == source_shard.replace("model-", ""), step
    assert {p.name for p in out.iterdir()} == {"model.safetensors.index.json",
                                                *(f"model-0000{n}-of-00004.safetensors" for n in range(1, 5))}

    # The index in the input's form: the same keys, totals of what the shards hold, transformers' text.
    index = index_of(out / "model.safetensors.index.json")
    assert set(index) == {"metadata", "weight_map"}
    assert set(index["metadata"]) == set(index_of(hf_model)["metadata"]) == {"total_size", "total_parameters"}
    single = ms_tensors(ms, tmp_path / "single.safetensors")
    assert index["metadata"]["total_size"] == sum(a.nbytes for a in single.values())
    assert index["metadata"]["total_parameters"] == sum(a.size for a in single.values())
    assert (out / "model.safetensors.index.json").read_text() == json.dumps(index, indent=2, sort_keys=True) + "\n"

    # One report: the plan and one verification merged from the four shards' (the single file's checks).
    assert report["output"]["shards"] == [str(p) for p in shard_paths(out / "model.safetensors.index.json", 4)]
    single_report = json.loads(ok(run("torch2ms", hf_model, "-o", tmp_path / "s2.safetensors", "--fold-weight-norm",
                                      "--json")).stdout)
    assert report["ok"] and report["verification"]["passed"]
    layers = sorted(layer["name"] for layer in report["verification"]["layers"])
    assert layers == sorted(layer["name"] for layer in single_report["verification"]["layers"]) and len(layers) == 4
    assert report["verification"]["tensors"]["compared"] == single_report["verification"]["tensors"]["compared"]


def test_jobs_do_not_change_a_byte(hf_model, tmp_path):
    for jobs in (1, 2, 3):
        (tmp_path / str(jobs)).mkdir()
        ok(run("torch2ms", hf_model, "-o", tmp_path / str(jobs) / "model.ckpt.index.json", "--jobs", jobs, "-q"))
    assert files(tmp_path / "1") == files(tmp_path / "2") == files(tmp_path / "3")
    assert len(files(tmp_path / "1")) == 5


def test_without_output_a_sharded_input_gives_a_sharded_output_beside_it(hf_model, tmp_path):
    for file in hf_model.parent.iterdir():
        shutil.copy(file, tmp_path)
    before = set(os.listdir(tmp_path))
    result = ok(run("torch2ms", tmp_path / "model.safetensors.index.json", "--fold-weight-norm"))
    made = set(os.listdir(tmp_path)) - before
    assert made == {"model.ms.safetensors.index.json", *(f"model.ms-0000{n}-of-00004.safetensors" for n in range(1, 5))}
    assert "model.ms.safetensors.index.json (ms-safetensors, 4 shards)" in result.stdout.replace("\n", "")


def test_max_shard_size_splits_anew(ms, hf_model, tmp_path):
    ok(run("torch2ms", hf_model, "-o", tmp_path / "single.ckpt", "--fold-weight-norm", "-q"))
    single = ms_tensors(ms, tmp_path / "single.ckpt")
    (tmp_path / "out").mkdir()
    ok(run("torch2ms", hf_model, "-o", tmp_path / "out" / "model.ckpt.index.json", "--fold-weight-norm",
           "--max-shard-size", "20KB", "-q"))
    index = index_of(tmp_path / "out" / "model.ckpt.index.json")
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 4 and shards[0] == f"model-00001-of-{len(shards):05d}.ckpt"
    union = {}
    for shard in shards:  # .ckpt shards, each under 20 KB of tensors unless one tensor is bigger
        loaded = ms_tensors(ms, tmp_path / "out" / shard)
        assert sum(a.nbytes for a in loaded.values()) <= 20_000 or len(loaded) == 1, shard
        union.update(loaded)
    assert_same_tensors(union, single)


def test_a_single_file_can_be_split(hf_model, tmp_path):
    ok(run("convert", hf_model, "-o", tmp_path / "model.pt"))
    result = ok(run("convert", tmp_path / "model.pt", "--format", "pt", "-o", tmp_path / "split.pt.index.json",
                    "--max-shard-size", "0.03MB"))
    assert "split.pt.index.json (pt, " in result.stdout
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    joined: dict[str, torch.Tensor] = {}
    for shard in sorted(set(index_of(tmp_path / "split.pt.index.json")["weight_map"].values())):
        joined.update(torch.load(tmp_path / shard, weights_only=True))
    assert set(joined) == set(state) and all(torch.equal(joined[k], v) for k, v in state.items())


def test_reverse_direction_and_transformers_loads_the_result(hf_model, tmp_path):
    """torch -> MindSpore shards -> torch shards: transformers loads them as its own model."""
    import transformers

    (tmp_path / "ms").mkdir()
    ok(run("torch2ms", hf_model, "-o", tmp_path / "ms" / "model.safetensors.index.json", "-q"))
    for fmt, name in (("safetensors", "model.safetensors.index.json"), ("pt", "pytorch_model.bin.index.json")):
        back = tmp_path / fmt
        back.mkdir()
        ok(run("ms2torch", tmp_path / "ms" / "model.safetensors.index.json", "-o", back / name, "--jobs", 2, "-q"))
        shutil.copy(hf_model.parent / "config.json", back)
        loaded = transformers.Wav2Vec2Model.from_pretrained(back, use_safetensors=fmt == "safetensors").state_dict()
        original = transformers.Wav2Vec2Model.from_pretrained(hf_model.parent).state_dict()
        assert set(loaded) == set(original)
        assert all(torch.equal(loaded[k], v) for k, v in original.items()), fmt
    # Our own reader joins either kind of shards, and `verify` proves the round trip.
    ok(run("verify", hf_model, tmp_path / "pt" / "pytorch_model.bin.index.json"))


def test_convert_keeps_the_shards_in_another_format(hf_model, tmp_path):
    from safetensors.torch import load_file

    ok(run("convert", hf_model, "-o", tmp_path / "model.pt.index.json"))
    weight_map = index_of(tmp_path / "model.pt.index.json")["weight_map"]
    assert weight_map == {k: v.replace(".safetensors", ".pt") for k, v in index_of(hf_model)["weight_map"].items()}
    for n in range(1, 5):
        ours = torch.load(tmp_path / f"model-0000{n}-of-00004.pt", weights_only=True)
        theirs = load_file(hf_model.parent / f"model-0000{n}-of-00004.safetensors")
        assert set(ours) == set(theirs) and all(torch.equal(ours[k], v) for k, v in theirs.items())


@pytest.mark.parametrize("weights", ["model.safetensors", "model.ckpt", "pytorch_model.bin"])
def test_shard_aliases_in_the_folder_and_a_symlinked_index_are_read(hf_model, tmp_path, weights):
    """As a model cache lays a snapshot out: the index is a symlink to a stored file elsewhere,
    and shards are symlinks to stored files in the same folder; the shards are the ones beside
    the index's name, and the verdict is the plain folder's."""
    stored = tmp_path / "stored"
    stored.mkdir()
    ok(run("convert", hf_model, "-o", stored / f"{weights}.index.json", "-q"))
    snap = tmp_path / "snap"
    snap.mkdir()
    for number, shard in enumerate(sorted(set(index_of(stored / f"{weights}.index.json")["weight_map"].values()))):
        (stored / shard).rename(snap / f"blob-{number}")
        (snap / shard).symlink_to(f"blob-{number}")
    (snap / f"{weights}.index.json").symlink_to(stored / f"{weights}.index.json")
    verdict = "0 conv layers match, 47" if weights == "pytorch_model.bin" else "3 conv layers match, 44"  # torch to torch: as is
    assert f"verified: {verdict} other tensors bit-identical" in ok(run("verify", hf_model, snap / f"{weights}.index.json")).stdout
    assert f"note: 4 shards joined from {weights}.index.json" in ok(run("inspect", snap / f"{weights}.index.json")).stdout


def test_every_tensor_of_every_shard_is_accounted_for_once(tmp_path):
    """Drops (BatchNorm's counter has no MindSpore counterpart) are listed by the shard that held
    them: the merged report is the single file's, check for check."""
    state = conv_state(32)
    for index in range(3):
        norm = torch.nn.BatchNorm1d(32)
        state.update({f"blocks.{index}.norm.{k}": v for k, v in norm.state_dict().items()})
    index = saved_by_hub(state, tmp_path / "hf", "45KB")
    assert len(set(index_of(index)["weight_map"].values())) == 3
    sharded = json.loads(ok(run("torch2ms", index, "-o", tmp_path / "hf" / "ms.safetensors.index.json", "--jobs", 2,
                                "--json")).stdout)["verification"]
    single = json.loads(ok(run("torch2ms", index, "-o", tmp_path / "single.safetensors", "--json")).stdout)["verification"]
    assert sharded["passed"] and len(sharded["dropped"]) == 3
    for key in ("dropped", "layers"):
        assert sorted(map(json.dumps, sharded[key])) == sorted(map(json.dumps, single[key])), key
    assert sharded["tensors"] == single["tensors"]


# --------------------------------------------------------------------------- failures leave nothing


def conv_state(big_channels: int) -> dict[str, torch.Tensor]:
    """Three blocks; the middle one's conv weight (big_channels x 64 x 5 float32) is the big one."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for index, channels in enumerate((32, big_channels, 32)):
        state[f"blocks.{index}.conv.weight"] = torch.randn(channels, 64, 5, generator=generator)
        state[f"blocks.{index}.conv.bias"] = torch.randn(channels, generator=generator)
    return state


def saved_by_hub(state: dict[str, torch.Tensor], folder: Path, max_shard_size: str) -> Path:
    from huggingface_hub import save_torch_state_dict

    folder.mkdir()
    save_torch_state_dict(state, folder, max_shard_size=max_shard_size)
    return folder / "model.safetensors.index.json"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_shard_that_cannot_be_written_leaves_nothing_and_names_shard_and_tensor(tmp_path):
    """A real write failure in one job (the file size limit, as a quota or a full disk would do):
    the other shards were written and verified, and are discarded too; no index."""
    index = saved_by_hub(conv_state(512), tmp_path / "hf", "45KB")  # the big conv (656 KB) in a shard of its own
    weight_map = index_of(index)["weight_map"]
    assert len(set(weight_map.values())) == 3
    failing = weight_map["blocks.1.conv.weight"]  # the same number in the output
    out = tmp_path / "out"
    out.mkdir()
    (out / "model-00001-of-00003.safetensors").write_bytes(b"previous shard")
    before = snapshot(tmp_path)

    def file_size_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    result = run("torch2ms", index, "-o", out / "model.safetensors.index.json", "--jobs", 2, "--force",
                 preexec=file_size_limit)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (f"error: shard {failing}, tensor 'blocks.1.conv.weight': "
                                     "write failed (File too large); nothing was changed")
    assert snapshot(tmp_path) == before  # the previous shard kept; no new shard, no index, no temporary file


def test_a_damaged_shard_leaves_nothing(hf_model, tmp_path):
    for file in hf_model.parent.iterdir():
        shutil.copy(file, tmp_path)
    shard = tmp_path / "model-00003-of-00004.safetensors"
    shard.write_bytes(shard.read_bytes()[:-10])  # truncated
    before = snapshot(tmp_path)
    result = run("torch2ms", tmp_path / "model.safetensors.index.json", "-o", tmp_path / "ms.safetensors.index.json")
    assert result.exit_code == 2
    assert str(shard) in result.stderr and "truncated" in result.stderr
    assert snapshot(tmp_path) == before


def test_a_shard_failing_verification_leaves_nothing_and_names_the_layer(tmp_path, monkeypatch):
    """A shard whose conv weight is damaged on its way to the disk (one value turned NaN as it is
    written; the shard jobs fork from this process, the damage with them): its layer fails the
    check, the run fails (exit 1), and the shards that passed are not kept either."""
    from convmigrate.entries import TensorEntry
    from convmigrate.formats import bytecopy

    written = bytecopy.TensorBytesWriter.write_entry

    def damaging(self, entry, *args, **kwargs):
        if entry.name == "blocks.1.conv.weight":
            values = entry.array().copy()
            values.reshape(-1)[123] = np.nan
            entry = TensorEntry.from_array(entry.name, values)
        return written(self, entry, *args, **kwargs)

    monkeypatch.setattr(bytecopy.TensorBytesWriter, "write_entry", damaging)
    state = conv_state(32)
    index = saved_by_hub(state, tmp_path / "hf", "45KB")
    before = snapshot(tmp_path)
    result = run("torch2ms", index, "-o", tmp_path / "hf" / "ms.safetensors.index.json", "--jobs", 2)
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "verification failed for blocks.1.conv.weight (layer blocks.1.conv); no output was kept" in result.stderr
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- output paths


@pytest.mark.parametrize("output, message", [
    # a name that is not an index, with --max-shard-size
    ("model.ckpt", r"--max-shard-size writes a sharded model; name its index: -o model\.ckpt\.index\.json"),
    # the input's own index
    ("{input}", "output is the input file"),
])
def test_output_paths_refused_before_anything_is_read(hf_model, tmp_path, output, message):
    import re

    target = str(hf_model) if output == "{input}" else str(tmp_path / output)
    result = run("torch2ms", hf_model, "-o", target, "--max-shard-size", "1MB")
    assert result.exit_code == 2 and re.search(message, result.stderr), result.stderr


def test_shard_names_that_are_the_input_shards_are_refused(hf_model, tmp_path):
    for file in hf_model.parent.iterdir():
        shutil.copy(file, tmp_path)
    before = snapshot(tmp_path)
    # other.safetensors.index.json is not the input, but "model-0000N-of-00004" shards would be.
    (tmp_path / "model.safetensors.index.json").rename(tmp_path / "in.safetensors.index.json")
    result = run("torch2ms", tmp_path / "in.safetensors.index.json", "-o", tmp_path / "model.safetensors.index.json",
                 "--force")
    assert result.exit_code == 2
    assert "model-00001-of-00004.safetensors: output is the input file" in result.stderr
    (tmp_path / "in.safetensors.index.json").rename(tmp_path / "model.safetensors.index.json")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("occupant", ["directory", "fifo", "existing"])
def test_a_shard_path_that_is_taken_is_refused(hf_model, tmp_path, occupant):
    shard = tmp_path / "model-00002-of-00004.ckpt"
    if occupant == "directory":
        shard.mkdir()
    elif occupant == "fifo":
        os.mkfifo(shard)
    else:
        shard.write_bytes(b"previous")
    result = run("torch2ms", hf_model, "-o", tmp_path / "model.ckpt.index.json")
    assert result.exit_code == 2
    expected = {"directory": "is a directory", "fifo": "is a FIFO", "existing": "already exists; pass --force"}[occupant]
    assert f"{shard}: " in result.stderr and expected in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [shard.name]


# --------------------------------------------------------------------------- the rules, as tables


@pytest.mark.parametrize("text, size", [
    ("5GB", 5 * 10**9), ("500MB", 500 * 10**6), ("2GiB", 2 * 2**30), ("100KB", 100_000), ("1.5MB", 1_500_000),
    ("0.03MB", 30_000), ("1TiB", 2**40), ("4096", 4096), (123, 123),
])
def test_sizes_are_read_as_transformers_spells_them(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["5Gb", "5gb", "5 GX", "GB", "-1GB", "0", ""])
def test_sizes_that_are_not_sizes_are_usage_errors(text):
    from convmigrate.errors import UsageError

    with pytest.raises(UsageError, match="--max-shard-size"):
        parse_size(text)


def test_split_is_huggingface_hubs():
    from huggingface_hub.serialization import split_torch_state_dict_into_shards

    sizes = [6, 6, 2, 6, 2, 2, 11, 1, 10, 1]
    state = {f"t{i:02d}": torch.zeros(n, dtype=torch.uint8) for i, n in enumerate(sizes)}
    theirs = split_torch_state_dict_into_shards(state, max_shard_size=10).filename_to_tensors
    ours = split_by_size([(name, t.nbytes) for name, t in state.items()], 10)
    assert [sorted(names) for names in theirs.values()] == [sorted(group) for group in ours]


def test_created_tensors_and_values_go_with_the_tensor_before_them():
    items = [Item("a", 4, 1, True, "s-2"), Item("n", 8, 1, True, None), Item("b", 4, 1, True, "s-1"),
             Item("v", 0, 0, False, None)]
    assert [[i.name for i in group] for group in assign(items, None)] == [["b", "v"], ["a", "n"]]
