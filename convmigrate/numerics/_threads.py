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

import ctypes
import itertools
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
_POOL_PREFIX = "convmigrate-numerics"


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
            _pool = ThreadPoolExecutor(size, thread_name_prefix=_POOL_PREFIX)
            _pool_owner = (os.getpid(), size)
        return _pool


def _on_pool_thread() -> bool:
    """Whether this is one of our pool's threads (a convolution inside a task runs on it alone)."""
    return threading.current_thread().name.startswith(_POOL_PREFIX)


def run(tasks: Sequence[Callable[[], None]]) -> None:
    """Run independent tasks (writing disjoint parts of one output), on threads when allowed."""
    if len(tasks) <= 1 or _threads <= 1 or _on_pool_thread():
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


# BLAS's own threads. A kernel that runs its windows' matmuls side by side on our threads wants
# each matmul on one core: OpenBLAS runs one multithreaded matmul at a time (the others wait),
# and a narrow product split over two cores gains less than two products on a core each.
# OpenBLAS's thread count is the whole process's: a matmul another thread runs meanwhile gets
# one core (slower, never wrong). Found by name in the OpenBLAS numpy loaded (numpy 1.x wheels:
# openblas64_, numpy 2.x: scipy_openblas64_); elsewhere (another BLAS, not Linux) None.
_OPENBLAS_PREFIXES = ("openblas", "scipy_openblas")
_OPENBLAS_SUFFIXES = ("64_", "")


def _loaded_openblas() -> list[str]:
    """Paths of the OpenBLAS libraries mapped into this process (read from /proc: Linux only)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps if "openblas" in line.lower()}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/"))


@dataclass(frozen=True)
class BlasThreads:
    """OpenBLAS's getter and setter of its thread count."""

    get: Callable[[], int]
    set: Callable[[int], None]


def _find_blas_threads() -> BlasThreads | None:
    import numpy  # noqa: F401  (maps its BLAS into the process)

    for path in _loaded_openblas():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in itertools.product(_OPENBLAS_PREFIXES, _OPENBLAS_SUFFIXES):
            getter = getattr(library, f"{prefix}_get_num_threads{suffix}", None)
            setter = getattr(library, f"{prefix}_set_num_threads{suffix}", None)
            if getter is not None and setter is not None:
                getter.argtypes, getter.restype = [], ctypes.c_int
                setter.argtypes, setter.restype = [ctypes.c_int], None
                return BlasThreads(getter, setter)
    return None


_blas: BlasThreads | None = None
_blas_looked = False
_blas_users = 0  # calls of run_blas_alone running now, on any thread
_blas_before = 0  # OpenBLAS's thread count before the first of them


def blas_threads() -> BlasThreads | None:
    """OpenBLAS's thread-count functions (None: numpy's BLAS is not an OpenBLAS found here)."""
    global _blas, _blas_looked
    with _lock:
        if not _blas_looked:
            _blas, _blas_looked = _find_blas_threads(), True
        return _blas


def run_blas_alone(items: Sequence[T], work: Callable[[Iterable[T]], None]) -> None:
    """run_shared(items, work) with BLAS on one thread per matmul meanwhile, where BLAS's thread
    count can be set; where it cannot, work(items) on this thread, BLAS spreading each matmul."""
    global _blas_users, _blas_before
    blas = blas_threads()
    if blas is None or _threads <= 1 or len(items) <= 1 or _on_pool_thread():
        run_shared(items, work, parallel=blas is not None)
        return
    with _lock:
        if not _blas_users:
            _blas_before = blas.get()
            blas.set(1)
        _blas_users += 1
    try:
        run_shared(items, work)
    finally:
        with _lock:
            _blas_users -= 1
            if not _blas_users:
                blas.set(_blas_before)
