"""How fast convmigrate.numerics is next to PyTorch's CPU kernels, on real layer shapes.

    python bench/bench_numerics.py            # every shape, 7 rounds
    python bench/bench_numerics.py --quick    # a few shapes, 3 rounds
    python bench/bench_numerics.py --only pos # shapes whose name contains "pos"
    python bench/bench_numerics.py --threads 1  # both libraries on one thread (steadier when
                                                # other work shares the cores)

Each round times PyTorch (torch.nn.functional.conv1d / conv_transpose1d, default threads) and
convmigrate once each, alternating which goes first; the table shows the medians and their
ratio, then the geometric mean ratio and the machine. Batch 1, float32. The machine is shared
and noisy, so only ratios measured in the same run mean anything.

Before each timed call the script sleeps --pause seconds: both libraries' idle worker threads
spin for a while after a call (OpenBLAS ~0.1 s, OpenMP less), and without the pause whichever
runs second shares the cores with the other's spinning threads.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# BLAS reads its thread count when numpy loads, so --threads is applied before the imports.
_THREADS = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv[:-1] else None
if _THREADS:
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = _THREADS

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from convmigrate.numerics import torch_conv1d, torch_conv_transpose1d


@dataclass(frozen=True)
class Shape:
    name: str
    c_in: int
    c_out: int
    taps: int
    length: int
    stride: int = 1
    padding: int | str = 0
    dilation: int = 1
    groups: int = 1
    transposed: bool = False
    quick: bool = False

    @property
    def hyper(self) -> dict:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation, "groups": self.groups}


def wav2vec2_feature_encoder() -> list[Shape]:
    """wav2vec2's 7 conv layers on 1 s of 16 kHz audio (512 channels, strides 5,2,2,2,2,2,2)."""
    shapes, length = [], 16000
    for i, (taps, stride) in enumerate([(10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2)]):
        shapes.append(Shape(f"wav2vec2.fe{i} K{taps} s{stride}", 1 if i == 0 else 512, 512, taps, length,
                            stride=stride, quick=i in (0, 1)))
        length = (length - taps) // stride + 1
    return shapes


SHAPES = [
    Shape("whisper.conv1 80->384 K3", 80, 384, 3, 3000, padding=1, quick=True),
    Shape("whisper.conv2 384 K3 s2", 384, 384, 3, 3000, stride=2, padding=1),
    *wav2vec2_feature_encoder(),
    Shape("wav2vec2.pos K128 g16 L49", 768, 768, 128, 49, padding=64, groups=16),
    Shape("wav2vec2.pos K128 g16 L500", 768, 768, 128, 500, padding=64, groups=16, quick=True),
    Shape("conformer.dw C256 K31", 256, 256, 31, 500, padding=15, groups=256, quick=True),
    Shape("hifigan.rb C512 K3 d1", 512, 512, 3, 8000, padding="same"),
    Shape("hifigan.rb C256 K7 d3", 256, 256, 7, 8000, padding="same", dilation=3),
    Shape("hifigan.rb C256 K11 d5", 256, 256, 11, 8000, padding="same", dilation=5, quick=True),
    Shape("hifigan.up 512->256 K16 s8", 512, 256, 16, 1000, stride=8, padding=4, transposed=True, quick=True),
]


def calls(shape: Shape):
    """(torch call, convmigrate call) on the same random float32 tensors."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, shape.c_in, shape.length), dtype=np.float32)
    if shape.transposed:
        w = rng.standard_normal((shape.c_in, shape.c_out // shape.groups, shape.taps), dtype=np.float32)
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        return (lambda: F.conv_transpose1d(xt, wt, **shape.hyper)), (
            lambda: torch_conv_transpose1d(x, w, **shape.hyper)
        )
    w = rng.standard_normal((shape.c_out, shape.c_in // shape.groups, shape.taps), dtype=np.float32)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    return (lambda: F.conv1d(xt, wt, **shape.hyper)), (lambda: torch_conv1d(x, w, **shape.hyper))


def seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def measure(shape: Shape, rounds: int, pause: float) -> tuple[list[float], list[float]]:
    """Seconds of (torch, convmigrate) in `rounds` alternating rounds, after a warm-up."""
    torch_call, ours_call = calls(shape)
    with torch.no_grad():
        torch_call(), ours_call()
        torch_times, ours_times = [], []
        for r in range(rounds):
            order = [(torch_call, torch_times), (ours_call, ours_times)]
            for call, times in order if r % 2 == 0 else order[::-1]:
                time.sleep(pause)
                times.append(seconds(call))
    return torch_times, ours_times


def blas_description() -> str:
    """Which BLAS numpy uses, and its threads if threadpoolctl happens to be installed."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        text = f"{blas.get('name')} {blas.get('version', '')}".strip()
    except (TypeError, KeyError):  # older numpy: no dict mode
        text = "unknown"
    try:
        import threadpoolctl

        pools = threadpoolctl.threadpool_info()
        text += "; " + ", ".join(f"{p['internal_api']} {p['num_threads']} threads" for p in pools)
    except ImportError:
        pass
    env = [f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
           if k in os.environ]
    return text + (f" ({', '.join(env)})" if env else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few shapes, 3 rounds")
    parser.add_argument("--rounds", type=int, help="timed rounds per shape (default 7, 3 with --quick)")
    parser.add_argument("--only", help="run only shapes whose name contains this text")
    parser.add_argument("--pause", type=float, default=0.15, help="seconds to sleep before each timed call")
    parser.add_argument("--threads", type=int, help="threads for both torch and numpy's BLAS (default: theirs)")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 7)
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = [s for s in SHAPES if (s.quick or not args.quick) and (not args.only or args.only in s.name)]

    load_before = os.getloadavg()[0]
    # ratio: of the medians. best ratio: of the fastest rounds, less sensitive to other load.
    print(f"{'shape':30} {'torch ms':>9} {'convmigrate ms':>15} {'ratio':>6} {'best ratio':>11}")
    ratios, best_ratios = [], []
    for shape in shapes:
        torch_times, ours_times = measure(shape, rounds, args.pause)
        torch_s, ours_s = statistics.median(torch_times), statistics.median(ours_times)
        ratios.append(ours_s / torch_s)
        best_ratios.append(min(ours_times) / min(torch_times))
        print(f"{shape.name:30} {torch_s * 1e3:9.2f} {ours_s * 1e3:15.2f} {ratios[-1]:6.2f} {best_ratios[-1]:11.2f}",
              flush=True)
    print(f"{'geometric mean ratio':30} {'':9} {'':15} {geomean(ratios):6.2f} {geomean(best_ratios):11.2f}")
    print(
        f"\nmachine: {cpu_model()}, {os.cpu_count()} cores; numpy {np.__version__} ({blas_description()}); "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; python {platform.python_version()}; "
        f"{rounds} rounds, medians; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )


def geomean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values))


if __name__ == "__main__":
    main()
