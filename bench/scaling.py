#!/usr/bin/env python
"""Scaling benchmark: an archive-sized workload through ``clean_dask`` against the plain Cleaner.

The same seeded synthetic frames (default 16 of 2048x2048 float32, in electrons) are cleaned
(ACS-WFC mask + 5x5 median inpainting, on the CPU) by:

* ``cleaner-2t`` / ``cleaner-1t``: ``Cleaner("ACS-WFC").clean(frame)`` in-process, torch 2 / 1 threads
  (``cleaner-2t`` is the baseline every overhead is taken against);
* ``dask-sync``: ``clean_dask`` on in-memory frames with the synchronous scheduler, in-process;
* ``cluster-WxT-C``: ``clean_dask`` on a ``make_cluster("local")`` of W worker processes with T
  threads each, frames chunked C x C. The frames are generated *on the workers* (one seeded task per
  frame, persisted before timing), so no image data leaves the client; outputs are reduced on the
  workers (``mask.sum()``, ``cleaned.sum()``, one ``dask.compute``), so none comes back.

Every configuration runs in its own child process (and cluster), so peak RSS values are its own.
Model loading and a warm-up clean happen before the clock starts and are reported separately, as is
frame generation. The mask pixel count and cleaned-image sum of every configuration are compared
with the baseline's (``clean_dask`` reproduces the Cleaner exactly for any chunking).

Usage::

    python bench/scaling.py                      # 16 x 2048^2, seven configurations (~20 min, 2 idle cores)
    python bench/scaling.py --quick              # 4 x 1024^2, prints only
    python bench/scaling.py --frames 8 --size 1024 --configs cleaner-2t cluster-1x2-full

Writes ``bench/results/scaling.md`` and ``bench/results/scaling.json`` (unless ``--quick`` or
``--no-write``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODEL = "ACS-WFC"
BASELINE = "cleaner-2t"
OVERHEAD_TARGET = 0.10
SEED = 20240611
WARMUP_SIZE = 256  # side of the warm-up frame (its clean is excluded from timings)
WARMUP_INDEX = 999_999  # seed index of the warm-up frame (never one of the measured frames)

# name -> (kind, workers, threads, chunk) ; chunk "full" = one block per frame, "half" = 2x2 blocks
CONFIGS: dict[str, tuple[str, int, int, str | None]] = {
    "cleaner-2t": ("cleaner", 1, 2, None),
    "cleaner-1t": ("cleaner", 1, 1, None),
    "dask-sync": ("sync", 1, 2, "full"),
    "cluster-1x2-full": ("cluster", 1, 2, "full"),
    "cluster-1x2-half": ("cluster", 1, 2, "half"),
    "cluster-2x1-full": ("cluster", 2, 1, "full"),
    # The plain Cleaner submitted per frame (client.map) to a 1-worker x 2-thread cluster: separates
    # the cost of clean_dask's graph from that of running two tasks at once on a worker.
    "cluster-1x2-cleaner": ("cluster-cleaner", 1, 2, "full"),
    # process_archive over the frames written as FLC files, against clean_file on each in-process (the
    # same reading and writing without Dask):
    "archive-inprocess": ("archive-inprocess", 1, 2, None),
    "archive-1x2": ("archive", 1, 2, None),
    "archive-2x1": ("archive", 2, 1, None),
    # Not run by default:
    "cluster-2x1-half": ("cluster", 2, 1, "half"),
    "cluster-1x1-full": ("cluster", 1, 1, "full"),
}
DEFAULT_CONFIGS = ["cleaner-2t", "cleaner-1t", "dask-sync", "cluster-1x2-full", "cluster-1x2-half",
                   "cluster-2x1-full", "cluster-1x2-cleaner"]
OVERHEAD_ROW = "cluster-1x2-full"  # "overhead of the Dask path over the plain Cleaner on one worker"
SAME_WORKER_ROW = "cluster-1x2-cleaner"  # the plain Cleaner on that same worker


# -- synthetic frames ----------------------------------------------------------------------------------
def make_frame(index: int, size: int, cr_fraction: float = 0.005) -> np.ndarray:
    """Seeded synthetic frame ``index`` (float32, electrons), identical wherever it is generated.

    Sky ~100 e- with a small gradient, ~300 Gaussian stars per 2048^2, Poisson + 5 e- read noise, then
    short bright cosmic-ray tracks on about ``cr_fraction`` of the pixels.
    """
    rng = np.random.default_rng([SEED, index, size])
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    expected = np.float32(100.0) + np.float32(6.0) * ramp[None, :] + np.float32(3.0) * ramp[:, None]

    n_stars = max(20, round(300 * size * size / 2048**2))
    r = 7
    offsets = np.arange(-r, r + 1, dtype=np.float32)
    ys, xs = rng.uniform(r, size - r - 1, n_stars), rng.uniform(r, size - r - 1, n_stars)
    fluxes, sigmas = 10 ** rng.uniform(2.5, 5.0, n_stars), rng.uniform(0.8, 1.8, n_stars)
    for y, x, flux, sigma in zip(ys, xs, fluxes, sigmas):
        iy, ix = int(y), int(x)
        gy = np.exp(-((iy + offsets - y) ** 2) / (2 * sigma**2))
        gx = np.exp(-((ix + offsets - x) ** 2) / (2 * sigma**2))
        expected[iy - r:iy + r + 1, ix - r:ix + r + 1] += (flux / (2 * np.pi * sigma**2)) * np.outer(gy, gx)

    frame = rng.poisson(expected).astype(np.float32)
    del expected
    frame += rng.standard_normal(frame.shape, dtype=np.float32) * np.float32(5.0)

    # Cosmic rays: straight tracks of 1-10 px (a third two pixels wide), 200-4000 e- per pixel.
    hits = np.zeros(size * size, np.float32)
    target = cr_fraction * size * size
    while np.count_nonzero(hits) < target:
        n = max(1, int((target - np.count_nonzero(hits)) / 5))
        length = rng.integers(1, 11, n)
        angle = rng.uniform(0.0, np.pi, n)
        y0, x0 = rng.uniform(0, size, n), rng.uniform(0, size, n)
        level = 10 ** rng.uniform(np.log10(200), np.log10(4000), n)
        step = np.arange(10)[None, :]
        on = step < length[:, None]
        wide = on & (rng.random(n) < 1 / 3)[:, None]
        dy, dx = np.sin(angle)[:, None], np.cos(angle)[:, None]
        for shift, select, factor in ((0.0, on, 1.0), (1.0, wide, 0.4)):
            py = np.rint(y0[:, None] + step * dy + shift * dx)[select].astype(np.int64)
            px = np.rint(x0[:, None] + step * dx - shift * dy)[select].astype(np.int64)
            value = (factor * level[:, None] * rng.uniform(0.6, 1.4, on.shape))[select].astype(np.float32)
            inside = (py >= 0) & (py < size) & (px >= 0) & (px < size)
            np.maximum.at(hits, py[inside] * size + px[inside], value[inside])
    frame += hits.reshape(size, size)
    return frame


# -- measurements (child process) ----------------------------------------------------------------------
def _maxrss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: KiB


def _chunk(kind: str | None, size: int) -> int | None:
    return None if kind is None else (size if kind == "full" else max(1, size // 2))


def _set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _timed(run, repeats: int) -> tuple[list[float], list, dict]:
    """Call ``run() -> (wall s, sums, graph info)`` ``repeats`` times; all walls, the first sums and graph."""
    walls, first, graph = [], None, {}
    for _ in range(max(1, repeats)):
        wall, sums, graph = run()
        walls.append(wall)
        first = first if first is not None else sums
    return walls, first, graph


def run_in_process(name: str, frames: int, size: int, repeats: int = 1) -> dict:
    """``cleaner-*`` and ``dask-sync``: frames generated in this process, then cleaned."""
    kind, _workers, threads, chunk_kind = CONFIGS[name]
    t0 = time.perf_counter()
    import torch  # noqa: F401  (import time is part of "model load", as on a fresh worker)

    import deepcr_dask as dcr
    from deepcr_dask.distributed import engine
    _set_torch_threads(threads)
    # dask-sync: fill the process-level cache clean_dask's blocks will use
    config = engine.CleanerConfig(MODEL, device="cpu")
    cleaner = dcr.Cleaner(MODEL, device="cpu") if kind == "cleaner" else config.build()
    load_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    images = [make_frame(i, size) for i in range(frames)]
    generate_s = time.perf_counter() - t0

    warm = make_frame(WARMUP_INDEX, WARMUP_SIZE)
    if kind == "cleaner":
        t0 = time.perf_counter()
        cleaner.clean(warm)
        warmup_s = time.perf_counter() - t0

        def run():
            t0 = time.perf_counter()
            sums = []
            for image in images:
                mask, cleaned = cleaner.clean(image)
                sums.append((int(mask.sum()), float(cleaned.sum(dtype=np.float64))))
            return time.perf_counter() - t0, sums, {}
    else:
        import dask
        import dask.array as da

        chunk = _chunk(chunk_kind, size)
        t0 = time.perf_counter()
        m, c = dcr.clean_dask(da.from_array(warm), mask=MODEL, device="cpu")
        dask.compute(m.sum(), c.sum(dtype=np.float64), scheduler="synchronous")
        warmup_s = time.perf_counter() - t0

        def run():
            t0 = time.perf_counter()
            reductions = _reductions([da.from_array(image, chunks=chunk) for image in images], dcr)
            build_s = time.perf_counter() - t0
            graph = {"build_s": build_s, "tasks": _task_count(reductions)}
            t0 = time.perf_counter()
            flat = dask.compute(*reductions, scheduler="synchronous")
            wall = time.perf_counter() - t0 + build_s  # graph building is part of the Dask path's cost
            return wall, [(int(a), float(b)) for a, b in zip(flat[0::2], flat[1::2])], graph

    walls, sums, graph = _timed(run, repeats)
    return _record(load_s, generate_s, warmup_s, walls, graph, sums,
                   rss_gb=[_maxrss_gb()], loads=[engine.load_count()])


def _record(load_s: float, generate_s: float, warmup_s: float, walls: list[float], graph: dict, sums: list,
            **extra) -> dict:
    """One configuration's result: the timings every configuration has, then its own fields."""
    return {"load_s": load_s, "generate_s": generate_s, "warmup_s": warmup_s, "wall_s": min(walls),
            "walls_s": walls, "graph": graph, **extra, "sums": sums}


