"""How fast convmigrate.numerics is next to PyTorch's CPU kernels, on real layer shapes.

    python bench/bench_numerics.py              # every shape, both thread settings, 7 rounds
    python bench/bench_numerics.py --quick      # a few shapes, 3 rounds
    python bench/bench_numerics.py --only dac   # shapes whose name contains "dac"
    python bench/bench_numerics.py --threads 2  # one thread setting only (2 threads each)
    python bench/bench_numerics.py --threads 1 --cpu-time  # CPU time: ratios that hold on a busy machine
    python bench/bench_numerics.py --calibrate  # fit the cost model's prices (convmigrate/numerics/_plan.py)
    python bench/bench_numerics.py --calibrate --threads 2  # the prices at two threads

The shapes are layers of real speech, audio and time-series models (each row is named after its
architecture and layer), at batch sizes 1 to 8 and lengths up to 44.1k samples: dense, strided,
dilated, grouped and depthwise convs with 1 to 87 taps, transposed convs, PyTorch's and
MindSpore's semantics. Each round times PyTorch (torch.nn.functional.conv1d /
conv_transpose1d) and convmigrate once each, alternating which goes first; the table shows the
medians, their ratio, and the ratio of each side's fastest round (less sensitive to other load
on a shared machine), then the geometric means, the worst shapes and the machine. float32.

Two thread settings, each in its own process (BLAS reads its thread count when numpy loads):

- "single call": torch and numpy's BLAS with 2 threads each, one call at a time. What a user
  of convmigrate.numerics sees, and the issue's goal (geometric mean <= 1.2x, no shape > 1.5x).
- "verification": 1 thread each. The CLI sets OPENBLAS_NUM_THREADS=1 and verification runs
  its checks on two threads, so each conv there runs on one core.

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
import subprocess
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
from convmigrate.numerics import (
    _plan,
    ms_conv1d,
    ms_conv1d_transpose,
    torch_conv1d,
    torch_conv_transpose1d,
)
from convmigrate.numerics._shape import ConvShape
from convmigrate.numerics.padding import mindspore_same_padding, torch_same_padding

GOAL_GEOMEAN, GOAL_WORST = 1.2, 1.5  # issue 16, single call


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
    batch: int = 1
    transposed: bool = False
    mindspore: bool = False  # run ms_conv1d(_transpose) with pad_mode="same" instead of torch_*
    quick: bool = False

    @property
    def hyper(self) -> dict:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation, "groups": self.groups}


def wav2vec2_feature_encoder(batch: int = 1) -> list[Shape]:
    """wav2vec2's / HuBERT's 7 conv layers on 1 s of 16 kHz audio (512 channels, strides 5,2,2,2,2,2,2)."""
    shapes, length = [], 16000
    tag = f" b{batch}" if batch > 1 else ""
    for i, (taps, stride) in enumerate([(10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2)]):
        if batch == 1 or i < 2:
            shapes.append(Shape(f"wav2vec2.fe{i} K{taps} s{stride}{tag}", 1 if i == 0 else 512, 512, taps, length,
                                stride=stride, batch=batch, quick=i == 1 and batch == 1))
        length = (length - taps) // stride + 1
    return shapes


def same(taps: int, dilation: int = 1) -> int:
    return (taps - 1) * dilation // 2


SHAPES = [
    # Whisper (80 mel frames at 100 Hz, 30 s): base and large-v3 encoder stems
    Shape("whisper.conv1 80->384 K3", 80, 384, 3, 3000, padding=1, quick=True),
    Shape("whisper.conv2 384 K3 s2", 384, 384, 3, 3000, stride=2, padding=1),
    Shape("whisper-large.conv1 128->1280 K3", 128, 1280, 3, 3000, padding=1),
    Shape("whisper-large.conv2 1280 K3 s2", 1280, 1280, 3, 3000, stride=2, padding=1),
    # wav2vec2 / HuBERT: feature encoder (1 s at 16 kHz), positional conv (K128, 16 groups)
    *wav2vec2_feature_encoder(),
    *wav2vec2_feature_encoder(batch=4),
    Shape("wav2vec2.pos K128 g16 L49", 768, 768, 128, 49, padding=64, groups=16),
    Shape("wav2vec2.pos K128 g16 L500", 768, 768, 128, 500, padding=64, groups=16, quick=True),
    Shape("wav2vec2-large.pos K128 g16 L250 b4", 1024, 1024, 128, 250, padding=64, groups=16, batch=4),
    # Conformer conv module (depthwise K31 after 4x subsampling) and its pointwise GLU conv
    Shape("conformer.dw C256 K31", 256, 256, 31, 500, padding=15, groups=256),
    Shape("conformer.dw C256 K31 L250 b8", 256, 256, 31, 250, padding=15, groups=256, batch=8, quick=True),
    Shape("conformer.dw C512 K31 L1500", 512, 512, 31, 1500, padding=15, groups=512),
    Shape("conformer.pw 256->512 K1 L250 b8", 256, 512, 1, 250, batch=8),
    # QuartzNet / Citrinet: depthwise-separable blocks with long kernels (K33..K87)
    Shape("quartznet.dw C256 K33 L800 b4", 256, 256, 33, 800, padding=16, groups=256, batch=4),
    Shape("quartznet.dw C512 K87 L800", 512, 512, 87, 800, padding=43, groups=512),
    # Depthwise convs straight on 16 kHz waveforms (the issue's long-sequence case)
    Shape("wave.dw C64 K15 L16k", 64, 64, 15, 16000, padding=7, groups=64, quick=True),
    Shape("wave.dw C128 K15 L16k b2", 128, 128, 15, 16000, padding=7, groups=128, batch=2),
    # Conv-TasNet (8 kHz, 4 s): encoder, TCN depthwise dilated conv, decoder
    Shape("convtasnet.enc 1->512 K16 s8 L32k", 1, 512, 16, 32000, stride=8),
    Shape("convtasnet.dw C512 K3 d64 L4k b2", 512, 512, 3, 3999, padding=64, dilation=64, groups=512, batch=2),
    Shape("convtasnet.dec 512->1 K16 s8 L4k", 512, 1, 16, 3999, stride=8, transposed=True),
    # ECAPA-TDNN (3 s at 100 Hz): stem, Res2Net dilated branches (C=1024 -> 128 per branch), MFA
    Shape("ecapa.conv1 80->512 K5 b4", 80, 512, 5, 300, padding=2, batch=4),
    Shape("ecapa.res2 C64 K3 d2 b4", 64, 64, 3, 300, padding=2, dilation=2, batch=4),
    Shape("ecapa.res2 C128 K3 d4 b8", 128, 128, 3, 300, padding=4, dilation=4, batch=8, quick=True),
    Shape("ecapa.mfa 1536 K1 b4", 1536, 1536, 1, 300, batch=4),
    # TCN (Bai et al. 2018): sequential MNIST and polyphonic music, dilated causal convs
    Shape("tcn.smnist C25 K7 d64 L784 b8", 25, 25, 7, 784, padding=6 * 64, dilation=64, batch=8),
    Shape("tcn.music C150 K5 d8 L1000 b4", 150, 150, 5, 1000, padding=4 * 8, dilation=8, batch=4),
    # InceptionTime (time-series classification): 32-channel branches with K39/K19
    Shape("inceptiontime C32 K39 L512 b8", 32, 32, 39, 512, padding=19, batch=8),
    Shape("inceptiontime C32 K19 L512 b8", 32, 32, 19, 512, padding=9, batch=8),
    # Tacotron 2 postnet (5 x K5, 512 channels)
    Shape("tacotron2.postnet 512 K5 L800 b2", 512, 512, 5, 800, padding=2, batch=2),
    # HiFi-GAN V1 (22.05 kHz, 1 s): resblocks at each stage, upsamplers 8,8,2,2, conv_post
    Shape("hifigan.rb C512 K3 d1", 512, 512, 3, 8000, padding="same"),
    Shape("hifigan.rb C256 K7 d3", 256, 256, 7, 8000, padding="same", dilation=3),
    Shape("hifigan.rb C256 K11 d5", 256, 256, 11, 8000, padding="same", dilation=5, quick=True),
    Shape("hifigan.rb C64 K11 d5 L11k", 64, 64, 11, 11008, padding=same(11, 5), dilation=5),
    Shape("hifigan.rb C32 K7 d3 L22k", 32, 32, 7, 22016, padding=same(7, 3), dilation=3),
    Shape("hifigan.up 512->256 K16 s8", 512, 256, 16, 1000, stride=8, padding=4, transposed=True, quick=True),
    Shape("hifigan.up 128->64 K4 s2 L5.5k", 128, 64, 4, 5504, stride=2, padding=1, transposed=True),
    Shape("hifigan.up 64->32 K4 s2 L11k b2", 64, 32, 4, 11008, stride=2, padding=1, transposed=True, batch=2),
    Shape("hifigan.post 32->1 K7 L22k", 32, 1, 7, 22016, padding=3),
    # EnCodec (SEANet, 24 kHz, 1 s): stem, residual unit, strided downsamplers, decoder upsamplers
    Shape("encodec.conv0 1->32 K7 L24k", 1, 32, 7, 24000, padding=3),
    Shape("encodec.res 32->16 K3 L24k b2", 32, 16, 3, 24000, padding=1, batch=2),
    Shape("encodec.down 32->64 K4 s2 L24k", 32, 64, 4, 24000, stride=2),
    Shape("encodec.down 128->256 K10 s5 L3k", 128, 256, 10, 3000, stride=5),
    Shape("encodec.up 256->128 K10 s5 L600", 256, 128, 10, 600, stride=5, transposed=True),
    Shape("encodec.up 64->32 K4 s2 L12k", 64, 32, 4, 12000, stride=2, transposed=True),
    # DAC (44.1 kHz, 1 s): dilated residual units (K7, d1/3/9) at full rate, first downsampler
    Shape("dac.res C64 K7 d9 L44.1k", 64, 64, 7, 44100, padding=27, dilation=9),
    Shape("dac.res C64 K7 d1 L44.1k", 64, 64, 7, 44100, padding=3),
    Shape("dac.down 64->128 K4 s2 L44.1k", 64, 128, 4, 44100, stride=2, padding=1),
    # Demucs v2 (44.1 kHz stereo, 1 s): encoder K8 s4, GLU 1x1, decoder transposed K8 s4
    Shape("demucs.enc0 2->64 K8 s4 L44.1k", 2, 64, 8, 44100, stride=4),
    Shape("demucs.enc1 64->128 K8 s4 L11k", 64, 128, 8, 11024, stride=4),
    Shape("demucs.glu 64->128 K1 L11k b4", 64, 128, 1, 11024, batch=4),
    Shape("demucs.dec1 128->64 K8 s4 L2.7k", 128, 64, 8, 2755, stride=4, transposed=True),
    # WaveNet (16 kHz, 1 s): gated dilated convs (K2, residual 64 -> gate 128), skip 1x1
    Shape("wavenet.gate 64->128 K2 d256 L16k", 64, 128, 2, 16000, padding=256, dilation=256, quick=True),
    Shape("wavenet.gate 64->128 K2 d1 L16k b4", 64, 128, 2, 16000, padding=1, batch=4),
    Shape("wavenet.skip 64->256 K1 L16k", 64, 256, 1, 16000),
    # MindSpore semantics (pad_mode="same", TensorFlow-style padding, strides allowed)
    Shape("ms: conformer.dw C256 K31 b4", 256, 256, 31, 500, groups=256, batch=4, mindspore=True),
    Shape("ms: encodec.down 64->128 K8 s4 L12k", 64, 128, 8, 12000, stride=4, mindspore=True),
    Shape("ms: hifigan.up 256->128 K16 s8 L688", 256, 128, 16, 688, stride=8, transposed=True, mindspore=True),
]


def calls(shape: Shape):
    """(torch call, convmigrate call) on the same random float32 tensors."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((shape.batch, shape.c_in, shape.length), dtype=np.float32)
    w_shape = (shape.c_in, shape.c_out // shape.groups) if shape.transposed else (shape.c_out, shape.c_in // shape.groups)
    w = rng.standard_normal((*w_shape, shape.taps), dtype=np.float32)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    if shape.mindspore:
        return _mindspore_calls(shape, x, w, xt, wt)
    if shape.transposed:
        return (lambda: F.conv_transpose1d(xt, wt, **shape.hyper)), (lambda: torch_conv_transpose1d(x, w, **shape.hyper))
    return (lambda: F.conv1d(xt, wt, **shape.hyper)), (lambda: torch_conv1d(x, w, **shape.hyper))


def _mindspore_calls(shape: Shape, x, w, xt, wt):
    """MindSpore's pad_mode="same" next to the torch calls that compute the same output."""
    hyper = {"stride": shape.stride, "pad_mode": "same", "dilation": shape.dilation, "group": shape.groups}
    w4 = w[:, :, None, :]
    if shape.transposed:
        span = (shape.taps - 1) * shape.dilation + 1
        start, length = max(span - shape.stride, 0) // 2, shape.length * shape.stride
        torch_hyper = {"stride": shape.stride, "dilation": shape.dilation, "groups": shape.groups}
        return (lambda: F.conv_transpose1d(xt, wt, **torch_hyper)[..., start : start + length]), (
            lambda: ms_conv1d_transpose(x, w4, **hyper)
        )
    left, right = mindspore_same_padding(shape.length, shape.taps, shape.stride, shape.dilation)
    torch_hyper = {"stride": shape.stride, "dilation": shape.dilation, "groups": shape.groups}
    return (lambda: F.conv1d(F.pad(xt, (left, right)), wt, **torch_hyper)), (lambda: ms_conv1d(x, w4, **hyper))


def pads(shape: Shape) -> tuple[int, int]:
    """(left, right) zeros a forward shape's padding adds."""
    if shape.mindspore:
        return mindspore_same_padding(shape.length, shape.taps, shape.stride, shape.dilation)
    if shape.padding == "same":
        return torch_same_padding(shape.taps, shape.dilation)
    return int(shape.padding), int(shape.padding)


def kernel(shape: Shape) -> str:
    """The strategy convmigrate.numerics picks for this layer (_plan.choose), or col2im."""
    if shape.transposed:
        return "col2im"
    left, right = pads(shape)
    conv = ConvShape(shape.batch, shape.c_in, shape.c_out, shape.groups, shape.taps, shape.stride, shape.dilation,
                     shape.length + left + right)
    return _plan.choose(conv).name


# Wall time by default. --cpu-time (one thread only) times the calling thread's CPU time instead:
# with one thread torch, BLAS and convmigrate all compute on the calling thread, so the ratio
# holds on a machine that other work keeps busy (wall time there charges each side for the
# time it waited for a core; torch's OpenMP threads wait at every barrier).
CLOCK = time.perf_counter


def seconds(call) -> float:
    start = CLOCK()
    call()
    return CLOCK() - start


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
    """Which BLAS numpy uses and the thread settings in the environment."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        text = f"{blas.get('name')} {blas.get('version', '')}".strip()
    except (TypeError, KeyError):  # older numpy: no dict mode
        text = "unknown"
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


def geomean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values))


def run_table(shapes: list[Shape], rounds: int, pause: float, title: str) -> None:
    """Time every shape in this process (one thread setting) and print its table."""
    load_before = os.getloadavg()
    print(f"\n## {title}: torch {torch.get_num_threads()} threads, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'default')}, "
          f"{'CPU time of the calling thread' if CLOCK is time.thread_time else 'wall time'}\n")
    print(f"| {'shape':38} | {'torch ms':>9} | {'ours ms':>9} | {'ratio':>6} | {'best ratio':>10} | kernel |")
    print(f"|{'-' * 40}|{'-' * 11}|{'-' * 11}|{'-' * 8}|{'-' * 12}|---|")
    ratios, best_ratios = [], []
    for shape in shapes:
        torch_times, ours_times = measure(shape, rounds, pause)
        torch_s, ours_s = statistics.median(torch_times), statistics.median(ours_times)
        ratios.append(ours_s / torch_s)
        best_ratios.append(min(ours_times) / min(torch_times))
        print(f"| {shape.name:38} | {torch_s * 1e3:9.2f} | {ours_s * 1e3:9.2f} | {ratios[-1]:6.2f} | "
              f"{best_ratios[-1]:10.2f} | {kernel(shape)} |", flush=True)
    print(f"| {'**geometric mean**':38} | {'':9} | {'':9} | {geomean(ratios):6.2f} | {geomean(best_ratios):10.2f} | |")
    worst = max(range(len(shapes)), key=ratios.__getitem__)
    worst_best = max(range(len(shapes)), key=best_ratios.__getitem__)
    print(f"\nworst median ratio {ratios[worst]:.2f} ({shapes[worst].name}); worst best-round ratio "
          f"{best_ratios[worst_best]:.2f} ({shapes[worst_best].name}); shapes above {GOAL_WORST}x: "
          f"{sum(r > GOAL_WORST for r in ratios)} by median, {sum(r > GOAL_WORST for r in best_ratios)} by best round")
    print(f"goal (issue 16, single call): geometric mean <= {GOAL_GEOMEAN}, no shape above {GOAL_WORST}")
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores; numpy {np.__version__} ({blas_description()}); "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; python {platform.python_version()}; "
        f"{rounds} rounds, medians; load average (1/5/15 min) {'/'.join(f'{v:.2f}' for v in load_before)} before, "
        f"{'/'.join(f'{v:.2f}' for v in os.getloadavg())} after"
    )


SETTINGS = {"single": ("single call", 2), "verify": ("verification (each check on one core)", 1)}


def padded_input(shape: Shape, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, ConvShape]:
    """The padded input and the weight of a forward shape, as the kernels receive them."""
    left, right = pads(shape)
    x = rng.standard_normal((shape.batch, shape.c_in, shape.length + left + right), dtype=np.float32)
    w = rng.standard_normal((shape.c_out, shape.c_in // shape.groups, shape.taps), dtype=np.float32)
    return x, w, ConvShape.of(x, w, shape.stride, shape.dilation, shape.groups)


def calibrate(shapes: list[Shape], rounds: int, threads: int) -> None:
    """Time every applicable strategy on every forward shape at `threads` threads (one thread: CPU
    time; more: wall time after a pause; the fastest of `rounds`) and print the prices whose picks
    come closest to the fastest strategies."""
    clock = time.thread_time if threads == 1 else time.perf_counter
    rng = np.random.default_rng(0)
    measured: list[dict[str, float]] = []  # per shape: strategy -> seconds
    works: list[dict[str, dict[str, float]]] = []
    for shape in shapes:
        if shape.transposed:
            continue
        x, w, conv = padded_input(shape, rng)
        candidates = [s for s in _plan.FORWARD if s.applies(conv) and math.isfinite(s.cost(conv))]
        # of a family of variants (FFT sizes, banded block sizes) the three the current prices like best
        families: dict[str, list] = {}
        for s in sorted(candidates, key=lambda s: s.cost(conv)):
            families.setdefault(s.name.split(",")[0] if "=" in s.name else s.name, []).append(s)
        chosen = [s for family in families.values() for s in family[:3]]
        times = {s.name: math.inf for s in chosen}
        for _ in range(rounds):
            for s in chosen:
                if threads > 1:
                    time.sleep(0.1)  # BLAS's idle threads spin a while after a call
                start = clock()
                s.kernel(x, w, conv)
                times[s.name] = min(times[s.name], clock() - start)
        measured.append(times)
        works.append({s.name: s.work(conv) for s in chosen})
        print(f"{shape.name:38} " + "  ".join(f"{name}: {t * 1e3:.2f} ms" for name, t in sorted(times.items(), key=lambda kv: kv[1])),
              flush=True)

    def slowdown(table: dict[str, float]) -> float:
        """Geometric mean over the shapes of (time of the strategy the prices pick) / (fastest time)."""
        total = 0.0
        for times, work in zip(measured, works):
            pick = min(work, key=lambda name: sum(table[r] * v for r, v in (work[name] or {}).items()))
            total += math.log(times[pick] / min(times.values()))
        return math.exp(total / len(measured))

    # What matters is the pick, not the predicted seconds: starting from the current prices, scale
    # one price at a time while that lowers the geometric-mean slowdown of the picks.
    current = _plan.prices(threads)
    fitted = dict(current)
    improved = True
    while improved:
        improved = False
        for resource in fitted:
            for factor in (0.25, 0.5, 0.8, 1.25, 2.0, 4.0):
                trial = {**fitted, resource: fitted[resource] * factor}
                if slowdown(trial) < slowdown(fitted) - 1e-4:
                    fitted, improved = trial, True
    print(f"\n{len(measured)} shapes, {sum(len(t) for t in measured)} timings ({threads} threads, fastest of {rounds} "
          f"rounds): the picks' geometric-mean slowdown vs the fastest strategy timed: {slowdown(current):.3f} with the "
          f"current prices, {slowdown(fitted):.3f} with these:\nPRICES[{threads}] = {{")
    for resource in current:
        print(f"    {resource!r}: {fitted[resource]:.3g},")
    print("}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few shapes, 3 rounds")
    parser.add_argument("--rounds", type=int, help="timed rounds per shape (default 7, 3 with --quick)")
    parser.add_argument("--only", help="run only shapes whose name contains this text")
    parser.add_argument("--pause", type=float, default=0.15, help="seconds to sleep before each timed call")
    parser.add_argument("--threads", type=int, help="one thread setting: threads for torch and numpy's BLAS")
    parser.add_argument("--settings", default="single,verify", help="which thread settings (single, verify)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time CPU time of the calling thread (with --threads 1: robust on a busy machine)")
    parser.add_argument("--calibrate", action="store_true",
                        help="fit the cost model's prices (at --threads, default 1)")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 7)
    shapes = [s for s in SHAPES if (s.quick or not args.quick) and (not args.only or args.only in s.name)]
    if args.calibrate:
        threads = args.threads or 1
        if os.environ.get("OPENBLAS_NUM_THREADS") != str(threads):  # BLAS reads it at import: run again
            env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
            sys.exit(subprocess.run([sys.executable, __file__, *sys.argv[1:]], env=env).returncode)
        calibrate(shapes, args.rounds or 3, threads)
        return
    if args.cpu_time:
        if args.threads != 1:
            parser.error("--cpu-time needs --threads 1 (other threads' work is not the calling thread's)")
        global CLOCK
        CLOCK = time.thread_time
    if args.threads:
        torch.set_num_threads(args.threads)
        title = next((t for t, n in SETTINGS.values() if n == args.threads), f"{args.threads} threads")
        run_table(shapes, rounds, args.pause, title)
        return
    # One child process per setting: BLAS fixes its thread count when numpy is imported.
    forwarded = [a for a in sys.argv[1:] if a not in ("--settings", args.settings)]
    for setting in args.settings.split(","):
        threads = SETTINGS[setting][1]
        subprocess.run([sys.executable, __file__, *forwarded, "--threads", str(threads)], check=True)


if __name__ == "__main__":
    main()
