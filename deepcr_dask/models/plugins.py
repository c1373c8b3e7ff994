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
check PATH`` validates a card and its weights before it is published
(:func:`deepcr_dask.inference.card_check.check_model_card`: it runs the model).
"""

from __future__ import annotations

import warnings
from importlib.metadata import entry_points
from pathlib import Path

__all__ = ["CARD_FIELDS", "ENTRY_POINT_GROUP", "plugin_cards"]

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
