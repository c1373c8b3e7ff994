"""deepcr-dask: deep-learning cosmic-ray removal from one image to a whole archive."""

from __future__ import annotations

from ._version import __version__
from .archive import process_archive
from .ccd import clean_ccd
from .cleaner import Cleaner
from .cluster import make_cluster
from .compat import cosmicray_lacosmic, detect_cosmics
from .engine import clean_dask
from .errors import DeepCRDaskError, InputError, ModelError
from .zoo import list_models

__all__ = [
    "Cleaner",
    "DeepCRDaskError",
    "InputError",
    "ModelError",
    "__version__",
    "clean_ccd",
    "clean_dask",
    "cosmicray_lacosmic",
    "detect_cosmics",
    "list_models",
    "make_cluster",
    "process_archive",
]
