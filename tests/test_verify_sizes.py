"""Verification never allocates from a claimed size (issue 12, case 4).

The corpus (tests/corpus/cases_verify.py) runs its zero-element files through every command;
here each is converted and then verified against its own conversion, the pairing that runs
every check, and a layers JSON claiming a huge dilation, stride or group count is
given to `verify --layers`. Each command runs in its own process under the corpus's memory cap.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from convmigrate.entries import TensorEntry
from convmigrate.formats import write_checkpoint
from convmigrate.vocab import Format
from tests.corpus import CORPUS, MAX_RSS_MIB
from tests.test_corpus import run_capped

ZERO_ELEMENT_CASES = sorted(case_id for case_id, case in CORPUS.items() if case.item == "12.4")


def test_a_zero_element_layer_verifies_in_bounded_memory(tmp_path: Path) -> None:
    """Every 12.4 case of the corpus, converted and verified (one driver process for all: each
    command still runs in its own capped child)."""
    commands, cases = [], []
    for index, case_id in enumerate(ZERO_ELEMENT_CASES):
        folder = tmp_path / str(index)
        folder.mkdir()
        source = CORPUS[case_id].build(folder)
        command, suffix = ("ms2torch", ".pt") if source.suffix == ".ckpt" else ("torch2ms", ".ckpt")
        converted = folder / f"converted{suffix}"
        commands += [[command, str(source), "-o", str(converted), "--fold-weight-norm"],
                     ["verify", str(source), str(converted)]]
        cases += [case_id, case_id]
    results = run_capped(commands, timeout=30)
    for case_id, result in zip(cases, results):
        shown = f"{case_id}: {result['args']}: exit {result['exit_code']}\n{result['stdout']}{result['stderr']}"
        assert result["exit_code"] == 0, shown
        assert result["max_rss_mib"] <= MAX_RSS_MIB, f"{shown}\npeak RSS {result['max_rss_mib']:.0f} MiB"
        if result["args"][0] == "verify":
            assert re.search(r"verified: \d+ conv layers match", result["stdout"]), shown


HOSTILE_LAYERS = {
    # each claims an input of ~2**40 samples (or 2**30 channels) for a conv of 24 weights
    "dilation": ({"dilation": 2**40}, 2, r"need arrays of [\d,]+ values to check; at most"),
    "stride": ({"stride": 2**40}, 1, r"verification failed for conv\.weight \(layer conv\)"),
    "groups": ({"in_channels": 2**30, "out_channels": 2**30, "groups": 2**30}, 2, r"need arrays of [\d,]+ values"),
}


def test_a_layers_json_that_claims_a_huge_conv_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((4, 2, 3)).astype(np.float32)
    write_checkpoint(tmp_path / "small.pt", [TensorEntry.from_array("conv.weight", weight)], Format.TORCH, durable=False)
    converted = TensorEntry.from_array("conv.weight", weight).with_shape((4, 2, 1, 3))
    write_checkpoint(tmp_path / "small.ckpt", [converted], Format.CKPT, durable=False)
    commands = []
    for claim, (changes, _code, _message) in HOSTILE_LAYERS.items():
        torch_kwargs = {"in_channels": 2, "out_channels": 4, "kernel_size": 3, "bias": False, **changes}
        layers = tmp_path / f"{claim}.layers.json"
        layers.write_text(json.dumps({"layers": [{"name": "conv", "kind": "Conv1d", "source": "torch", "torch": torch_kwargs}]}))
        commands.append(["verify", str(tmp_path / "small.pt"), str(tmp_path / "small.ckpt"), "--layers", str(layers)])
    for (claim, (_changes, exit_code, message)), result in zip(HOSTILE_LAYERS.items(), run_capped(commands, timeout=30)):
        shown = f"{claim}: exit {result['exit_code']}\n{result['stdout']}{result['stderr']}"
        assert result["exit_code"] == exit_code, shown
        error = result["stderr"].strip()
        assert "\n" not in error and re.search(message, error), shown
        assert result["max_rss_mib"] <= MAX_RSS_MIB, f"{shown}\npeak RSS {result['max_rss_mib']:.0f} MiB"
