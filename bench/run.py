"""How fast, and in how much memory, convmigrate migrates a big checkpoint, next to `cp`.

    python bench/run.py                        # 0.25, 1 and 2 GiB, 3 rounds, + 10 000 small tensors,
                                               # + 4 GiB in 4 safetensors shards, + the giant layer
    python bench/run.py --sizes 1 --rounds 5
    python bench/run.py --quick                # 0.25 GiB, 2 000 small tensors, 0.5 GiB in 4 shards,
                                               # 2 rounds, no giant layer (a few minutes)
    python bench/run.py --sizes 2 --rounds 5 --small 0 --sharded 0 --giant-mib 0   # the 2 GiB goals alone
    python bench/run.py --sizes '' --small 0 --sharded 0 --giant-mib 700   # only the giant-layer row
    python bench/run.py --users-python /path/to/python   # a Python with torch + MindSpore
    python bench/run.py --baseline /path/to/other/checkout --only torch2ms,ms2torch
                                               # every convmigrate row also run from another
                                               # checkout (PYTHONPATH), interleaved in the same rounds

For each size the script writes a Conv1d-heavy float32 checkpoint with torch.save
(bench/make_checkpoint.py), then runs every tool below once per round, rotating the order
from round to round, and prints the median wall time and peak resident memory of each:

    cp                   cp IN OUT (coreutils; no fsync)
    cp + fsync           cp IN OUT && sync OUT: a copy that is on disk when it returns
    start-up             convmigrate --version: Python, the imports, the CLI (subtracted for the fast path)
    torch2ms             convmigrate torch2ms IN.pt -o OUT.ckpt --quiet (verification on)
    torch2ms --no-verify the same without verification
    torch2ms, tables     the same verified run printing its plan and verification tables
    torch2ms --no-fsync  verified, renamed into place without waiting for the disk (as cp does)
    torch2ms --no-fsync --no-verify
    ms2torch             convmigrate ms2torch IN.ckpt -o OUT.pt --quiet (verification on)
    ms2torch --no-verify, ms2torch --no-fsync, ms2torch --no-fsync --no-verify
    convert pt->ckpt     convmigrate convert IN.pt -o OUT.ckpt --quiet
    convert ckpt->pt     convmigrate convert IN.ckpt -o OUT.pt --quiet
    users' way           bench/users_way.py: torch.load, reshape convs, mindspore.save_checkpoint

A last case (--giant-mib, default 700) is a 2.3 GiB checkpoint whose first tensor is one 700 MiB
Conv1d weight (bench/make_checkpoint.py --giant-mib): torch2ms with and without verification and
ms2torch only. Verification reads a conv weight a block at a time, so its peak must not grow
with the layer.

The sharded case (--sharded GIB, --shards N): a model of that size in N safetensors shards
(written by the safetensors library, with transformers' index), next to a copy of its folder:

    cp -r + sync         cp -r IN/. OUT && sync OUT/*: the folder copied, on disk when it returns
    torch2ms --jobs 1    convmigrate torch2ms IN/model.safetensors.index.json -o OUT/model.safetensors.index.json
    torch2ms --jobs 2    (verified, durable: each shard by its own process)
    torch2ms --jobs 2 --no-fsync --no-verify

Peak memory is the child's ru_maxrss from wait4 (what /usr/bin/time reports): resident pages,
file-backed ones (memory maps) included. Before every run the output is deleted and `sync`
flushes earlier writes, outside the timing. The input files stay in the page cache for every
tool alike. By default convmigrate fsyncs its output before renaming it into place; plain cp
does not: compare the default with cp + fsync, and --no-fsync with cp. The machine is shared and noisy: only ratios measured in the same
run mean anything. Generated files are deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONVMIGRATE = [sys.executable, "-m", "convmigrate"]
USERS_UNAVAILABLE = 3  # users_way.py's exit code without MindSpore
GIANT_GB = 2.3  # the checkpoint holding one 700 MiB Conv1d


@dataclass
class Tool:
    name: str
    command: list[str]
    output: Path
    walls: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)  # user + system seconds of the child
    failure: str = ""

    def median(self) -> tuple[float, float]:
        return statistics.median(self.walls), statistics.median(self.peaks)

    def best(self) -> tuple[float, float]:
        """The fastest round (wall) and the peak of that round: on a virtual machine whose memory
        and disk come and go in modes (the same copy takes 0.7 s or 3 s, run after run), the
        fastest round is what the code costs when nothing else is in the way."""
        index = min(range(len(self.walls)), key=self.walls.__getitem__)
        return self.walls[index], self.peaks[index]


def measure(command: list[str]) -> tuple[float, float, float, int, str]:
    """(wall seconds, CPU seconds, peak RSS MiB, exit code, stderr tail) of one child process.

    CPU time (user + system, from wait4) is what the tool itself spent: on a loaded machine it
    moves far less than wall time, which also counts the time other processes held the cores."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = child.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    peak_mib = usage.ru_maxrss / 1024  # Linux reports KiB
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, peak_mib, child.returncode, stderr.decode(errors="replace").strip()[-300:]


