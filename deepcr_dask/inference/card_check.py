"""Checks a model card and its weights before they are published: the fields, safe loading, the architecture,
and a probability map on a built-in synthetic frame (``deepcr-dask models check PATH``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import DeepCRDaskError
from ..models.plugins import CARD_FIELDS
from ..models.thresholds import FPR_LEVELS, fpr_key
from ..models.zoo import load_model
from .cleaner import Cleaner

__all__ = ["check_model_card"]


def check_model_card(path: str | Path) -> list[str]:
    """Problems with a model card and its weights (empty when it is fit to publish).

    Checks the card's fields, that the weights are safetensors and fit the card's architecture exactly,
    and that the model gives a finite probability map in [0, 1] on a built-in synthetic frame that flags
    under 5% of its pixels at the card's threshold.
    """

    path = Path(path)
    card_path = path if path.suffix == ".json" else path.with_suffix(".json")
    problems: list[str] = []
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        return [f"{card_path}: not a readable JSON model card ({exc})"]
    missing = [name for name in CARD_FIELDS if name not in card]
    if missing:
        problems.append(f"missing fields: {', '.join(missing)}")
    if card.get("kind") not in ("mask", "inpaint"):
        problems.append(f"kind must be 'mask' or 'inpaint', not {card.get('kind')!r}")
    if card.get("kind") == "mask":
        table = card.get("fpr_thresholds") or {}
        absent = [fpr_key(f) for f in FPR_LEVELS if fpr_key(f) not in table]
        if absent:
            problems.append(f"fpr_thresholds lacks FPR {', '.join(absent)}")
    weights = card_path.with_suffix(".safetensors")
    if not weights.is_file():
        return [*problems, f"{weights}: weights missing (a plugin's weights must be safetensors)"]
    if problems:
        return problems
    try:
        if card["kind"] == "mask":
            probability = Cleaner(str(weights), device="cpu").probability(_frame())
            if not np.all(np.isfinite(probability)) or probability.min() < 0 or probability.max() > 1:
                problems.append("probability map not finite or outside [0, 1]")
            elif (probability > float(card["threshold"])).mean() > 0.05:
                problems.append(f"flags {(probability > float(card['threshold'])).mean():.1%} of a synthetic frame")
        else:
            load_model(str(weights), "inpaint")
    except DeepCRDaskError as exc:
        problems.append(str(exc))
    return problems


def _frame(shape=(128, 128), seed: int = 0) -> np.ndarray:
    """Sky, stars and a few straight cosmic rays, in electrons."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.full(shape, 100.0)
    for _ in range(6):
        y, x = rng.uniform(0, shape[0], 2)
        image += rng.uniform(500, 5000) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.5**2))
    image = rng.poisson(image) + rng.normal(0, 5, shape)
    for _ in range(5):
        y, x = rng.integers(4, shape[0] - 4), rng.integers(4, shape[1] - 12)
        image[y, x:x + 6] += rng.uniform(500, 3000)
    return image.astype(np.float32)
