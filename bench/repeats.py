#!/usr/bin/env python
"""Repeat exposures: fused masks against single-frame and multi-exposure-only masks, on simulated CR-SPLITs.

For each configuration (2 and 4 exposures; sparse and crowded fields; an undersampled camera, WFPC2 WF, and
a well-sampled one, ACS/WFC) it simulates groups of exposures of one scene with fresh noise and fresh cosmic
rays (:func:`deepcr_dask.sim.simulate_group`), and scores three detectors over every exposure's pixels:

* **single-frame**: the camera's default mask model on each exposure alone (its probability);
* **multi-exposure only**: each exposure's excess over the others, ``z`` (:func:`deepcr_dask.archive.groups.fuse`),
  the evidence ``acsrej``-style rejection thresholds;
* **fused**: the network's probability with that evidence applied (:mod:`deepcr_dask.archive.groups`).

Printed and written to ``bench/results/repeats.md``: TPR at FPR 1e-4 and 1e-3 (undilated), pooled over
the groups of each configuration.

    python bench/repeats.py                 # 3 groups per configuration, 256² (about 5 minutes on 2 cores)
    python bench/repeats.py --groups 1 --size 128
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np

from deepcr_dask.models.choice import default_model

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = [(camera, field, n) for camera in ("WFPC2", "ACS-WFC") for field in ("sparse", "globular") for n in (2, 4)]
MODELS = {"WFPC2": default_model("WFPC2", "1"), "ACS-WFC": default_model("ACS", "WFC")}  # each camera's default
FPRS = (1e-4, 1e-3)


def score_group(samples, cleaner) -> dict[str, tuple]:
    """Tallies of the three detectors over one group's exposures."""
    from deepcr_dask.archive.groups import fuse
    from deepcr_dask.evaluate.metrics import tally_scores

    probabilities = [cleaner.probability(s.image, ignore=s.ignore) for s in samples]
    rates = [s.image / s.exptime for s in samples]
    sigmas = [np.sqrt(np.clip(s.image, 0, None) + s.instrument.read_noise**2) / s.exptime for s in samples]
    fused, excess = fuse(rates, sigmas, probabilities, [s.ignore for s in samples])
    scores = {"single-frame": probabilities, "multi-exposure only": [np.nan_to_num(z, nan=-1e9) for z in excess],
              "fused": fused}
    thresholds = {"single-frame": None, "fused": None,
                  "multi-exposure only": np.concatenate([np.linspace(-5, 5, 101), np.geomspace(5.1, 1e4, 200)])}
    out = {}
    for name, maps in scores.items():
        tallies = [tally_scores(m, s.truth, s.ignore, thresholds[name]) for m, s in zip(maps, samples)]
        total = tallies[0]
        for t in tallies[1:]:
            total = total + t
        out[name] = total
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=3, help="groups per configuration")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--exptime", type=float, default=400.0)
    parser.add_argument("--output", type=Path, default=RESULTS / "repeats.md")
    args = parser.parse_args(argv)
    import deepcr_dask as dcr
    from deepcr_dask.sim import simulate_group

    cleaners = {camera: dcr.Cleaner(model, device="cpu") for camera, model in MODELS.items()}
    rows = []
    for camera, field, n in CONFIGS:
        totals: dict = {}
        for g in range(args.groups):
            samples = simulate_group((args.size, args.size), camera, args.exptime, seed=[7, n, g, len(field)],
                                     field=field, n_exposures=n)
            for name, tally in score_group(samples, cleaners[camera]).items():
                totals[name] = tally if name not in totals else totals[name] + tally
        for name, tally in totals.items():
            tpr = tally.curve().at_fpr(list(FPRS))
            rows.append((camera, field, n, name, *tpr, tally.n_pos))
        print(f"{camera} {field} x{n}: " + ", ".join(f"{r[3]} {r[4]:.3f}" for r in rows[-3:]), flush=True)
    lines = [f"# Repeat exposures: fused vs single-frame vs multi-exposure-only masks ({dt.date.today()})", "",
             f"Simulated CR-SPLIT groups (`deepcr_dask.sim.simulate_group`): {args.groups} group(s) of "
             f"{args.size}² per configuration, {args.exptime:g} s per exposure; default mask model per camera "
             f"({', '.join(f'{c}: {m}' for c, m in MODELS.items())}); deepcr-dask {dcr.__version__}.", "",
             "| camera (PSF) | field | exposures | detector | TPR @ FPR 1e-4 | TPR @ FPR 1e-3 | true CR pixels |",
             "|---|---|--:|---|--:|--:|--:|"]
    sampling = {"WFPC2": "WFPC2 WF (undersampled)", "ACS-WFC": "ACS/WFC (well sampled)"}
    for camera, field, n, name, t1, t2, pos in rows:
        bold = "**" if name == "fused" else ""
        lines.append(f"| {sampling[camera]} | {field} | {n} | {name} | {bold}{t1:.3f}{bold} | {t2:.3f} | {pos} |")
    wins = [(c, f, n) for c, f, n in CONFIGS
            if next(r[4] for r in rows if r[:4] == (c, f, n, "fused")) >
            max(r[4] for r in rows if r[:3] == (c, f, n) and r[3] != "fused")]
    lines += ["", f"Fused beats both others at FPR 1e-4 in {len(wins)} of {len(CONFIGS)} configurations."]
    text = "\n".join(lines) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
