"""Keep freed tensor buffers in the process instead of giving their pages back at once (glibc).

Tensor bytes are read in bounded pieces into fresh buffers of a few MiB (formats/input_file.py:
4 MiB pieces, verification's 8 MiB blocks). glibc serves such sizes with mmap, or from a heap it
trims as soon as 128 KiB lie free at its top, and a thread's arena gives freed pages back with
madvise: every new buffer is pages the kernel must fault in and zero again, about a thousand
faults per 4 MiB. Measured on a 1 GiB `convmigrate verify` (both files read once, 2 GiB):
228 000 minor faults and 0.92 s of system time; with the thresholds below, 14 000 and 0.42 s,
and the same peak RSS (86 MiB): what is kept is what the next piece reuses. torch2ms and
ms2torch at 1 GiB: 300 000 faults -> 18 000, 0.5-1.4 s less CPU. (Those were measured when
verification ran every layer's numerics; moved weights are now compared in same-size pieces,
which glibc's own dynamic threshold reuses: where this still counts is computed weights, e.g.
folding weight norms: 95 000 faults -> 15 800, tests/test_malloc.py.)

The CLI sets this for its own process (and the shard jobs it forks); the library leaves the
allocator of a program that imports it alone.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
# Buffers below this come from the heap and are reused when freed (glibc's largest allowed value
# on 64-bit: its dynamic threshold stops there too).
MMAP_THRESHOLD = 32 * 1024 * 1024
# The heap gives its free top back to the kernel only past this much (a bound on what is kept).
TRIM_THRESHOLD = 256 * 1024 * 1024


def keep_freed_buffers() -> bool:
    """Set glibc's thresholds (above); False where there is no glibc mallopt (macOS, musl's no-op)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