def settle(paths: list[Path]) -> None:
    """Untimed: delete the previous output (a folder is emptied) and flush dirty pages, so runs do
    not overlap."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
            path.mkdir()
        else:
            path.unlink(missing_ok=True)
    subprocess.run(["sync"], check=False)
    time.sleep(0.3)


def tools_for(pt: Path, ckpt: Path, work: Path, users_python: str, only: set[str], baseline: Path | None) -> list[Tool]:
    tools = [t for t in all_tools(pt, ckpt, work, users_python) if not only or t.name in only or t.name.startswith("cp")]
    if baseline is None:
        return tools
    # The same rows run from another checkout: a before/after comparison measured in one run.
    twins = [
        Tool(f"{t.name} [baseline]", ["env", f"PYTHONPATH={baseline}", *_retarget(t.command, t.output)], _baseline_output(t.output))
        for t in tools if t.command[:3] == CONVMIGRATE
    ]
    return tools + twins


def _baseline_output(output: Path) -> Path:
    return output.with_name("b." + output.name)


def _retarget(command: list[str], output: Path) -> list[str]:
    """The command with its output path replaced by the baseline's own."""
    return [str(_baseline_output(output)) if arg == str(output) else arg for arg in command]


def all_tools(pt: Path, ckpt: Path, work: Path, users_python: str) -> list[Tool]:
    out = work / "out"
    quiet = ["--quiet", "--force"]
    return [
        Tool("cp", ["cp", str(pt), str(out) + ".cp"], Path(str(out) + ".cp")),
        Tool("cp + fsync", ["sh", "-c", f'cp "{pt}" "{out}.cps" && sync "{out}.cps"'], Path(str(out) + ".cps")),
        Tool("start-up", [*CONVMIGRATE, "--version"], Path(f"{out}.none")),
        Tool("torch2ms", [*CONVMIGRATE, "torch2ms", str(pt), "-o", f"{out}.v.ckpt", *quiet], Path(f"{out}.v.ckpt")),
        Tool("torch2ms --no-verify", [*CONVMIGRATE, "torch2ms", str(pt), "-o", f"{out}.nv.ckpt", "--no-verify", *quiet],
             Path(f"{out}.nv.ckpt")),
        Tool("torch2ms, tables", [*CONVMIGRATE, "torch2ms", str(pt), "-o", f"{out}.t.ckpt", "--force"], Path(f"{out}.t.ckpt")),
        Tool("torch2ms --no-fsync", [*CONVMIGRATE, "torch2ms", str(pt), "-o", f"{out}.f.ckpt", "--no-fsync", *quiet],
             Path(f"{out}.f.ckpt")),
        Tool("torch2ms --no-fsync --no-verify",
             [*CONVMIGRATE, "torch2ms", str(pt), "-o", f"{out}.fnv.ckpt", "--no-fsync", "--no-verify", *quiet],
             Path(f"{out}.fnv.ckpt")),
        Tool("ms2torch", [*CONVMIGRATE, "ms2torch", str(ckpt), "-o", f"{out}.back.pt", *quiet], Path(f"{out}.back.pt")),
        Tool("ms2torch --no-verify", [*CONVMIGRATE, "ms2torch", str(ckpt), "-o", f"{out}.nvback.pt", "--no-verify", *quiet],
             Path(f"{out}.nvback.pt")),
        Tool("ms2torch --no-fsync", [*CONVMIGRATE, "ms2torch", str(ckpt), "-o", f"{out}.fback.pt", "--no-fsync", *quiet],
             Path(f"{out}.fback.pt")),
        Tool("ms2torch --no-fsync --no-verify",
             [*CONVMIGRATE, "ms2torch", str(ckpt), "-o", f"{out}.fnvback.pt", "--no-fsync", "--no-verify", *quiet],
             Path(f"{out}.fnvback.pt")),
        Tool("convert pt->ckpt", [*CONVMIGRATE, "convert", str(pt), "-o", f"{out}.c.ckpt", *quiet], Path(f"{out}.c.ckpt")),
        Tool("convert ckpt->pt", [*CONVMIGRATE, "convert", str(ckpt), "-o", f"{out}.c.pt", *quiet], Path(f"{out}.c.pt")),
        Tool("users' way", [users_python, str(HERE / "users_way.py"), str(pt), f"{out}.u.ckpt"], Path(f"{out}.u.ckpt")),
    ]


