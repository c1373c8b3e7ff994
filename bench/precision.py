"""Precision on the real frames: bfloat16 (and float16 on CUDA) against float32, each camera's default model.

    python bench/precision.py        # writes bench/results/precision.md

For every real frame in ``../shared/data/real`` (one chip each): the largest probability difference from
float32, the mask pixels that change at the model's default threshold, and how many the float32 mask has.
float32 runs TF32-off on CUDA; on a CPU, bfloat16 needs native kernels (AMX, AVX512-BF16) and float16 is
CUDA only, so rows a machine cannot run say so.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import torch

import deepcr_dask as dcr
from deepcr_dask.errors import ModelError

sys.path.insert(0, str(Path(__file__).parent))
from gpu import cpu_name, real_frames

RESULTS = Path(__file__).parent / "results"


def main() -> int:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lines = [f"# Precision against float32 on the real frames ({device}: "
             f"{torch.cuda.get_device_name(0) if device == 'cuda' else cpu_name()}; torch {torch.__version__}; "
             f"{dt.date.today().isoformat()})", "",
             "| frame | model | precision | max abs prob diff | mask pixels changed | float32 mask pixels |",
             "|---|---|---|---|---|---|"]
    for name, model, electrons, ignore in real_frames(limit=None):
        reference = dcr.Cleaner(model, device=device).run(electrons, ignore=ignore)
        for precision in ("bfloat16", "float16"):
            try:
                out = dcr.Cleaner(model, device=device, precision=precision).run(electrons, ignore=ignore)
            except ModelError as exc:
                lines.append(f"| {name} | {model} | {precision} | not run here: {str(exc).split(';')[0]} | | |")
                continue
            diff = float(np.abs(out["probability"] - reference["probability"]).max())
            changed = int((out["mask"] != reference["mask"]).sum())
            lines.append(f"| {name} | {model} | {precision} | {diff:.3f} | {changed} | "
                         f"{int(reference['mask'].sum())} |")
        print(lines[-2], lines[-1], sep="\n", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "precision.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
