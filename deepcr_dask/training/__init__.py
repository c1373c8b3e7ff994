"""Training our own models: training pairs from real frames with injected real rays and from real repeat
pairs (:mod:`.data`), and the training, calibration and model cards (:mod:`.train`, ``deepcr-dask train``).
Scenes come from :mod:`deepcr_dask.sim`."""

from __future__ import annotations

from .data import Pairs
from .train import TrainConfig, TrainResult, train_main

__all__ = ["Pairs", "TrainConfig", "TrainResult", "train_main"]
