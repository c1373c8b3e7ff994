"""Tables of bench/scaling.py: the machine, the fastest round of each configuration, the report in Markdown."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform

import numpy as np
from scaling import (
    BASELINE,
    CONFIGS,
    MODEL,
    OVERHEAD_ROW,
    OVERHEAD_TARGET,
    SAME_WORKER_ROW,
    SEED,
    SLURM_JOBS,
    chunk_side,
)


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
        row = {"name": r["name"], "workers": workers, "threads": threads, "chunk": chunk_side(chunk_kind, size),
               "in_process": kind not in ("cluster", "cluster-cleaner", "archive", "archive-slurm")}
        if "error" in r:
            rows.append({**row, "error": True})
            continue
        row.update(wall_s=r["wall_s"], mpix_s=mpix / r["wall_s"], rss_gb=max(r["rss_gb"]),
                   files_per_min=60 * frames / r["wall_s"],
                   overhead=(r["wall_s"] - base["wall_s"]) / base["wall_s"] if base else None,
                   others_cores=r["others_cores"])
        archive_base = by_name.get("archive-inprocess")
        # Against the same files cleaned in-process (cosmic-ray pixels only).
        if kind in ("archive", "archive-slurm") and archive_base:
            row["vs_archive_inprocess"] = (r["wall_s"] - archive_base["wall_s"]) / archive_base["wall_s"]
            row["matches_baseline"] = [a[0] for a in r["sums"]] == [b[0] for b in archive_base["sums"]]
        elif base and not kind.startswith("archive"):  # archive rows compare with archive-inprocess only
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
        if row["name"] in SLURM_JOBS:
            spread = SLURM_JOBS[row["name"]][3]
            where += f" ({'one job on each of 2 nodes' if spread else '1 job on 1 node'}, SLURM)"
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


def _files_per_minute(rows: list[dict]) -> list[str]:
    """Archive rows as files per minute (SLURM workers are not children of the row's process: their CPU
    counts as others')."""
    archive = [row for row in rows if not row.get("error") and CONFIGS[row["name"]][0].startswith("archive")]
    if not archive:
        return []
    lines = ["", "| archive configuration | files per minute | vs archive-inprocess |", "|---|---:|---:|"]
    for row in archive:
        versus = f"{row['vs_archive_inprocess']:+.1%}" if "vs_archive_inprocess" in row else "-"
        lines.append(f"| {row['name']} | {row['files_per_min']:.1f} | {versus} |")
    if any(row["name"] in SLURM_JOBS for row in archive):
        lines += ["", "- SLURM rows: the worker jobs run under slurmd, not under the row's process, so their CPU is "
                  "counted in *others' CPU*; a quiet machine shows there as about the rows' own cores."]
    return lines


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
        *_files_per_minute(rows),
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
