"""GPU check and timing, for a machine with CUDA (run once per lease; not part of CI).

    python bench/gpu.py            # prints a markdown table and writes bench/results/gpu.md

Checks that the CUDA path gives the CPU path's probabilities (float32, within 1e-5), then times a
4096x4096 frame and a batch of 16 frames (in float32 and bfloat16), and a 2048x2048-chunked clean_dask
on a LocalCUDACluster when dask-cuda is installed.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np
import torch

import deepcr_dask as dcr

RESULTS = Path(__file__).parent / "results"


def frame(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.normal(100.0, 10.0, (size, size)).astype(np.float32)
    ys, xs = rng.integers(0, size, (2, size * size // 2000))
    image[ys, xs] += rng.uniform(300, 3000, ys.size).astype(np.float32)
    return image


def timed(fn, repeats: int = 3) -> float:
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    rows = []
    small = frame(1024, 0)
    cpu = dcr.Cleaner("ACS-WFC", device="cpu").probability(small)
    for kernels, precision in (("reference", "float32"), ("fast", "float32"), ("fast", "bfloat16")):
        gpu = dcr.Cleaner("ACS-WFC", device="cuda", precision=precision, tile=2048, batch_size=16, kernels=kernels)
        diff = float(np.abs(gpu.probability(small) - cpu).max())
        one = frame(4096, 1)
        t_one = timed(lambda g=gpu, o=one: g.clean(o, inpaint=False))
        batch = [frame(4096, s) for s in range(16)]
        t_batch = timed(lambda g=gpu, b=batch: [g.clean(f, inpaint=False) for f in b], repeats=1)
        rows.append((f"{kernels} {precision}", diff, 4096**2 / t_one / 1e6, 16 * 4096**2 / t_batch / 1e6))
    lines = [f"# GPU check ({torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
             f"{dt.date.today().isoformat()})", "",
             "| kernels, precision | max prob diff vs CPU | 4096² frame Mpix/s | 16 frames Mpix/s |",
             "|---|---|---|---|"]
    lines += [f"| {p} | {d:.2e} | {a:.1f} | {b:.1f} |" for p, d, a, b in rows]
    try:
        import dask.array as da

        with dcr.make_cluster("cuda") as handle:
            image = da.from_array(frame(4096, 2), chunks=2048)
            mask, _ = dcr.clean_dask(image, device="cuda")
            t0 = time.perf_counter()
            mask.sum().compute()
            lines.append(f"\nclean_dask on LocalCUDACluster ({len(handle.client.nthreads())} GPU workers): "
                         f"{4096**2 / (time.perf_counter() - t0) / 1e6:.1f} Mpix/s (includes model load)")
    except Exception as exc:  # dask-cuda is optional
        lines.append(f"\nclean_dask on LocalCUDACluster not run: {type(exc).__name__}: {exc}")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gpu.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