def run_size(label: str, make_args: list[str], work: Path, rounds: int, users_python: str,
             only: set[str], baseline: Path | None) -> tuple[int, list[Tool]]:
    pt, ckpt = work / f"model_{label}.pt", work / f"model_{label}.ckpt"
    subprocess.run([sys.executable, str(HERE / "make_checkpoint.py"), str(pt), *make_args], check=True, stdout=subprocess.DEVNULL)
    # The ms2torch input, made once by the tool under test (the run itself is checked below).
    subprocess.run([*CONVMIGRATE, "torch2ms", str(pt), "-o", str(ckpt), "--quiet", "--no-verify"], check=True)
    tools = tools_for(pt, ckpt, work, users_python, only, baseline)
    run_rounds(label, tools, rounds, users_python)
    size = pt.stat().st_size
    for path in [pt, ckpt, *(t.output for t in tools)]:
        path.unlink(missing_ok=True)
    return size, tools


def run_rounds(label: str, tools: list[Tool], rounds: int, users_python: str) -> None:
    """Every tool once per round, the order rotated from round to round."""
    for round_index in range(rounds):
        shift = round_index % len(tools)
        for tool in tools[shift:] + tools[:shift]:
            if tool.failure:
                continue
            settle([tool.output])
            wall, cpu, peak, code, stderr = measure(tool.command)
            if code == USERS_UNAVAILABLE and tool.name == "users' way":
                tool.failure = "MindSpore unavailable in " + users_python
            elif code != 0:
                tool.failure = f"exit {code}: {stderr}"
            else:
                tool.walls.append(wall)
                tool.peaks.append(peak)
                tool.cpus.append(cpu)
            print(f"  [{label} round {round_index + 1}] {tool.name}: {wall:.2f} s, CPU {cpu:.2f} s, {peak:.0f} MiB"
                  + (f" ({tool.failure})" if tool.failure else ""), file=sys.stderr, flush=True)


SHARDED_BASE = "cp -r + sync"


