#!/usr/bin/env python
"""Quality benchmark: detection ROC, TPR at fixed FPR, per-object recall, inpainting error and speed.

Runs deepcr-dask's Cleaner, deepCR 0.3.1 and astroscrappy on the same inputs: real frames (WFPC2
chips, SAAO, GMOS) with real cosmic-ray footprints injected at the instrument's rate (their own rays
found and ignored), and the simulator's sparse, globular-cluster and resolved-galaxy fields. The work
is done by :mod:`deepcr_dask.evaluate` (the same as ``deepcr-dask evaluate``).

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
