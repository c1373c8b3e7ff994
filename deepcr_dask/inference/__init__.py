"""Inference: one image in, mask and cleaned image out, exactly as deepCR computes them.

Tiling with halos (:mod:`.tiling`), normalisation (:mod:`.preprocess`), the masked median fill
(:mod:`.fill`), devices and precision (:mod:`.devices`), the runner and shared GPU batches (:mod:`.runner`,
:mod:`.batching`), the GPU-resident path (:mod:`.device_path`), units at the boundary (:mod:`.units`) and
the :class:`~deepcr_dask.Cleaner` that ties them together (:mod:`.cleaner`). Knows nothing of files or
clusters: :mod:`deepcr_dask.io`, :mod:`deepcr_dask.distributed` and :mod:`deepcr_dask.archive` build on it."""

from __future__ import annotations

from .cleaner import Cleaner, get_cleaner
from .fill import median_fill
from .units import ccd_to_electrons, is_ccd

__all__ = ["Cleaner", "ccd_to_electrons", "get_cleaner", "is_ccd", "median_fill"]