def run_sharded(label: str, gib: float, shards: int, work: Path, rounds: int, baseline: Path | None) -> tuple[int, list[Tool]]:
    """The sharded case: a folder of `shards` safetensors shards, copied and converted."""
    source = work / "sharded_in"
    subprocess.run([sys.executable, str(HERE / "make_checkpoint.py"), str(source), "--gb", str(gib), "--shards", str(shards)],
                   check=True, stdout=subprocess.DEVNULL)
    index = source / "model.safetensors.index.json"
    outputs = {name: work / f"sharded_{name}" for name in ("cp", "j1", "j2", "j2fast")}
    for folder in outputs.values():
        folder.mkdir()
    quiet = ["--quiet", "--force"]

    def convert(folder: Path, *options: str) -> list[str]:
        return [*CONVMIGRATE, "torch2ms", str(index), "-o", str(folder / "model.safetensors.index.json"), *options, *quiet]

    tools = [
        Tool(SHARDED_BASE, ["sh", "-c", f'cp -r "{source}/." "{outputs["cp"]}" && sync "{outputs["cp"]}"/*'], outputs["cp"]),
        Tool("torch2ms --jobs 1", convert(outputs["j1"], "--jobs", "1"), outputs["j1"]),
        Tool("torch2ms --jobs 2", convert(outputs["j2"], "--jobs", "2"), outputs["j2"]),
        Tool("torch2ms --jobs 2 --no-fsync --no-verify", convert(outputs["j2fast"], "--jobs", "2", "--no-fsync", "--no-verify"),
             outputs["j2fast"]),
    ]
    if baseline is not None:
        tools += [Tool(f"{t.name} [baseline]", ["env", f"PYTHONPATH={baseline}", *t.command], t.output)
                  for t in tools if t.command[:3] == CONVMIGRATE]
    run_rounds(label, tools, rounds, sys.executable)
    size = sum(p.stat().st_size for p in source.iterdir())
    for folder in [source, *outputs.values()]:
        shutil.rmtree(folder, ignore_errors=True)
    return size, tools


def _wall(tools: list[Tool], name: str, best: bool = False) -> float:
    tool = next((t for t in tools if t.name == name), None)
    if tool is None or not tool.walls:
        return float("nan")
    return tool.best()[0] if best else tool.median()[0]


def table(label: str, size: int, tools: list[Tool]) -> list[str]:
    sharded = any(t.name == SHARDED_BASE for t in tools)
    bases = [SHARDED_BASE] if sharded else ["cp", "cp + fsync"]
    lines = [
        f"**{label}** ({size / 2**20:,.0f} MiB)",
        "",
        "| tool | wall s | best wall s | CPU s | peak RSS MiB | " + " | ".join(f"x ({b})" for b in bases)
        + " | " + " | ".join(f"best x ({b})" for b in bases) + " |",
        "|---|---|---|---|---|" + "---|" * 2 * len(bases),
    ]
    for tool in tools:
        if not tool.walls:
            lines.append(f"| {tool.name} | - | - | - | - | " + " | ".join(["-"] * (2 * len(bases) - 1) + [tool.failure])
                         + " |")
            continue
        wall, peak = tool.median()
        best = tool.best()[0]
        cpu = statistics.median(tool.cpus)
        ratios = " | ".join(f"{wall / _wall(tools, b):.2f}" for b in bases)
        best_ratios = " | ".join(f"{best / _wall(tools, b, best=True):.2f}" for b in bases)
        lines.append(f"| {tool.name} | {wall:.2f} | {best:.2f} | {cpu:.2f} | {peak:.0f} | {ratios} | {best_ratios} |")
    return lines + [""]


