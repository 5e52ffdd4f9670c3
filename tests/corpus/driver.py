"""Run convmigrate commands in child processes under a memory cap and a timeout.

`python -m tests.corpus.driver` serves requests: one JSON object per line on stdin
({"commands": [[arg, ...], ...], "data_limit": bytes, "timeout": seconds}), one JSON list of
results per line on stdout. Every module of convmigrate and the click command are loaded once,
up front; each command then runs in a forked child (a real process: a segfault, a hang or a
MemoryError there cannot hide) with RLIMIT_DATA set, stdout and stderr captured, its wall time
and peak RSS (wait4) measured, and a kill after the timeout. Forking a warm process keeps a
command's cost to what the command itself does (~20 ms for a refusal instead of ~1 s), which
is what lets the corpus run every case through every command in CI.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pkgutil
import resource
import signal
import sys
import tempfile
import time

os.environ.setdefault("COLUMNS", "160")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # no BLAS threads: the process forks safely

import typer.main

import convmigrate
from convmigrate.cli.app import app


def warm_up() -> object:
    """Import every convmigrate module (the commands import some lazily), torch when it is
    installed (the torch.load fallback imports it: seconds in every child otherwise; MindSpore
    is never imported by the tool), and build the CLI once."""
    for module in pkgutil.walk_packages(convmigrate.__path__, "convmigrate."):
        if module.name.endswith("__main__"):  # running it would run the CLI
            continue
        try:
            importlib.import_module(module.name)
        except ImportError:  # an optional framework that is not installed
            pass
    importlib.import_module("typer._adapters")  # typer loads it (and pydantic) on its first parse
    command = typer.main.get_command(app)
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        try:  # one refusal end to end loads what parsing and error rendering load on first use
            command.main(["inspect", os.devnull], prog_name="convmigrate")
        except SystemExit:
            pass
    return command


def resident_mib() -> float:
    """This process's resident memory now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except OSError:
        return 0.0


def run_one(command: object, args: list[str], data_limit: int, timeout: float) -> dict:
    """Run one command in a forked child. Its peak RSS counts the pages it shares with this warm
    parent, so `parent_rss_mib` is reported too: the difference is what the command itself took."""
    parent_rss = resident_mib()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: the command as the console script runs it
            try:
                resource.setrlimit(resource.RLIMIT_DATA, (data_limit, data_limit))
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = open(1, "w", closefd=False)
                sys.stderr = open(2, "w", closefd=False)
                try:
                    command.main(args, prog_name="convmigrate")  # type: ignore[attr-defined]
                    code = 0
                except SystemExit as exit_:
                    code = exit_.code if isinstance(exit_.code, int) else 1
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:  # noqa: BLE001 - escaped the CLI: report it as the test failure it is
                import traceback

                traceback.print_exc()
                sys.stderr.flush()
                code = 99
            os._exit(code)
        timed_out = True
        while time.monotonic() - start < timeout:
            done, status, rusage = os.wait4(pid, os.WNOHANG)
            if done:
                timed_out = False
                break
            time.sleep(0.002)
        seconds = time.monotonic() - start
        if timed_out:
            os.kill(pid, signal.SIGKILL)
            _, status, rusage = os.wait4(pid, 0)
        out.seek(0)
        err.seek(0)
        return {
            "args": args,
            "exit_code": os.waitstatus_to_exitcode(status),
            "timed_out": timed_out,
            "seconds": seconds,
            "max_rss_mib": rusage.ru_maxrss / 1024,
            "parent_rss_mib": parent_rss,
            "stdout": out.read().decode("utf-8", "replace"),
            "stderr": err.read().decode("utf-8", "replace"),
        }


def main() -> None:
    command = warm_up()
    for line in sys.stdin:
        request = json.loads(line)
        results = [run_one(command, args, request["data_limit"], request["timeout"]) for args in request["commands"]]
        sys.stdout.write(json.dumps(results) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
