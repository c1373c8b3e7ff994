#!/usr/bin/env python
"""Where a very large archive run would be bound on the driver: per-file costs that do not shrink with workers.

Measured here, on one machine:

* **orchestration**: ``process_archive`` over N tiny FLC files (64x64 px, one chip: the cleaning itself takes
  milliseconds), on a local cluster of 2 workers x 1 thread. Files per second is then the ceiling the driver,
  the scheduler and the manifest put on a run, whatever the cluster's size: discovery, header scan, grouping,
  one task per file through the scheduler, one manifest commit per file.
* **restart**: the same command again, every file complete: what skipping a finished file costs (a stat and a
  manifest lookup each).
* **scan**: what the driver does before the first task: list the inputs and read every file's headers
  (what it is, its pointing, for grouping), in 16 threads.
* **manifest**: ``Manifest.record`` alone, one commit per file of two chip rows, into a fresh SQLite file.
* **scheduler**: N no-op tasks through the archive's submit loop (``as_completed``, bounded in flight), to
  separate the scheduler's share from the rest.

Usage::

    python bench/archive_limits.py                # 2000 files (~3 min on 2 cores)
    python bench/archive_limits.py --files 500 --no-write

Writes ``bench/results/archive-limits.md`` (unless ``--no-write``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        model = fields.get("Model name", "").strip()
        flags = fields.get("Flags", "")
        isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
        return f"{model} ({isa}, {fields.get('CPU(s)', '?').strip()} CPUs)"
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown CPU"


def _write_files(folder: Path, n: int) -> None:
    from deepcr_dask.demo import write_flc

    rng = np.random.default_rng(1)
    for i in range(n):
        sky = rng.normal(100, 10, (64, 64)).astype(np.float32)
        write_flc(folder / f"d{i // 500:03d}" / f"jlim{i:05d}q_flc.fits",
                  [(sky, np.sqrt(np.abs(sky)), np.zeros(sky.shape, np.int16))], rootname=f"jlim{i:05d}q")


def _noop(i: int) -> int:
    return i


def _scheduler_rate(client, n: int, in_flight: int) -> float:
    from distributed import as_completed

    start = time.perf_counter()
    todo = iter(range(n))
    futures = as_completed()
    for i in todo:
        futures.add(client.submit(_noop, i, pure=False))
        if futures.count() >= in_flight:
            break
    for _ in futures:
        nxt = next(todo, None)
        if nxt is not None:
            futures.add(client.submit(_noop, nxt, pure=False))
    return n / (time.perf_counter() - start)


def _manifest_rate(folder: Path, n: int) -> float:
    from deepcr_dask.archive.manifest import Manifest

    manifest = Manifest(folder / "bench-manifest.sqlite")
    start = time.perf_counter()
    for i in range(n):
        manifest.record([{"path": f"/archive/f{i:07d}_flc.fits", "chip": chip, "status": "done", "seconds": 1.0,
                          "cr_pixels": 10, "pixels": 100, "options": "x", "size": 1, "mtime": 1.0}
                         for chip in ("SCI,1", "SCI,2")])
    rate = n / (time.perf_counter() - start)
    manifest.close()
    return rate


def _scan_rate(folder: Path) -> float:
    from concurrent.futures import ThreadPoolExecutor

    from deepcr_dask.archive.layout import find_inputs
    from deepcr_dask.archive.pipeline import CleanOptions
    from deepcr_dask.archive.run import scan_file

    start = time.perf_counter()
    files = [str(f) for f in find_inputs([folder / "in"]).files]
    options = CleanOptions()
    with ThreadPoolExecutor(max_workers=16) as pool:
        infos = [info for info, _ in pool.map(lambda f: scan_file(f, options), files) if info is not None]
    assert len(infos) == len(files)
    return len(files) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    import deepcr_dask as dcr

    rows = []
    with tempfile.TemporaryDirectory(prefix="deepcr-limits-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        _write_files(folder / "in", args.files)
        print(f"wrote {args.files} files in {time.perf_counter() - t0:.1f} s")
        rows.append(("manifest: one commit of 2 chip rows per file", _manifest_rate(folder, args.files)))
        print(rows[-1])
        rows.append(("discovery and header scan on the driver (16 threads), before any task", _scan_rate(folder)))
        print(rows[-1])
        with dcr.make_cluster("local", n_workers=2, threads_per_worker=1, silence_logs=40) as handle:
            handle.wait_for_workers(2)
            rows.append(("scheduler: no-op tasks through the submit loop (4 in flight)",
                         _scheduler_rate(handle.client, args.files, 4)))
            print(rows[-1])
            rows.append(("scheduler: no-op tasks, 64 in flight", _scheduler_rate(handle.client, args.files, 64)))
            print(rows[-1])
            for label, max_in_flight in (("archive run, default bound (2 x threads = 4)", None),
                                         ("archive run, 64 in flight", 64)):
                out = folder / f"out-{max_in_flight}"
                t0 = time.perf_counter()
                summary = dcr.process_archive(folder / "in", out, cluster=handle, progress=False,
                                              max_in_flight=max_in_flight)
                wall = time.perf_counter() - t0
                assert len(summary.done) == args.files, summary.table()
                rows.append((f"{label}: discovery, scan, tasks, manifest", args.files / wall))
                print(rows[-1])
            t0 = time.perf_counter()
            summary = dcr.process_archive(folder / "in", out, cluster=handle, progress=False)
            assert len(summary.already_done) == args.files
            rows.append(("restart with every file complete: stat + manifest lookup each",
                         args.files / (time.perf_counter() - t0)))
            print(rows[-1])

    lines = [
        "# Per-file costs on the driver (archive runs)",
        "",
        f"{args.files} FLC files of 64x64 px (one chip), cleaned with the default model on a local cluster of 2 "
        f"workers x 1 thread; run {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by "
        f"`python bench/archive_limits.py --files {args.files}`.",
        "",
        f"CPU: {_cpu()}; deepcr-dask {dcr.__version__}.",
        "",
        "| what | files (or tasks) per second | per file |",
        "|---|---:|---:|",
    ]
    lines += [f"| {label} | {rate:,.0f} | {1e3 / rate:.2f} ms |" for label, rate in rows]
    lines += ["", "The archive rows include the header scan and cleaning each file on the 2 workers (which share the "
              "2 cores with the driver and the scheduler): the whole pipeline per small file, not the driver alone. "
              "See deploy/README.md for what these mean at 10^5-10^6 files."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        (HERE / "results" / "archive-limits.md").write_text(text)


if __name__ == "__main__":
    main()
