"""Models from other packages: the ``deepcr_dask.models`` entry-point group, and model-card checks.

A package registers models by naming, in its entry points, an object that is (or a function returning) a
folder of model cards: ``NAME-KIND.json`` beside ``NAME-KIND.safetensors``, the format
``deepcr-dask train`` writes::

    [project.entry-points."deepcr_dask.models"]
    my-camera = "my_package:MODELS_DIR"

A card says what the model expects and how it was judged: ``name``, ``kind``, ``architecture``, ``scale``,
``normalize``, ``units``, ``instrument``, ``threshold``, ``fpr_thresholds`` (FPR 1e-4, 5e-4, 5e-3 on its
validation frames), ``training`` (with its data), ``held_out`` (scores on frames it never saw) and
``licence``. Weights are safetensors only: nothing from a plugin is ever unpickled. ``deepcr-dask models
check PATH`` validates a card and its weights before it is published.
"""

from __future__ import annotations

import json
import warnings
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np

__all__ = ["CARD_FIELDS", "ENTRY_POINT_GROUP", "check_model_card", "plugin_cards"]

ENTRY_POINT_GROUP = "deepcr_dask.models"
CARD_FIELDS = ("name", "kind", "architecture", "scale", "normalize", "units", "instrument", "threshold",
               "fpr_thresholds", "training", "held_out", "licence")


def plugin_cards() -> list[tuple[str, Path]]:
    """``(distribution name, card path)`` of every model the installed plugins register.

    A plugin that fails to load is skipped with a warning naming it; it never stops the built-in models.
    """
    cards = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        source = ep.dist.name if ep.dist is not None else ep.name
        try:
            target = ep.load()
            folder = Path(target() if callable(target) else target)
        except Exception as exc:  # a broken third-party package must not break the package
            warnings.warn(f"model plugin {ep.name!r} ({source}) could not be loaded: {exc}", RuntimeWarning,
                          stacklevel=2)
            continue
        paths = sorted(folder.glob("*.json")) if folder.is_dir() else [folder]
        cards.extend((source, path) for path in paths if path.suffix == ".json")
    return cards


def check_model_card(path: str | Path) -> list[str]:
    """Problems with a model card and its weights (empty when it is fit to publish).

    Checks the card's fields, that the weights are safetensors and fit the card's architecture exactly,
    and that the model gives a finite probability map in [0, 1] on a built-in synthetic frame that flags
    under 5% of its pixels at the card's threshold.
    """
    from .errors import DeepCRDaskError
    from .thresholds import FPR_LEVELS, fpr_key

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
        from .cleaner import Cleaner

        if card["kind"] == "mask":
            probability = Cleaner(str(weights), device="cpu").probability(_frame())
            if not np.all(np.isfinite(probability)) or probability.min() < 0 or probability.max() > 1:
                problems.append("probability map not finite or outside [0, 1]")
            elif (probability > float(card["threshold"])).mean() > 0.05:
                problems.append(f"flags {(probability > float(card['threshold'])).mean():.1%} of a synthetic frame")
        else:
            from .zoo import load_model

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