def _reductions(arrays, dcr) -> list:
    out = []
    for array in arrays:
        mask, cleaned = dcr.clean_dask(array, mask=MODEL, device="cpu")
        out += [mask.sum(), cleaned.sum(dtype=np.float64)]
    return out


def _task_count(collections) -> int | None:
    """Tasks in the optimised graph of ``collections`` (None where this dask cannot say)."""
    import dask

    try:
        return len(dask.base.collections_to_expr(collections, optimize_graph=True).__dask_graph__())
    except (AttributeError, TypeError):
        return None


def _worker_stats() -> tuple[float, int, int]:
    """(peak RSS GB, Cleaners built, torch threads) of the calling worker process."""
    import torch

    from deepcr_dask.distributed import engine
    return _maxrss_gb(), engine.load_count(), torch.get_num_threads()


def _clean_frame(image: np.ndarray) -> tuple[int, float]:
    """Plain Cleaner on one frame, on a worker (the process-level cache the plugin filled)."""
    from deepcr_dask.distributed.engine import CleanerConfig, worker_cleaner

    mask, cleaned = worker_cleaner(CleanerConfig(MODEL, device="cpu")).clean(image)
    return int(mask.sum()), float(cleaned.sum(dtype=np.float64))


def run_cluster(name: str, frames: int, size: int, repeats: int = 1) -> dict:
    """``cluster-*``: a fresh local cluster; frames generated and persisted on the workers."""
    import dask
    import dask.array as da
    from distributed import futures_of, wait

    import deepcr_dask as dcr

    kind, workers, threads, chunk_kind = CONFIGS[name]
    chunk = _chunk(chunk_kind, size)
    t0 = time.perf_counter()
    handle = dcr.make_cluster("local", n_workers=workers, threads_per_worker=threads, silence_logs=40)
    try:
        client = handle.client
        handle.wait_for_workers(workers)
        start_s = time.perf_counter() - t0

        # Model load: the first clean_dask call registers the plugin, which builds one Cleaner per worker.
        warm = da.from_delayed(dask.delayed(make_frame, pure=True)(WARMUP_INDEX, WARMUP_SIZE),
                               (WARMUP_SIZE, WARMUP_SIZE), np.float32)
        t0 = time.perf_counter()
        m, c = dcr.clean_dask(warm, mask=MODEL, device="cpu")
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        client.compute([m.sum(), c.sum(dtype=np.float64)], sync=True)  # every worker runs one task too:
        client.run(_clean_frame, make_frame(WARMUP_INDEX, WARMUP_SIZE))  # warms torch in all worker processes
        warmup_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        lazy = [da.from_delayed(dask.delayed(make_frame, pure=True)(i, size), (size, size), np.float32)
                for i in range(frames)]
        persisted = client.persist(lazy)
        wait(persisted)
        generate_s = time.perf_counter() - t0
        placement = {w: len(keys) for w, keys in client.has_what().items()}


        def run_cleaner():
            t0 = time.perf_counter()
            blocks = [futures_of(p)[0] for p in persisted]  # one chunk per frame
            results = client.gather(client.map(_clean_frame, blocks, pure=False))
            return time.perf_counter() - t0, [list(r) for r in results], {}

        def run_dask():
            t0 = time.perf_counter()
            arrays = [p.rechunk((chunk, chunk)) if chunk != size else p for p in persisted]
            reductions = _reductions(arrays, dcr)
            build_s = time.perf_counter() - t0
            graph = {"build_s": build_s, "tasks": _task_count(reductions)}
            t0 = time.perf_counter()
            flat = dask.compute(*reductions)
            wall = time.perf_counter() - t0 + build_s
            return wall, [(int(a), float(b)) for a, b in zip(flat[0::2], flat[1::2])], graph

        walls, sums, graph = _timed(run_cleaner if kind == "cluster-cleaner" else run_dask, repeats)
        stats = client.run(_worker_stats)
        return {"cluster_start_s": start_s, **_record(
            load_s, generate_s, warmup_s, walls, graph, sums, placement=placement,
            rss_gb=[s[0] for s in stats.values()], loads=[s[1] for s in stats.values()],
            torch_threads=[s[2] for s in stats.values()], client_rss_gb=_maxrss_gb())}
    finally:
        handle.close()


