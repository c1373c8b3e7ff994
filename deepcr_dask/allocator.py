"""glibc malloc settings for network inference on CPUs.

A forward pass allocates and frees tens of activation tensors of 10-100 MB per tile. glibc serves
blocks above its mmap threshold (at most 32 MB by its own dynamic rule, 64 KiB of trim threshold
under a Dask nanny) with fresh ``mmap`` calls, so every tile pays the page faults of its activations
again: measured 1.5-1.7x slower on a 2048² frame, both in-process and on Dask workers. Keeping
such blocks in the heap, and not trimming it after every tile, lets the next tile reuse the pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_large_blocks_in_heap"]

MMAP_THRESHOLD = 256 << 20  # above the largest activation of a 512-px tile (about 85 MB)
TRIM_THRESHOLD = 512 << 20  # free heap kept for reuse before any is returned to the system
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers (malloc.h)
OPT_OUT = "DEEPCR_DASK_DEFAULT_MALLOC"  # set to 1 to leave malloc as it is

_applied: bool | None = None


def keep_large_blocks_in_heap() -> bool:
    """Raise glibc's mmap and trim thresholds for this process, once; True if they are in effect.

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
        _applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        _applied = False
    return _applied
