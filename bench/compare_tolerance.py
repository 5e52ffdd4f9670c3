"""How far faithful ports of real audio models drift between PyTorch and MindSpore on CPU: the
measurement behind `compare`'s default tolerance.

    python bench/compare_tolerance.py           # base-size models, several input lengths and seeds
    python bench/compare_tolerance.py --quick   # the small test configs only

Each row converts a transformers model's weights (random init from a fixed seed, with weights
scaled up where the init makes the output vanish) through `convmigrate compare` against the
MindSpore ports in tests/audio_ports.py, with float32 inputs on CPU, and prints the largest
error relative to each tensor's largest magnitude (the quantity the tolerance bounds), over the
outputs and over every layer. A faithful port is only rounding apart; the wrong ports of the
tests are 1e-3 to 1 apart.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.chdir(Path(__file__).resolve().parents[1])  # the factories are tests.<module>:<callable>

import torch  # noqa: E402

from convmigrate.compare import CompareRequest, run_compare  # noqa: E402

# (label, torch factory, MindSpore factory, input shapes, weight scale)
CASES = {
    "quick": [
        ("wav2vec2 small, 0.25 s", "wav2vec2_small", "wav2vec2_small", [(2, 4000)], 1.0),
        ("hifigan small, 20 frames", "hifigan_small", "hifigan_small", [(1, 20, 8)], 10.0),
    ],
    "full": [
        ("wav2vec2 base, 1 s", "wav2vec2_base", "wav2vec2_base", [(1, 16000)], 1.0),
        ("wav2vec2 base, 4 s", "wav2vec2_base", "wav2vec2_base", [(1, 64000)], 1.0),
        # x4: a waveform peaking at ~0.6 (x6 saturates the final tanh at +-1, x2 peaks at ~2e-3)
        ("hifigan base, 32 frames", "hifigan_base", "hifigan_base", [(1, 32, 80)], 4.0),
        ("hifigan base, 100 frames", "hifigan_base", "hifigan_base", [(1, 100, 80)], 4.0),
    ],
}


def measure(label: str, torch_factory: str, ms_factory: str, shapes: list[tuple[int, ...]], scale: float,
            seeds: list[int], folder: Path) -> list[str]:
    from tests import audio_models

    model = getattr(audio_models, torch_factory)()
    if scale != 1.0:  # HiFi-GAN's init (normal, std 0.01) makes a waveform of ~1e-6: scale it to audible
        with torch.no_grad():
            for name, tensor in model.state_dict().items():
                if name.endswith("weight"):
                    tensor.mul_(scale)
    weights = folder / f"{torch_factory}.pt"
    torch.save(model.state_dict(), weights)
    rows = []
    for seed in seeds:
        result = run_compare(CompareRequest(
            weights, f"tests.audio_models:{torch_factory}", f"tests.audio_ports:{ms_factory}",
            inputs=[",".join(map(str, s)) for s in shapes], seed=seed, rtol=1.0, atol=0.0,
        ))
        assert result.loaded, [load.to_json() for load in result.loads]
        outputs = max(o.difference.max_rel for o in result.outputs)
        paired = [layer for layer in result.layers if layer.difference is not None]
        worst = max(paired, key=lambda layer: layer.difference.max_rel)
        rows.append(f"| {label} | {seed} | {outputs:.2e} | {worst.difference.max_rel:.2e} ({worst.label}) | {len(paired)} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    import mindspore

    print(f"torch {torch.__version__}, mindspore {mindspore.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print("| model, input | seed | outputs: max rel error | layers: max rel error (layer) | layer calls |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES["quick" if args.quick else "full"]:
            for row in measure(*case, seeds=list(range(args.seeds)), folder=Path(tmp)):
                print(row, flush=True)


if __name__ == "__main__":
    main()