def _write_archive(folder: Path, frames: int, size: int) -> list[Path]:
    from deepcr_dask.demo import write_flc

    paths = []
    for i in range(frames):
        image = make_frame(i, size)
        paths.append(write_flc(folder / f"jscal{i:02d}q_flc.fits", [(image, np.sqrt(np.abs(image) + 25),
                                                                     np.zeros(image.shape, np.int16))],
                               rootname=f"jscal{i:02d}q"))
    return paths


def run_archive(name: str, frames: int, size: int, repeats: int = 1) -> dict:
    """``archive-*``: FLC files on disk cleaned by process_archive on a local cluster, or by clean_file in-process."""
    kind, workers, threads, _ = CONFIGS[name]
    import deepcr_dask as dcr
    from deepcr_dask.archive.pipeline import CleanOptions, clean_file
    from deepcr_dask.distributed import engine

    with tempfile.TemporaryDirectory(prefix="deepcr-scaling-") as tmp:
        t0 = time.perf_counter()
        paths = _write_archive(Path(tmp) / "in", frames, size)
        warm = _write_archive(Path(tmp) / "warm", 1, WARMUP_SIZE)
        generate_s = time.perf_counter() - t0
        options = CleanOptions(model=MODEL, device="cpu")
        if kind == "archive-inprocess":
            _set_torch_threads(threads)
            t0 = time.perf_counter()
            clean_file(warm[0], options, output=Path(tmp) / "warm.fits")
            load_s = warmup_s = time.perf_counter() - t0

            def run():
                t0 = time.perf_counter()
                results = [clean_file(p, options, output=Path(tmp) / "out" / p.name) for p in paths]
                sums = [(int(r.chips[0].mask.sum()), float(r.chips[0].cleaned.sum(dtype=np.float64))) for r in results]
                return time.perf_counter() - t0, sums, {}

            walls, sums, graph = _timed(run, repeats)
            return _record(load_s, generate_s, warmup_s, walls, graph, sums, rss_gb=[_maxrss_gb()],
                           loads=[engine.load_count()])
        handle = dcr.make_cluster("local", n_workers=workers, threads_per_worker=threads, silence_logs=40)
        try:
            handle.wait_for_workers(workers)
            t0 = time.perf_counter()
            dcr.process_archive(warm, Path(tmp) / "warm-out", cluster=handle, model=MODEL, device="cpu",
                                progress=False)
            handle.client.run(_clean_frame, make_frame(WARMUP_INDEX, WARMUP_SIZE))  # torch warm in every worker
            load_s = warmup_s = time.perf_counter() - t0
            counter = iter(range(1000))

            def run():
                out = Path(tmp) / f"out{next(counter)}"
                t0 = time.perf_counter()
                summary = dcr.process_archive(paths, out, cluster=handle, model=MODEL, device="cpu", progress=False)
                wall = time.perf_counter() - t0
                assert len(summary.done) == frames, summary.table()
                from deepcr_dask.archive.manifest import Manifest

                rows = {Path(r["path"]).name: r for r in Manifest(out / "manifest.sqlite").rows()}
                return wall, [(rows[p.name]["cr_pixels"], float("nan")) for p in paths], {}

            walls, sums, graph = _timed(run, repeats)
            stats = handle.client.run(_worker_stats)
            return _record(load_s, generate_s, warmup_s, walls, graph, sums,
                           rss_gb=[s[0] for s in stats.values()], loads=[s[1] for s in stats.values()],
                           torch_threads=[s[2] for s in stats.values()], client_rss_gb=_maxrss_gb())
        finally:
            handle.close()


