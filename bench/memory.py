#!/usr/bin/env python
"""Peak memory of a Dask worker running ``clean_dask``: one block against a large frame of many blocks.

A worker should hold a block, its halo and its outputs, not the image. This measures the peak resident
memory of a single-threaded worker process (``VmHWM``, reset before each run through
``/proc/self/clear_refs``) above its idle size with the Cleaner loaded, while ``clean_dask`` cleans

* one ``BLOCK``² frame (one block): the single-block footprint, and
* a ``SIZE``² frame in ``BLOCK``² chunks,

each read from a Zarr array on disk and written to another one (``dask.array.store``), as a large
mosaic would be. The target: the large frame's peak under 3x the single block's.

    python bench/memory.py                    # 8192² in 1024² chunks (about 3 minutes on 2 cores)
    python bench/memory.py --size 4096 --block 512

Writes ``bench/results/memory.md`` (with ``--output``, elsewhere).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _reset_peak() -> int:
    """Reset this process's peak RSS to its current RSS; return the current RSS in bytes."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return _status("VmRSS")


def _status(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _peak() -> int:
    return _status("VmHWM")


def _frame(store: Path, size: int, block: int, seed: int = 0):
    """A ``size``² float32 frame of sky, noise and hot pixels, written to a Zarr array in ``block``² chunks."""
    import dask.array as da
    import zarr

    array = zarr.create_array(str(store), shape=(size, size), chunks=(block, block), dtype="float32",
                              overwrite=True)
    rng = np.random.default_rng(seed)
    for y in range(0, size, block):
        tile = rng.normal(100.0, 10.0, (min(block, size - y), size)).astype(np.float32)
        ys, xs = rng.integers(0, tile.shape[0], (2, tile.size // 2000))
        tile[ys, xs % size] += rng.uniform(300, 3000, ys.size).astype(np.float32)
        array[y:y + tile.shape[0], :] = tile
    return da.from_zarr(str(store))


def _run(client, source, out_dir: Path, name: str) -> dict:
    import dask.array as da
    import zarr

    import deepcr_dask as dcr

    mask, cleaned = dcr.clean_dask(source, mask="ACS-WFC", device="cpu")
    targets = []
    for layer, array in (("mask", mask), ("cleaned", cleaned)):
        targets.append(zarr.create_array(str(out_dir / f"{name}-{layer}.zarr"), shape=array.shape,
                                         chunks=source.chunksize, dtype=array.dtype, overwrite=True))
    idle = client.run(_reset_peak)
    start = time.perf_counter()
    da.store([mask, cleaned], targets, lock=False, compute=True)
    seconds = time.perf_counter() - start
    peaks = client.run(_peak)
    worker = next(iter(peaks))
    return {"name": name, "shape": source.shape, "chunks": source.chunksize, "blocks": source.npartitions,
            "seconds": seconds, "idle_gb": idle[worker] / 1e9, "peak_gb": peaks[worker] / 1e9,
            "above_idle_gb": (peaks[worker] - idle[worker]) / 1e9}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--block", type=int, default=1024)
    parser.add_argument("--output", type=Path, default=RESULTS / "memory.md")
    args = parser.parse_args(argv)
    from distributed import Client, LocalCluster

    import deepcr_dask as dcr
    from deepcr_dask.nn import probes

    with tempfile.TemporaryDirectory(prefix="deepcr-memory-") as tmp, \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                         memory_limit=None) as cluster, Client(cluster) as client:
        tmp = Path(tmp)
        small = _frame(tmp / "small.zarr", args.block, args.block, seed=1)
        large = _frame(tmp / "large.zarr", args.size, args.block, seed=2)
        warm = _frame(tmp / "warm.zarr", 256, 256, seed=3)
        _run(client, warm, tmp, "warm-up")  # loads the Cleaner, so the runs below start from the same state
        rows = [_run(client, small, tmp, "one block"), _run(client, large, tmp, "large frame")]
    ratio = rows[1]["above_idle_gb"] / rows[0]["above_idle_gb"]
    caps = probes.capabilities("cpu")
    lines = [
        f"# clean_dask worker memory ({dt.date.today()})", "",
        f"One worker process, 1 thread; ACS-WFC mask + median inpainting, default kernels; deepcr-dask "
        f"{dcr.__version__}; CPU instruction set {caps.isa}. Input read from Zarr on disk, outputs stored to Zarr.", "",
        "| run | frame | chunks | blocks | seconds | idle RSS GB | peak RSS GB | peak above idle GB |",
        "|---|---|---|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['shape'][0]}x{r['shape'][1]} | {r['chunks'][0]}x{r['chunks'][1]} | "
                     f"{r['blocks']} | {r['seconds']:.1f} | {r['idle_gb']:.2f} | {r['peak_gb']:.2f} | "
                     f"{r['above_idle_gb']:.2f} |")
    frame_gb = args.size**2 * 4 / 1e9
    lines += ["", f"The large frame's peak above idle is **{ratio:.2f}x** the single block's (target: under 3x); "
              f"the frame itself is {frame_gb:.2f} GB of float32."]
    text = "\n".join(lines) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