def goals(results: dict[str, tuple[int, list[Tool]]]) -> list[str]:
    """Issue 16's goals, each as measured in this run (ratios of medians of the same rounds)."""
    def med(label: str, name: str, best: bool = False) -> tuple[float, float] | None:
        if label not in results:
            return None
        tool = {t.name: t for t in results[label][1]}.get(name)
        if tool is None or not tool.walls:
            return None
        return tool.best() if best else tool.median()

    def ratio(label: str, name: str, base: str) -> str:
        """Median / median of the same rounds, and fastest round / fastest round."""
        ours, theirs = med(label, name), med(label, base)
        ours_best, theirs_best = med(label, name, True), med(label, base, True)
        if not (ours and theirs and ours_best and theirs_best):
            return "n/a"
        return f"{ours[0] / theirs[0]:.2f}x ({base}) (best rounds {ours_best[0] / theirs_best[0]:.2f}x)"

    lines = []
    sizes = [label for label in results if label.endswith("GiB")]
    big = max(sizes, key=lambda s: float(s.split()[0]), default=None)
    if big:
        cp, cps, startup = med(big, "cp"), med(big, "cp + fsync"), med(big, "start-up")
        for name in ("torch2ms", "ms2torch"):
            if med(big, name) and cps:
                lines.append(f"- {big}: {name} (durable, verified) = {ratio(big, name, 'cp + fsync')} (goal <= 1.3)")
        for name in ("torch2ms --no-fsync --no-verify", "ms2torch --no-fsync --no-verify"):
            ours, ours_best = med(big, name), med(big, name, True)
            cp_best, startup_best = med(big, "cp", True), med(big, "start-up", True)
            if ours and ours_best and cp and cp_best and startup and startup_best:
                lines.append(f"- {big}: {name}: (wall - start-up) = ({ours[0]:.2f} - {startup[0]:.2f}) s = "
                             f"{(ours[0] - startup[0]) / cp[0]:.2f}x cp (best rounds "
                             f"{(ours_best[0] - startup_best[0]) / cp_best[0]:.2f}x) (goal <= 1.3)")
    for label in sizes:
        for verified, bare in (("torch2ms", "torch2ms --no-verify"), ("ms2torch", "ms2torch --no-verify")):
            ours, without = med(label, verified), med(label, bare)
            ours_best, without_best = med(label, verified, True), med(label, bare, True)
            if ours and without and ours_best and without_best:
                lines.append(f"- {label}: verification adds {100 * (ours[0] / without[0] - 1):.0f}% to the durable "
                             f"{verified} (best rounds {100 * (ours_best[0] / without_best[0] - 1):.0f}%) (goal <= 25%)")
    for label in results:
        verified, bare = med(label, "torch2ms"), med(label, "torch2ms --no-verify")
        if "largest Conv1d" in label and verified and bare:
            lines.append(f"- {label}: torch2ms peak RSS {verified[1]:.0f} MiB verified, {bare[1]:.0f} MiB unverified "
                         f"(goal <= 400, and flat)")
    peaks = {label: med(label, "torch2ms") for label in sizes}
    if peaks and all(peaks.values()):
        shown = ", ".join(f"{label}: {p[1]:.0f}" for label, p in peaks.items())  # type: ignore[index]
        lines.append(f"- torch2ms peak RSS MiB by size: {shown} (goal <= 400, flat within 100)")
    for label in sizes:
        ours, users = med(label, "torch2ms"), med(label, "users' way")
        if ours and users:
            lines.append(f"- {label}: users' way / torch2ms = {users[0] / ours[0]:.1f}x time, {users[1] / ours[1]:.1f}x memory")
    for label in results:
        for name in ("torch2ms --jobs 2", "torch2ms --jobs 1"):
            ours = med(label, name)
            if med(label, SHARDED_BASE) and ours:
                lines.append(f"- {label}: {name} (durable, verified) = {ratio(label, name, SHARDED_BASE)} "
                             f"(goal for --jobs 2 <= 1.3), peak RSS {ours[1]:.0f} MiB")
    return lines


