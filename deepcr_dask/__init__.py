"""deepcr-dask: deep-learning cosmic-ray removal from one image to a whole archive."""

from __future__ import annotations

from . import _moved
from ._version import __version__
from .archive.run import process_archive
from .ccd import clean_ccd
from .compat import cosmicray_lacosmic, detect_cosmics
from .distributed.cluster import make_cluster
from .distributed.engine import clean_dask
from .errors import DeepCRDaskError, InputError, ModelError
from .inference.cleaner import Cleaner
from .models.zoo import list_models

_moved.install()  # the flat layout's module paths, for one release


def __getattr__(name: str):
    """``dcr.pipeline`` and the other flat-layout modules as attributes, through their deprecated aliases."""
    if name in _moved.MOVED:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

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
