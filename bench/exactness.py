#!/usr/bin/env python
"""How far the Cleaner's probabilities are from deepCR's own whole-image output, per path, on real frames.

DESIGN's rule: within 1e-5 of ``deepCR(mask=...).clean(img, binary=False, segment=False)`` on the same
machine, for every zoo mask model, with identical masks at the model's threshold. This prints the worst
pixel per model and path on every real frame in ``../shared/data/real/`` (sides cropped to multiples
of 4), for the default kernels (``reference``), ``fast`` and the portable path (every probe off:
standard torch ops only), and with oneDNN switched off in both (``--no-onednn``: what a torch without
oneDNN runs).

    python bench/exactness.py                         # this CPU
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 python bench/exactness.py
    python bench/exactness.py --no-onednn

Writes ``bench/results/exactness-<ISA>[-no-onednn].md`` (unless ``--print-only``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import platform
import sys
from pathlib import Path

import numpy as np
import torch

import deepcr_dask as dcr
from deepcr_dask.data import real_data_dir
from deepcr_dask.io.fits import inspect_file, read_chip
from deepcr_dask.models.zoo import get_spec
from deepcr_dask.nn import probes

MODELS = ("ACS-WFC", "WFC3-UVIS", "decam")
PATHS = ("reference", "fast", "portable")
RESULTS = Path(__file__).resolve().parent / "results"


def real_frames(folder: Path) -> dict[str, np.ndarray]:
    """Every chip of every real frame, in the units the readers give (electrons), cropped to multiples of 4."""
    frames = {}
    for path in sorted(p for p in folder.glob("*.fits") if "_c1f" not in p.name):  # c1f: WFPC2 DQ, not an image
        info = inspect_file(path)
        for chip in info.chips:
            image, _ = read_chip(path, chip)
            h, w = image.shape
            frames[f"{path.stem}:{chip.name}"] = np.ascontiguousarray(image[: h - h % 4, : w - w % 4])
    return frames


def cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def measure(frames: dict[str, np.ndarray]) -> list[dict]:
    import deepCR

    rows = []
    for model in MODELS:
        reference = deepCR.deepCR(mask=model, device="CPU")
        threshold = get_spec(model, "mask").threshold
        cleaners = {kernels: dcr.Cleaner(model, device="cpu", kernels=kernels) for kernels in ("fast", "reference")}
        with probes.forced():
            cleaners["portable"] = dcr.Cleaner(model, device="cpu")
        for name, image in frames.items():
            with torch.no_grad():
                expected = reference.clean(image, binary=False, segment=False)
            for path in PATHS:
                context = probes.forced() if path == "portable" else contextlib.nullcontext()
                with context:
                    got = cleaners[path].probability(image)
                diff = np.abs(got - expected)
                rows.append({"model": model, "path": path, "frame": name, "max": float(diff.max()),
                             "mask_differs": int(((got > threshold) != (expected > threshold)).sum())})
    return rows


def table(rows: list[dict], title: str) -> str:
    lines = [title, "", "| model | path | worst frame | max \\|p - deepCR\\| | frames | mask pixels that differ |",
             "|---|---|---|--:|--:|--:|"]
    for model in MODELS:
        for path in PATHS:
            mine = [r for r in rows if r["model"] == model and r["path"] == path]
            worst = max(mine, key=lambda r: r["max"])
            lines.append(f"| {model} | {path} | {worst['frame']} | {worst['max']:.2e} | {len(mine)} | "
                         f"{sum(r['mask_differs'] for r in mine)} |")
    lines += ["", "Per frame:", "", "| model | frame | " + " | ".join(PATHS) + " |",
              "|---|---|" + "--:|" * len(PATHS)]
    frames = sorted({r["frame"] for r in rows})
    for model in MODELS:
        for frame in frames:
            cells = [next(f"{r['max']:.2e}" for r in rows if (r["model"], r["frame"], r["path"]) == (model, frame, p))
                     for p in PATHS]
            lines.append(f"| {model} | {frame} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-onednn", action="store_true", help="switch oneDNN off for deepCR and the Cleaner")
    parser.add_argument("--print-only", action="store_true")
    args = parser.parse_args(argv)
    folder = real_data_dir()
    if not folder.is_dir():
        print(f"real frames not found at {folder}", file=sys.stderr)
        return 2
    torch.set_num_threads(min(2, torch.get_num_threads()))
    onednn = contextlib.nullcontext() if not args.no_onednn else torch.backends.mkldnn.flags(enabled=False)
    with onednn:
        caps = probes.capabilities("cpu")
        rows = measure(real_frames(folder))
    isa = caps.isa + ("" if not args.no_onednn else ", oneDNN off")
    title = (f"# Cleaner vs deepCR 0.3.1 whole-image probabilities ({dt.date.today()})\n\n"
             f"CPU: {cpu_name()}; instruction set in use: {isa}; torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads.\nProbes: {caps.summary()}\n")
    text = table(rows, title)
    print(text)
    if not args.print_only:
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"exactness-{caps.isa.replace('+', '-')}{'-no-onednn' if args.no_onednn else ''}.md"
        out.write_text(text)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