def child(args: argparse.Namespace) -> None:
    name = args.one
    kind = CONFIGS[name][0]
    run = run_cluster if kind.startswith("cluster") else run_archive if kind.startswith("archive") else run_in_process
    result = run(name, args.frames, args.size, args.repeats)
    Path(args.out).write_text(json.dumps(result))


# -- parent: orchestration, machine load, report -------------------------------------------------------
def _cpu_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_quiet(max_wait: float, window: float = 2.0, threshold: float = 0.25) -> float:
    """Wait up to ``max_wait`` s for a ``window`` in which the machine is busy < ``threshold`` cores."""
    t0 = time.perf_counter()
    while True:
        busy = _cpu_busy_s()
        time.sleep(window)
        if (_cpu_busy_s() - busy) / window < threshold or time.perf_counter() - t0 >= max_wait:
            return time.perf_counter() - t0


def measure(name: str, args: argparse.Namespace) -> dict:
    waited = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else 0.0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--out", str(out),
               "--frames", str(args.frames), "--size", str(args.size), "--repeats", str(args.repeats)]
        load0 = os.getloadavg()
        busy0, mine0, t0 = _cpu_busy_s(), _children_cpu_s(), time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        mine = _children_cpu_s() - mine0  # includes the worker processes (reaped by the child)
        others = max(0.0, _cpu_busy_s() - busy0 - mine)
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout)[-3000:]
            print(f"  {name}: FAILED (exit {proc.returncode})\n{tail}", file=sys.stderr)
            return {"name": name, "error": tail}
        result = json.loads(out.read_text())
    result.update(name=name, waited_s=waited, process_s=elapsed, own_cpu_s=mine, others_cpu_s=others,
                  others_cores=others / elapsed, loadavg_before=load0, loadavg_after=os.getloadavg())
    return result


