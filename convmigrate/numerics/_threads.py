"""Threads for one convolution: its independent windows of output, run side by side.

NumPy releases the GIL inside copies, ufunc loops and matmul, so Python threads can keep
several cores busy with the copies and elementwise work that BLAS does not parallelise
(im2col gathers, transposes, the depthwise kernels' small matmuls).

How many threads a convolution may use follows the BLAS setting of the process:
OPENBLAS_NUM_THREADS (or OMP_NUM_THREADS), else the number of cores. The CLI sets
OPENBLAS_NUM_THREADS=1 and runs verification's checks on threads of its own, so there each
convolution stays on the thread that called it. `set_threads` overrides the setting.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_ENVIRONMENT = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def _from_environment() -> int:
    for name in _ENVIRONMENT:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return os.cpu_count() or 1


_threads = _from_environment()
_pool: ThreadPoolExecutor | None = None
_pool_owner = (0, 0)  # (pid, size) the pool was made for: a forked child makes its own
_lock = threading.Lock()


def threads() -> int:
    """How many threads one convolution may use."""
    return _threads


def set_threads(count: int | None) -> None:
    """Let one convolution use `count` threads (None: back to the environment's setting)."""
    global _threads
    if count is not None and count < 1:
        raise ValueError(f"threads must be positive, got {count}")
    _threads = _from_environment() if count is None else int(count)


def _executor(size: int) -> ThreadPoolExecutor:
    global _pool, _pool_owner
    with _lock:
        if _pool is None or _pool_owner != (os.getpid(), size):
            # A pool inherited through fork has no threads behind it; one of another size is
            # left to finish what it runs (never shut down under another caller).
            _pool = ThreadPoolExecutor(size, thread_name_prefix="convmigrate-numerics")
            _pool_owner = (os.getpid(), size)
        return _pool


def run(tasks: Sequence[Callable[[], None]]) -> None:
    """Run independent tasks (writing disjoint parts of one output), on threads when allowed."""
    if len(tasks) <= 1 or _threads <= 1 or threading.current_thread().name.startswith("convmigrate-numerics"):
        for task in tasks:
            task()
        return
    futures = [_executor(_threads).submit(task) for task in tasks[1:]]
    try:
        tasks[0]()  # the calling thread takes a share instead of waiting idle
    finally:
        for future in futures:
            future.result()


def run_shared(items: Sequence[T], work: Callable[[Iterable[T]], None], parallel: bool = True) -> None:
    """work(share) on up to threads() threads, each share an iterator that hands out the next of
    `items` not yet taken; with parallel=False (or one thread) work(items) on this thread."""
    count = min(len(items), _threads if parallel else 1)
    if count <= 1:
        work(items)
        return
    source = iter(items)
    lock = threading.Lock()

    def share() -> Iterator[T]:
        while True:
            with lock:
                item = next(source, None)
            if item is None:
                return
            yield item

    run([lambda: work(share()) for _ in range(count)])


def split(count: int, parts: int | None = None) -> list[range]:
    """`range(count)` cut into at most `parts` (default: threads()) contiguous pieces of near-equal size."""
    parts = max(1, min(count, parts or _threads))
    bounds = [count * i // parts for i in range(parts + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(parts)]
