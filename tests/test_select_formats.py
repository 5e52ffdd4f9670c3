"""`--select` where a file holds one flat state dict: a usage error that says so, never ignored."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file


@pytest.fixture
def sharded(tmp_path):
    """Two safetensors shards and the index transformers writes beside them."""
    weight_map = {}
    for n, name in enumerate(["conv.weight", "conv.bias"], start=1):
        shard = f"model-0000{n}-of-00002.safetensors"
        save_file({name: np.ones((2, 2, 3) if name.endswith("weight") else (2,), np.float32)}, tmp_path / shard)
        weight_map[name] = shard
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 56}, "weight_map": weight_map}))
    return index


@pytest.mark.parametrize("command", ["inspect", "convert"])
def test_select_on_a_sharded_model_is_a_usage_error(cli, sharded, tmp_path, command):
    args = [command, sharded, "--select", "ema"] + (["-o", tmp_path / "out.ckpt"] if command == "convert" else [])
    result = cli(*args)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: --select ema: ") and "sharded model" in result.stderr
    assert not (tmp_path / "out.ckpt").exists()


def test_select_on_a_safetensors_file_is_a_usage_error(cli, tmp_path):
    save_file({"conv.weight": np.ones((2, 2, 3), np.float32)}, tmp_path / "m.safetensors")
    result = cli("inspect", tmp_path / "m.safetensors", "--select", "ema")
    assert result.exit_code == 2 and "holds one flat state dict" in result.stderr
