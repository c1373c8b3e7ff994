"""glibc malloc tuning: large activation blocks are kept in the heap for reuse (or not, on request)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = r"""
import os, sys
import torch
from deepcr_dask.inference.allocator import keep_large_blocks_in_heap

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

applied = keep_large_blocks_in_heap()
before = rss_mb()
block = torch.ones(100 * 2**20 // 4)  # 100 MB, every page touched
del block
print(int(applied), round(rss_mb() - before))
"""

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the tuning is for glibc on Linux")


def _probe(**env) -> tuple[bool, float]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout.split()
    return out[0] == "1", float(out[1])


@glibc_only
def test_freed_activation_memory_stays_for_reuse():
    applied, kept_mb = _probe()
    assert applied
    assert kept_mb > 80  # the freed 100 MB block stayed in the heap, ready for the next tile


@glibc_only
def test_opt_out_leaves_malloc_alone():
    applied, kept_mb = _probe(DEEPCR_DASK_DEFAULT_MALLOC="1")
    assert not applied
    assert kept_mb < 20  # glibc's default: a block this large was an mmap, returned on free
