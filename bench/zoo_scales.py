#!/usr/bin/env python
"""Which input scale each deepCR ACS/WFC mask model was trained with, checked on real frames.

deepCR 0.3.1 ships four paper-era ACS/WFC mask files besides its registered models, without the input
scale its older releases listed (``mask_dict``: the network input was electrons / 100 for some). Each is
run here at scale 1 and at scale 100 on real frames with injected real cosmic rays (the evaluation's
scenes: WFPC2 NGC 4151 WF3/WF4, SAAO, GMOS), and scored by TPR at FPR 1e-4 and 5e-4 and by the fraction of
clean pixels its listed threshold flags. The right scale finds the rays; the wrong one finds none or flags
everything.

    python bench/zoo_scales.py       # about 3 minutes on 2 cores; writes bench/results/zoo-scales.md
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import platform
import sys
from pathlib import Path

import numpy as np

import deepcr_dask as dcr
from deepcr_dask.evaluate.benchmark import BenchmarkConfig
from deepcr_dask.evaluate.scenes import build_scenes, pooled_probabilities
from deepcr_dask.models import zoo

MODELS = ("ACS-WFC", "ACS-WFC-F606W-2-32", "ACS-WFC-F435W-2-32", "ACS-WFC-F814W-2-32", "ACS-WFC-F606W-2-4")
FIELDS = {"wfpc2": 1, "saao": 2, "gmos": 4}
RESULTS = Path(__file__).resolve().parent / "results"


def _tpr(prob, truth, ignore, fpr: float) -> float:
    negatives, positives = prob[~ignore & ~truth], prob[~ignore & truth]
    return float((positives > np.quantile(negatives, 1 - fpr)).mean())


def main() -> int:
    config = BenchmarkConfig(realisations=FIELDS)
    scenes = {field: build_scenes(field, config) for field in FIELDS}
    lines = [f"# deepCR ACS/WFC mask models: input scale checked on real frames ({dt.date.today().isoformat()})", "",
             f"`python bench/zoo_scales.py`; {platform.processor() or platform.machine()}. Per field: TPR at FPR "
             "1e-4 / 5e-4, and the fraction of clean pixels flagged at the model's listed threshold.", "",
             "| model | input scale | " + " | ".join(FIELDS) + " |", "|---|--:|" + "---|" * len(FIELDS)]
    for name in MODELS:
        listed = zoo.get_spec(name, "mask")
        for scale in (1.0, 100.0):
            zoo._registry()[("mask", name)] = dataclasses.replace(listed, scale=scale)
            try:
                cleaner = dcr.Cleaner(name, device="cpu")
                cells = []
                for samples in scenes.values():
                    prob, truth, ignore = pooled_probabilities(cleaner, samples)
                    flagged = float((prob[~ignore & ~truth] > listed.threshold).mean())
                    cells.append(f"{_tpr(prob, truth, ignore, 1e-4):.3f} / {_tpr(prob, truth, ignore, 5e-4):.3f}, "
                                 f"{flagged:.2%}")
            finally:
                zoo._registry()[("mask", name)] = listed
            mark = " (listed)" if scale == listed.scale else ""
            lines.append(f"| {name} | {scale:g}{mark} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    (RESULTS / "zoo-scales.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
