"""Run convmigrate commands in child processes under a memory cap and a timeout.

`python -m tests.corpus.driver` reads a JSON list of argument lists on stdin and prints a JSON
list of results. The app is imported once; each command runs in a forked child (a real process:
a segfault, a hang or a MemoryError there cannot hide) with RLIMIT_DATA set, stdout and stderr
captured, its wall time and peak RSS (wait4) measured, and a kill after the timeout.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import tempfile
import time

os.environ.setdefault("COLUMNS", "160")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # no BLAS threads: the process forks safely

from convmigrate.cli.app import app


def run_one(args: list[str], data_limit: int, timeout: float) -> dict:
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
                    app(args, prog_name="convmigrate")
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
            time.sleep(0.005)
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
            "stdout": out.read().decode("utf-8", "replace"),
            "stderr": err.read().decode("utf-8", "replace"),
        }


def main() -> None:
    request = json.load(sys.stdin)
    results = [run_one(args, request["data_limit"], request["timeout"]) for args in request["commands"]]
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
