"""deepcr-dask: deep-learning cosmic-ray removal from one image to a whole archive."""

from __future__ import annotations

from .cleaner import Cleaner
from .cluster import make_cluster
from .engine import clean_dask
from .errors import DeepCRDaskError, InputError, ModelError
from .lacosmic import detect_cosmics
from .zoo import list_models

__version__ = "0.1.0"

__all__ = [
    "Cleaner",
    "DeepCRDaskError",
    "InputError",
    "ModelError",
    "__version__",
    "clean_dask",
    "detect_cosmics",
    "list_models",
    "make_cluster",
]
