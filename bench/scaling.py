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

The ``archive-slurm-*`` rows run the archive on the multi-node test SLURM (``tests/slurm/start-nodes.sh``): one
job on one node (1 worker x 2 threads, or 2 x 1), or one single-threaded job on each of two nodes; the same two
cores in all. ``--name scaling-nodes`` keeps their table apart from the main one.

Every configuration runs in its own child process (and cluster), so peak RSS values are its own.
Model loading and a warm-up clean happen before the clock starts and are reported separately, as is
frame generation. The mask pixel count and cleaned-image sum of every configuration are compared
with the baseline's (``clean_dask`` reproduces the Cleaner exactly for any chunking).

Usage::

    python bench/scaling.py                      # 16 x 2048^2, seven configurations (~20 min, 2 idle cores)
    python bench/scaling.py --quick              # 4 x 1024^2, prints only
    python bench/scaling.py --frames 8 --size 1024 --configs cleaner-2t cluster-1x2-full
    python bench/scaling.py --frames 6 --rounds 2 --name scaling-nodes --configs archive-inprocess archive-1x2 \
        archive-2x1 archive-slurm-1node-1x2 archive-slurm-1node-2x1 archive-slurm-2nodes-2x1

Writes ``bench/results/scaling.md`` and ``bench/results/scaling.json`` (``--name`` for another stem; unless
``--quick`` or ``--no-write``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
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
    # The same on the multi-node test SLURM (tests/slurm/start-nodes.sh): one job on one node, or one job
    # on each of two nodes, the same 2 cores in all; workers are SLURM jobs inside the nodes' namespaces.
    "archive-slurm-1node-1x2": ("archive-slurm", 1, 2, None),
    "archive-slurm-1node-2x1": ("archive-slurm", 2, 1, None),
    "archive-slurm-2nodes-2x1": ("archive-slurm", 2, 1, None),
    # Not run by default:
    "cluster-2x1-half": ("cluster", 2, 1, "half"),
    "cluster-1x1-full": ("cluster", 1, 1, "full"),
}
DEFAULT_CONFIGS = ["cleaner-2t", "cleaner-1t", "dask-sync", "cluster-1x2-full", "cluster-1x2-half",
                   "cluster-2x1-full", "cluster-1x2-cleaner"]
# SLURM rows: (jobs, cores per job, worker processes per job, one job per node)
SLURM_JOBS = {"archive-slurm-1node-1x2": (1, 2, 1, False), "archive-slurm-1node-2x1": (1, 2, 2, False),
              "archive-slurm-2nodes-2x1": (2, 1, 1, True)}
NODES_JSON = Path(os.environ.get("DEEPCR_DASK_SLURM_NODES", "/etc/slurm-nodes/cluster.json"))
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


def chunk_side(kind: str | None, size: int) -> int | None:
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

        chunk = chunk_side(chunk_kind, size)
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
    chunk = chunk_side(chunk_kind, size)
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
        # One warm-up file per worker thread, so that every worker builds its Cleaner (the archive's own
        # configuration: a Cleaner of another one would be a second model in memory) before the clock starts.
        warm = _write_archive(Path(tmp) / "warm", 2 * workers * threads, WARMUP_SIZE)
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
        if kind == "archive-slurm":
            handle = _slurm_nodes_cluster(name, Path(tmp))
        else:
            handle = dcr.make_cluster("local", n_workers=workers, threads_per_worker=threads, silence_logs=40)
        try:
            handle.wait_for_workers(workers, timeout=300)
            if kind == "archive-slurm":
                hosts = {info["host"] for info in handle.client.scheduler_info()["workers"].values()}
                assert len(hosts) == (2 if SLURM_JOBS[name][3] else 1), hosts
            t0 = time.perf_counter()
            dcr.process_archive(warm, Path(tmp) / "warm-out", cluster=handle, model=MODEL, device="cpu",
                                progress=False)
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


def _slurm_nodes_cluster(name: str, folder: Path):
    """Worker jobs on the multi-node test SLURM (its description written by tests/slurm/start-nodes.sh)."""
    import deepcr_dask as dcr

    nodes = json.loads(NODES_JSON.read_text())
    os.environ["SLURM_CONF"] = nodes["conf"]
    jobs, cores, processes, spread = SLURM_JOBS[name]
    return dcr.make_cluster(
        "slurm", jobs=jobs, cores=cores, processes=processes, memory="6GB", walltime="00:30:00",
        queue=nodes["partition"], interface=nodes["interface"], log_directory=str(folder / "job-logs"),
        local_directory=str(folder), job_extra_directives=["--exclusive"] if spread else [], silence_logs=40)


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
    parser.add_argument("--name", default="scaling", help="results file stem (default scaling: .md and .json)")
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
    from scaling_report import machine_info

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
    from scaling_report import merge_rounds, report, summarise

    results = merge_rounds(configs, rounds)
    total_s = time.perf_counter() - t_start
    rows = summarise(results, args.frames, args.size)
    text = report(results, rows, args, info, total_s, started)
    print()
    print(text)
    if args.quick or args.no_write:
        return
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{args.name}.md").write_text(text)
    payload = {"started": started, "total_s": total_s, "frames": args.frames, "size": args.size, "model": MODEL,
               "seed": SEED, "machine": info, "baseline": BASELINE, "overhead_row": OVERHEAD_ROW,
               "rows": rows, "results": results}
    (args.results / f"{args.name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.results / args.name}.md and .json")


if __name__ == "__main__":
    main()