def machine(users_python: str) -> str:
    import numpy
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
        memory = f"{mem_kib / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration):
        memory = "RAM unknown"
    fs = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", tempfile.gettempdir()], capture_output=True, text=True).stdout.strip()
    ms = subprocess.run([users_python, "-c", "import mindspore; print(mindspore.__version__)"], capture_output=True, text=True).stdout.strip()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} cores, {memory}, {fs or 'fs unknown'}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, numpy {numpy.__version__}, MindSpore {ms or 'unavailable'}; load average {load}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0.25,1,2", help="checkpoint sizes in GiB, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", type=int, default=10_000, help="tensors in the many-small-tensors case (0: skip)")
    parser.add_argument("--sharded", type=float, default=4.0, help="GiB of the sharded model (0: skip)")
    parser.add_argument("--shards", type=int, default=4, help="shards of the sharded model")
    parser.add_argument("--quick", action="store_true",
                        help="0.25 GiB, 2 000 small tensors, 0.5 GiB in 4 shards, no giant layer, 2 rounds")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the checkpoints (default: a temp folder)")
    parser.add_argument("--users-python", default=sys.executable, help="Python with torch and MindSpore for the users' way")
    parser.add_argument("--only", default="", help="comma-separated row names to run (cp and cp + fsync always run)")
    parser.add_argument("--giant-mib", type=float, default=700,
                        help="also a 2.3 GiB checkpoint whose largest Conv1d weight is this big (0: skip): peak RSS "
                             "with and without verification, both directions")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another convmigrate checkout: each convmigrate row also runs from it, in the same rounds")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.rounds, args.small, args.sharded, args.giant_mib = "0.25", 2, 2000, min(args.sharded, 0.5), 0
    sizes = [float(s) for s in args.sizes.split(",") if s]
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    work = Path(tempfile.mkdtemp(prefix="convmigrate-bench-", dir=args.dir))
    # input, reference .ckpt, outputs in flight; the sharded input and its four output folders
    needed = max(6 * max([*sizes, GIANT_GB if args.giant_mib else 0], default=0), 5 * args.sharded) * 2**30
    free = shutil.disk_usage(work).free
    if free < needed:
        sys.exit(f"{work}: {free / 2**30:.1f} GiB free, this run needs about {needed / 2**30:.1f} GiB")
    results: dict[str, tuple[int, list[Tool]]] = {}
    try:
        for gib in sizes:
            label = f"{gib:g} GiB"
            results[label] = run_size(label, ["--gb", str(gib)], work, args.rounds, args.users_python, only, args.baseline)
        if args.small:
            label = f"{args.small:,} small tensors"
            results[label] = run_size(label, ["--small", str(args.small)], work, args.rounds, args.users_python, only, args.baseline)
        if args.sharded:
            label = f"{args.sharded:g} GiB in {args.shards} shards"
            results[label] = run_sharded(label, args.sharded, args.shards, work, args.rounds, args.baseline)
        if args.giant_mib:
            # Verification checks a conv a block of its weight at a time: its peak must not see the layer.
            label = f"{GIANT_GB:g} GiB, largest Conv1d {args.giant_mib:g} MiB"
            giant_only = only or {"torch2ms", "torch2ms --no-verify", "ms2torch"}
            results[label] = run_size(label, ["--gb", str(GIANT_GB), "--giant-mib", str(args.giant_mib)], work, args.rounds,
                                      args.users_python, giant_only, args.baseline)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"Machine: {machine(args.users_python)}")
    extra = (f" --only '{args.only}'" if only else "") + (f" --baseline {args.baseline}" if args.baseline else "")
    print(f"Command: python bench/run.py --sizes {args.sizes} --rounds {args.rounds} --small {args.small} "
          f"--sharded {args.sharded:g} --shards {args.shards} --giant-mib {args.giant_mib:g}{extra}; "
          f"medians of {args.rounds} rounds\n")
    for label, (size, tools) in results.items():
        print("\n".join(table(label, size, tools)))
    print("\n".join(goals(results)))


if __name__ == "__main__":
    main()
