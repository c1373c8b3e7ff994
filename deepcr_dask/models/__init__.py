"""The models: the zoo of mask and inpaint networks with their weights (deepCR's, ours, plugins'), the
thresholds each records by false-positive rate, the per-camera default choice, and the provenance a cleaned
file carries. Built on :mod:`deepcr_dask.nn`; used by every layer above (inference, I/O, archive runs)."""

from __future__ import annotations

from .choice import camera_family, default_inpaint, default_model
from .provenance import Provenance
from .thresholds import FPR_LEVELS, fpr_thresholds, resolve_threshold
from .zoo import WEIGHTS_DIR, LoadedModel, ModelSpec, get_spec, list_models, load_model

__all__ = ["FPR_LEVELS", "WEIGHTS_DIR", "LoadedModel", "ModelSpec", "Provenance", "camera_family", "default_inpaint",
           "default_model", "fpr_thresholds", "get_spec", "list_models", "load_model", "resolve_threshold"]
