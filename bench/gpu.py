"""The GPU run: one prepared script for a lent GPU (never CI), under 8 minutes on one H200.

    python bench/gpu.py                 # on the GPU host; writes bench/results/gpu.md (and $OUT/gpu.md)
    python bench/gpu.py --smoke         # the same steps on the CPU at toy sizes (tests/test_gpu_bench.py)

Steps, in order, each printed as it finishes so a run cut short still says something:

1. **Check**: the CUDA device path against the CPU host path in float32 (TF32 off) on real frames from
   ``../shared/data/real`` when present (else simulated ones): max probability difference (target 1e-5) and
   mask agreement; bfloat16 and float16 against float32 likewise (the README's precision table).
2. **One 4096² frame** and **a stream of 64 frames** (8 distinct, each cleaned 8 times, by 4 task threads
   sharing one Cleaner, so their windows share the GPU's batches): mask only, mask + median, mask +
   network inpaint, in float32, bfloat16 and float16; Mpix/s and the GPU's utilisation (nvidia-smi).
3. **Archive**: ``process_archive`` over 16 generated two-chip 2048x4096 files on a LocalCUDACluster
   (dask-cuda), or on a LocalCluster whose one worker advertises the GPU when dask-cuda cannot be
   imported; Mpix/s, against the stream, and the share of the wall time a plain read of the same files
   takes.

Host packages: torch 2.11 (CUDA 13), numpy, scipy; dask, distributed, dask-cuda, astropy and zarr come as
wheels (``bench/gpu_wheels.sh``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

import deepcr_dask as dcr
from deepcr_dask.inference.cleaner import get_cleaner

RESULTS = Path(__file__).parent / "results"
# ../shared does not travel to a lent GPU: carry copies of the frames and point DEEPCR_DASK_REAL_DATA at them.
REAL = Path(os.environ.get("DEEPCR_DASK_REAL_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data"
            / "real")
MODES = {"mask only": (None, False), "mask + median": (None, True),
         "mask + network inpaint": ("ACS-WFC-F606W-2-32", True)}


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except Exception:
        return platform.processor() or "unknown CPU"


_BASES: dict[int, np.ndarray] = {}


def frame(size: int, seed: int) -> np.ndarray:
    """A simulated ACS/WFC-like scene (sky, stars, galaxies, cosmic rays; electrons) of ``size``², assembled
    from four simulated quarter frames (the simulator is the slow part) turned and mirrored by ``seed``."""
    from deepcr_dask.sim import simulate

    half = size // 2
    if half not in _BASES:
        _BASES[half] = np.stack([simulate((half, half), seed=s).image.astype(np.float32) for s in range(4)])
    bases = _BASES[half]
    quarters = [np.rot90(bases[(seed + q) % 4], k=(seed + q) % 4) for q in range(4)]
    if seed % 2:
        quarters = [q[:, ::-1] for q in quarters]
    return np.ascontiguousarray(np.block([[quarters[0], quarters[1]], [quarters[2], quarters[3]]]))


def real_frames(limit: int | None = 3) -> list[tuple[str, str, np.ndarray, np.ndarray | None]]:
    """Real chips (HST, ground), the last of each file: ``(name, its camera's default model, electrons,
    ignored pixels)``, if the real frames are here (``limit=None``: all of them)."""
    from deepcr_dask.io.fits import inspect_file, read_chip

    found = []
    for path in sorted(REAL.glob("*.fits")):
        try:
            info = inspect_file(path)
            if not info.product.cleanable(()) or not info.chips:
                continue
            chip = info.chips[-1]
            electrons, ignore = read_chip(path, chip)
        except Exception as exc:  # a frame this host cannot read: said, then the others
            print(f"skipped {path.name}: {exc}", flush=True)
            continue
        found.append((f"{path.name} {chip.name}", info.model, electrons, ignore))
        if limit is not None and len(found) >= limit:
            break
    return found


class Utilisation:
    """GPU utilisation sampled by nvidia-smi every 0.2 s while the block runs (None without nvidia-smi)."""

    def __enter__(self):
        self.samples, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.2):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout
                self.samples.append(float(out.split()[0]))
            except Exception:
                return

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> str:
        return f"{np.mean(self.samples):.0f}%" if self.samples else "n/a"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def check(device: str, frames, say) -> list[str]:
    """CUDA (device path) vs CPU (host path) in float32; bf16 / fp16 vs float32 on the device."""
    lines = ["| frame | precision | max abs prob diff | mask pixels differing | of flagged |", "|---|---|---|---|---|"]
    precisions = ("float32", "bfloat16", "float16") if device.startswith("cuda") else ("float32",)
    for name, model, image, ignore in frames:
        reference = dcr.Cleaner(model, device="cpu", tile=1024).run(image, ignore=ignore)
        for precision in precisions:
            gpu = dcr.Cleaner(model, device=device, tile=1024, precision=precision)
            out = gpu.run(image, ignore=ignore)
            diff = float(np.abs(out["probability"] - reference["probability"]).max())
            differ = int((out["mask"] != reference["mask"]).sum())
            lines.append(f"| {name} | {precision} | {diff:.2e} | {differ} | {int(reference['mask'].sum())} |")
            say(lines[-1])
    return lines


def throughput(device: str, size: int, n_stream: int, say) -> list[str]:
    lines = ["| mode | precision | one frame Mpix/s | stream Mpix/s | GPU utilisation (stream) |",
             "|---|---|---|---|---|"]
    images = [frame(size, seed) for seed in range(min(8, n_stream))]
    precisions = ("float32", "bfloat16", "float16") if device.startswith("cuda") else ("float32",)
    for mode, (inpaint, inpainting) in MODES.items():
        for precision in precisions:
            cleaner = get_cleaner("ACS-WFC", inpaint, device, tile=1024, precision=precision)
            cleaner.run(images[0])  # warm-up: cuDNN's algorithm choice, the allocator
            sync(device)
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                cleaner.run(images[0]) if inpainting else cleaner.clean(images[0], inpaint=False)
                sync(device)
                best = min(best, time.perf_counter() - t0)

            def one(i, c=cleaner, flag=inpainting):
                return c.run(images[i % len(images)]) if flag else c.clean(images[i % len(images)], inpaint=False)

            with Utilisation() as usage, ThreadPoolExecutor(4) as pool:
                t0 = time.perf_counter()
                list(pool.map(one, range(n_stream)))
                sync(device)
                stream = time.perf_counter() - t0
            lines.append(f"| {mode} | {precision} | {size**2 / best / 1e6:.0f} | "
                         f"{n_stream * size**2 / stream / 1e6:.0f} | {usage.mean} |")
            say(lines[-1])
    return lines


def archive(device: str, n_files: int, shape: tuple[int, int], say) -> list[str]:
    from deepcr_dask.demo import write_flc
    from deepcr_dask.io.fits import inspect_file, read_chip

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "in"
        for i in range(n_files):
            chips = []
            for c in range(2):
                sci = frame(max(shape), 100 + 2 * i + c)[: shape[0], : shape[1]]
                chips.append((sci, np.sqrt(np.abs(sci) + 25), np.zeros(shape, np.int16)))
            write_flc(root / f"jgpu{i:02d}q_flc.fits", chips, rootname=f"jgpu{i:02d}q")
        t0 = time.perf_counter()
        for path in sorted(root.glob("*.fits")):
            info = inspect_file(path)
            for chip in info.chips:
                read_chip(path, chip)
        reading = time.perf_counter() - t0
        kind, options = "local", {"n_workers": 1, "threads_per_worker": 4}
        if device.startswith("cuda"):
            try:
                import dask_cuda  # noqa: F401

                kind, options = "cuda", {"threads_per_worker": 4}
            except Exception as exc:  # dask-cuda is optional: one worker advertising the GPU instead
                say(f"dask-cuda not importable ({type(exc).__name__}: {exc}); LocalCluster with GPU=1")
                options["resources"] = {"GPU": 1}
        with dcr.make_cluster(kind, **options) as handle:
            t0 = time.perf_counter()
            summary = dcr.process_archive(root, Path(tmp) / "out", cluster=handle.client, device=device,
                                          progress=False, kernels="reference")
            wall = time.perf_counter() - t0
        pixels = n_files * 2 * shape[0] * shape[1]
        lines = [f"process_archive ({kind} cluster, {options}): {len(summary.done)}/{n_files} files, "
                 f"{pixels / wall / 1e6:.0f} Mpix/s over {wall:.1f} s (model loads included); a plain read of "
                 f"the same files took {reading:.1f} s ({100 * reading / wall:.0f}% of the wall time)"]
        say(lines[-1])
        return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, toy sizes: checks the script, not the GPU")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the results table")
    args = parser.parse_args(argv)
    if args.smoke:
        device, size, n_stream, n_files, shape = "cpu", 256, 4, 2, (128, 256)
    elif not torch.cuda.is_available():
        print("no CUDA device: nothing to check (use --smoke to exercise the script on a CPU)")
        return 1
    else:
        device, size, n_stream, n_files, shape = "cuda", 4096, 64, 16, (2048, 4096)
    start = time.perf_counter()
    out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "none (smoke run)"
    lines = [f"# GPU run ({gpu}; host CPU {cpu_name()}; torch {torch.__version__}; {dt.date.today().isoformat()})",
             ""]

    def say(text: str) -> None:
        print(text, flush=True)

    def write() -> None:
        text = "\n".join(lines) + "\n"
        target = args.results / ("gpu-smoke.md" if args.smoke else "gpu.md")
        args.results.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        if out_dir is not None:
            (out_dir / target.name).write_text(text)

    frames = real_frames() or [("simulated 2048²", "ACS-WFC", frame(2048 if device == "cuda" else 256, 7), None)]
    lines += ["## CUDA against the CPU, and the precisions", "", *check(device, frames, say), ""]
    write()
    lines += [f"## Throughput ({size}² frames; stream of {n_stream} by 4 threads sharing one Cleaner)", ""]
    lines += [*throughput(device, size, n_stream, say), ""]
    write()
    lines += ["## Archive", "", *archive(device, n_files, shape, say)]
    lines += ["", f"Whole run: {time.perf_counter() - start:.0f} s."]
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