def machine_info() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    mem = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = next((int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:")), 0)

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {d: version(d) for d in ("deepcr-dask", "torch", "numpy", "dask", "distributed")},
    }


def merge_rounds(configs: list[str], rounds: list[list[dict]]) -> list[dict]:
    """One result per configuration: its fastest round, with every round's wall time and others' CPU."""
    merged = []
    for name in configs:
        runs = [r for results in rounds for r in results if r["name"] == name]
        ok = [r for r in runs if "error" not in r]
        if not ok:
            merged.append(runs[0])
            continue
        best = dict(min(ok, key=lambda r: r["wall_s"]))
        best["rounds_s"] = [r["wall_s"] for r in ok]
        best["rounds_others_cores"] = [r["others_cores"] for r in ok]
        best["rss_gb_all_rounds"] = max(max(r["rss_gb"]) for r in ok)
        merged.append(best)
    return merged


def summarise(results: list[dict], frames: int, size: int) -> list[dict]:
    mpix = frames * size * size / 1e6
    base = next((r for r in results if r["name"] == BASELINE and "error" not in r), None)
    by_name = {r["name"]: r for r in results if "error" not in r}
    rows = []
    for r in results:
        kind, workers, threads, chunk_kind = CONFIGS[r["name"]]
        row = {"name": r["name"], "workers": workers, "threads": threads, "chunk": _chunk(chunk_kind, size),
               "in_process": kind not in ("cluster", "cluster-cleaner", "archive")}
        if "error" in r:
            rows.append({**row, "error": True})
            continue
        row.update(wall_s=r["wall_s"], mpix_s=mpix / r["wall_s"], rss_gb=max(r["rss_gb"]),
                   overhead=(r["wall_s"] - base["wall_s"]) / base["wall_s"] if base else None,
                   others_cores=r["others_cores"])
        archive_base = by_name.get("archive-inprocess")
        if kind == "archive" and archive_base:  # against the same files cleaned in-process (cr pixels only)
            row["vs_archive_inprocess"] = (r["wall_s"] - archive_base["wall_s"]) / archive_base["wall_s"]
            row["matches_baseline"] = [a[0] for a in r["sums"]] == [b[0] for b in archive_base["sums"]]
        elif base:
            row["matches_baseline"] = all(
                a[0] == b[0] and abs(a[1] - b[1]) <= 1e-6 * abs(b[1]) for a, b in zip(r["sums"], base["sums"]))
        rows.append(row)
    return rows


def _table(rows: list[dict]) -> str:
    lines = ["| configuration | workers×threads | chunks | wall s | Mpix/s | per-worker peak RSS GB "
             "| overhead vs Cleaner | others' CPU (cores) |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        where = "in-process" if row["in_process"] else f"{row['workers']}×{row['threads']}"
        if row["in_process"]:
            where += f" (torch {row['threads']})" if row["name"].startswith(("cleaner", "archive")) else \
                " (sync, torch 2)"
        chunks = "-" if row["chunk"] is None else f"{row['chunk']}²"
        if row.get("error"):
            lines.append(f"| {row['name']} | {where} | {chunks} | failed | | | | |")
            continue
        overhead = "-" if row["overhead"] is None or row["name"] == BASELINE else f"{row['overhead']:+.1%}"
        if row["name"] == OVERHEAD_ROW and row["overhead"] is not None:
            overhead = f"**{overhead}**"
        check = "" if row.get("matches_baseline", True) else " (output differs!)"
        if "vs_archive_inprocess" in row:
            overhead += f" ({row['vs_archive_inprocess']:+.1%} vs archive-inprocess)"
        lines.append(f"| {row['name']}{check} | {where} | {chunks} | {row['wall_s']:.1f} | {row['mpix_s']:.2f} "
                     f"| {row['rss_gb']:.2f} | {overhead} | {row['others_cores']:.2f} |")
    return "\n".join(lines)


def _noisy(rows: list[dict], threshold: float = 0.25) -> list[str]:
    """Warning naming the rows timed while other processes used more than ``threshold`` cores."""
    noisy = [row["name"] for row in rows if not row.get("error") and row["others_cores"] > threshold]
    if not noisy:
        return []
    return [f"- **Not comparable**: other jobs used more than {threshold} cores on average while "
            f"{', '.join(f'`{n}`' for n in noisy)} ran; on a 2-core machine that alone can lengthen a row by "
            "50% or more, so differences against the quiet rows are not overheads of the code measured."]


def _same_worker(rows: list[dict]) -> list[str]:
    """Note comparing clean_dask with the plain Cleaner on the same 1-worker cluster, when both ran."""
    ok = {row["name"]: row for row in rows if not row.get("error")}
    if OVERHEAD_ROW not in ok or SAME_WORKER_ROW not in ok:
        return []
    dask_s, plain_s = ok[OVERHEAD_ROW]["wall_s"], ok[SAME_WORKER_ROW]["wall_s"]
    return [f"- clean_dask against the plain Cleaner submitted per frame to the same kind of worker "
            f"(`{OVERHEAD_ROW}` vs `{SAME_WORKER_ROW}`, both running two frames at a time): "
            f"{(dask_s - plain_s) / plain_s:+.1%}."]


def report(results: list[dict], rows: list[dict], args: argparse.Namespace, info: dict, total_s: float,
           started: str) -> str:
    by_name = {r["name"]: r for r in results if "error" not in r}
    gen = [r["generate_s"] / args.frames for r in by_name.values() if not CONFIGS[r["name"]][0].startswith("cluster")]
    overhead = next((row["overhead"] for row in rows if row["name"] == OVERHEAD_ROW and not row.get("error")), None)
    lines = [
        "# Scaling: clean_dask against the plain Cleaner",
        "",
        f"{args.frames} synthetic {args.size}x{args.size} float32 frames ({args.frames * args.size**2 / 1e6:.1f} Mpix; "
        f"sky ~100 e-, stars, Poisson + 5 e- read noise, ~0.5% cosmic-ray pixels, seed {SEED}), "
        f"`{MODEL}` mask + median inpainting on the CPU. Run {started} by `python bench/scaling.py"
        f"{'' if not args.argv else ' ' + ' '.join(args.argv)}` in {total_s / 60:.1f} min.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, {info['platform']}; "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".",
        "",
        _table(rows),
        "",
        "- *wall s*: cleaning only (graph building included for the Dask rows); model load, warm-up and frame "
        "generation excluded"
        + (f"; the fastest of {args.repeats} passes per process" if args.repeats > 1 else "")
        + (f"; the fastest of {args.rounds} interleaved rounds (each round's time is listed below)"
           if args.rounds > 1 else "")
        + ". *Mpix/s* = image pixels / wall s.",
        "- *per-worker peak RSS*: `ru_maxrss` of each worker process (the largest is shown), or of the child "
        "process for in-process rows; it includes the frames the process holds (16.8 MB per 2048² frame: "
        "in-process rows hold all of them, cluster workers their persisted share).",
        f"- *overhead vs Cleaner* = (wall − wall of `{BASELINE}`) / wall of `{BASELINE}`. The overhead of the Dask "
        f"path over the plain Cleaner on one worker is the `{OVERHEAD_ROW}` row"
        + (f": **{overhead:+.1%}** (target < {OVERHEAD_TARGET:.0%})." if overhead is not None else "."),
        *_same_worker(rows),
        "- *others' CPU*: CPU the rest of the machine used during the row (cores, averaged, over the whole child "
        "process); non-zero values mean the timing shared the cores with other jobs.",
        *_noisy(rows),
        "",
        "| configuration | model load s | warm-up s | frame generation s/frame | cluster start s | tasks "
        "| graph build s | Cleaners built per worker | load avg (1 min) before → after | wall s, every round |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            continue
        g = r.get("graph") or {}
        start = f"{r['cluster_start_s']:.1f}" if "cluster_start_s" in r else "-"
        build = f"{g['build_s']:.2f}" if "build_s" in g else "-"
        lines.append(
            f"| {r['name']} | {r['load_s']:.2f} | {r['warmup_s']:.2f} | {r['generate_s'] / args.frames:.2f} "
            f"| {start} | {g.get('tasks') or '-'} | {build} | {r['loads']} "
            f"| {r['loadavg_before'][0]:.2f} → {r['loadavg_after'][0]:.2f} "
            f"| {', '.join(f'{w:.1f}' for w in r.get('rounds_s', [r['wall_s']]))} |"
        )
    lines += [
        "",
        "Model load: in-process rows time importing torch and building the Cleaner; cluster rows time the first "
        "`clean_dask` call, which registers the `CleanerPlugin` (every worker imports deepcr_dask and torch and "
        "builds its Cleaner once, as the *Cleaners built* column confirms). Frame generation on the cluster is "
        "the persist of one generator task per frame across all workers (wall time / frames)."
        + (f" In-process generation costs {np.mean(gen):.2f} s per frame." if gen else ""),
    ]
    checked = [row for row in rows if "matches_baseline" in row]
    mismatched = [row["name"] for row in checked if not row["matches_baseline"]]
    if checked:
        lines += ["", "Outputs: " + (f"differ from the baseline's in {', '.join(mismatched)}!" if mismatched else
                                     "every configuration's mask pixel counts and cleaned-image sums (per frame) "
                                     "match the baseline's.")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=16, help="number of frames (default 16)")
    parser.add_argument("--size", type=int, default=2048, help="frame side in pixels (default 2048)")
    parser.add_argument("--quick", action="store_true", help="4 frames of 1024^2; prints only")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=None,
                        help=f"configurations to run (default: {' '.join(DEFAULT_CONFIGS)})")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed passes per configuration (after one warm-up); the fastest is reported")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run all configurations this many times in turn (each in a fresh process); "
                             "the fastest round of each is reported. Interleaving evens out other jobs' load")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each configuration, wait up to SECONDS for the machine to be idle "
                             "(other processes below a quarter of a core over 2 s)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--results", type=Path, default=HERE / "results", help="output folder")
    parser.add_argument("--one", choices=list(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.one:
        child(args)
        return
    if args.quick:
        args.frames, args.size = 4, 1024
    configs = args.configs or DEFAULT_CONFIGS
    if BASELINE not in configs:
        configs = [BASELINE, *configs]

    started = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    info = machine_info()
    print(f"{args.frames} frames of {args.size}², {info['cores']} cores; load average {os.getloadavg()[0]:.2f}",
          flush=True)
    t_start = time.perf_counter()
    rounds = []
    for index in range(max(1, args.rounds)):
        if args.rounds > 1:
            print(f" round {index + 1} of {args.rounds}", flush=True)
        rounds.append([])
        for name in configs:
            result = measure(name, args)
            rounds[-1].append(result)
            if "error" not in result:
                print(f"  {name:22s} {result['wall_s']:7.1f} s   (others used {result['others_cores']:.2f} cores)",
                      flush=True)
    results = merge_rounds(configs, rounds)
    total_s = time.perf_counter() - t_start
    rows = summarise(results, args.frames, args.size)
    text = report(results, rows, args, info, total_s, started)
    print()
    print(text)
    if args.quick or args.no_write:
        return
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "scaling.md").write_text(text)
    payload = {"started": started, "total_s": total_s, "frames": args.frames, "size": args.size, "model": MODEL,
               "seed": SEED, "machine": info, "baseline": BASELINE, "overhead_row": OVERHEAD_ROW,
               "rows": rows, "results": results}
    (args.results / "scaling.json").write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.results / 'scaling.md'} and {args.results / 'scaling.json'}")


if __name__ == "__main__":
    main()
