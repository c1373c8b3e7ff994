#!/usr/bin/env python
"""Quality benchmark: detection ROC, TPR at fixed FPR, per-object recall, inpainting error and speed.

Runs deepcr-dask's Cleaner, deepCR 0.3.1, Cosmic-CoNN and astroscrappy on the same inputs. Independent
truth first: the STIS CR-SPLIT and WHT pairs scored against their difference (``stis``, ``wht``), and real
HST rays harvested from the STIS pairs injected into real WFPC2, SAAO and GMOS frames (``hstrays-*``); the
test split (whole STIS associations no model trained on or was chosen with). Then real frames with imSim
footprints injected (their own rays found by our heuristics and ignored: labels partly of our making), and
the simulator's sparse, globular-cluster and resolved-galaxy fields. The work is done by
:mod:`deepcr_dask.evaluate` (the same as ``deepcr-dask evaluate``).

Usage::

    python bench/quality.py                  # full run (a few minutes on 2 cores)
    python bench/quality.py --quick          # CI size; prints only (results in a temporary folder)
    python bench/quality.py --models ACS-WFC WFC3-UVIS --methods cleaner astroscrappy --dilate

Writes ``bench/results/quality.md``, ``bench/results/quality.json`` and ``bench/results/roc_*.png``
(unless ``--quick``, or wherever ``--output`` says).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from deepcr_dask.evaluate import evaluate_main

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    """Run :func:`deepcr_dask.evaluate.evaluate_main` with this folder's results as the default output."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--output" in argv or any(a.startswith("--output=") for a in argv):
        return evaluate_main(argv)
    if "--quick" in argv:  # a CI smoke run must not overwrite the published full results
        with tempfile.TemporaryDirectory(prefix="quality-quick-") as tmp:
            return evaluate_main([*argv, "--output", tmp])
    return evaluate_main([*argv, "--output", str(RESULTS)])


if __name__ == "__main__":
    sys.exit(main())
