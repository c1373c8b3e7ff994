"""Probability thresholds chosen by false-positive rate.

A probability threshold means little on its own: 0.5 flags 0.01% of the clean pixels for one model and
1% for another. Each model therefore records, in its metadata, the thresholds that gave false-positive
rates of 1e-4, 5e-4 and 5e-3 on its validation frames (``fpr_thresholds``), and users may ask for a rate
instead of a threshold (``Cleaner.clean(image, fpr=1e-4)``, ``--fpr 1e-4``). deepCR's zoo models carry
no such record; theirs were measured by ``bench/thresholds.py`` on the project's real frames with
injected real cosmic rays and are read from ``weights/thresholds/deepcr-zoo.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ModelError

__all__ = ["FPR_LEVELS", "calibrate_thresholds", "fpr_key", "fpr_thresholds", "resolve_threshold"]

FPR_LEVELS = (1e-4, 5e-4, 5e-3)
ZOO_FILE = Path(__file__).resolve().parents[1] / "weights" / "thresholds" / "deepcr-zoo.json"


def fpr_key(fpr: float) -> str:
    """The metadata key of a false-positive rate: ``"0.0001"``, ``"0.0005"``, ``"0.005"``."""
    return f"{float(fpr):g}"


@lru_cache(maxsize=1)
def _zoo_table() -> dict:
    if not ZOO_FILE.is_file():
        return {}
    return json.loads(ZOO_FILE.read_text()).get("models", {})


def fpr_thresholds(spec) -> dict[float, float]:
    """The recorded ``{fpr: threshold}`` of a model spec (empty when it has none).

    Our own models carry them in their metadata (``fpr_thresholds``); deepCR zoo models get them from the
    calibration table shipped with the package.
    """
    table = spec.extra.get("fpr_thresholds")
    if table is None and spec.source == "deepcr":
        table = _zoo_table().get(spec.name, {}).get("fpr_thresholds")
    return {float(k): float(v) for k, v in (table or {}).items()}


def resolve_threshold(spec, threshold: float | None = None, fpr: float | None = None) -> float:
    """The probability threshold to use: ``threshold``, or the one recorded for ``fpr``, or the model's default.

    Raises
    ------
    ModelError
        When both are given, or ``fpr`` is not one of the model's recorded rates.
    """
    if fpr is None:
        return float(spec.threshold if threshold is None else threshold)
    if threshold is not None:
        raise ModelError("give a threshold or a false-positive rate (fpr), not both")
    table = fpr_thresholds(spec)
    for level, value in table.items():
        if abs(level - float(fpr)) <= 1e-9 * max(level, 1e-12):
            return value
    known = ", ".join(fpr_key(level) for level in sorted(table)) or "none recorded"
    raise ModelError(f"mask model {spec.name!r} has no threshold for FPR {fpr_key(fpr)} (recorded: {known})")


def calibrate_thresholds(probability: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None = None,
                         fprs: Sequence[float] = FPR_LEVELS) -> dict[str, float]:
    """Thresholds that give each false-positive rate on labelled data.

    Parameters
    ----------
    probability, truth : arrays of one shape
        The model's probabilities and the true cosmic-ray pixels.
    ignore : bool array, optional
        Pixels that count as neither (bad pixels, a real frame's own rays).
    fprs : sequence of float

    Returns
    -------
    dict
        ``{fpr_key(fpr): threshold}``: the ``1 - fpr`` quantile of the negatives' probabilities, so that a
        pixel is flagged when its probability is strictly above it.
    """
    p = np.asarray(probability, np.float64).ravel()
    negative = ~np.asarray(truth, bool).ravel()
    if ignore is not None:
        negative &= ~np.asarray(ignore, bool).ravel()
    values = p[negative]
    if values.size == 0:
        raise ValueError("no negative pixels to calibrate on")
    return {fpr_key(f): float(np.quantile(values, 1.0 - float(f), method="higher")) for f in fprs}
