"""glibc malloc settings for network inference on CPUs.

A forward pass allocates and frees tens of activation tensors of 10-100 MB per tile. glibc serves
blocks above its mmap threshold (at most 32 MB by its own dynamic rule, 64 KiB of trim threshold
under a Dask nanny) with fresh ``mmap`` calls, so every tile pays the page faults of its activations
again: measured 1.5-1.7x slower on a 2048² frame, both in-process and on Dask workers. Keeping
such blocks in the heap, and not trimming it after every tile, lets the next tile reuse the pages.

Threads other than the main one get their own malloc arenas, whose heaps hold at most 64 MB, so
their larger activations are fresh mmaps whatever the thresholds (measured 1.2x slower in a worker
thread). One arena for the process avoids that: ``mallopt`` here covers threads started afterwards,
and ``MALLOC_ARENA_MAX=1`` in a worker's environment (set by ``make_cluster("local")``) covers all.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "WORKER_ENVIRONMENT", "keep_large_blocks_in_heap"]

MMAP_THRESHOLD = 256 << 20  # above the largest activation of a 512-px tile (about 85 MB)
TRIM_THRESHOLD = 512 << 20  # free heap kept for reuse before any is returned to the system
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # mallopt parameter numbers (malloc.h)
WORKER_ENVIRONMENT = {"MALLOC_ARENA_MAX": "1"}  # for worker processes, set before they start
OPT_OUT = "DEEPCR_DASK_DEFAULT_MALLOC"  # set to 1 to leave malloc as it is

_applied: bool | None = None


def keep_large_blocks_in_heap() -> bool:
    """Raise glibc's mmap and trim thresholds and use one arena, once; True if in effect.

    Does nothing (returns False) on other C libraries, or when the environment variable
    ``DEEPCR_DASK_DEFAULT_MALLOC=1`` asks for the default behaviour. The cost is up to
    ``TRIM_THRESHOLD`` of freed memory the process keeps instead of returning it.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(OPT_OUT, "") not in ("", "0") or platform.system() != "Linux":
        return False
    name = ctypes.util.find_library("c")
    if not name or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(name)
        settings = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_ARENA_MAX, 1))
        _applied = all([bool(libc.mallopt(option, value)) for option, value in settings])
    except (OSError, AttributeError):
        _applied = False
    return _applied
