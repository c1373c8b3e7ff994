"""The module paths of the flat layout (before the layers became subpackages), kept for one release.

``import deepcr_dask.cleaner`` still works and gives the module at its new place
(``deepcr_dask.inference.cleaner``, the same object), with a :class:`DeprecationWarning` naming it.
``deepcr_dask.archive`` needs no alias: it is now the archive-run subpackage and exports the same names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__all__ = ["MOVED", "install"]

MOVED = {
    "zoo": "models.zoo", "thresholds": "models.thresholds", "model_choice": "models.choice",
    "provenance": "models.provenance", "plugins": "models.plugins",
    "tiling": "inference.tiling", "preprocess": "inference.preprocess", "fill": "inference.fill",
    "runner": "inference.runner", "batching": "inference.batching", "device_path": "inference.device_path",
    "devices": "inference.devices", "allocator": "inference.allocator", "cleaner": "inference.cleaner",
    "engine": "distributed.engine", "graphs": "distributed.graphs", "cluster": "distributed.cluster",
    "slurm": "distributed.slurm", "tls": "distributed.tls",
    "layout": "archive.layout", "manifest": "archive.manifest", "groups": "archive.groups",
    "gates": "archive.gates", "pipeline": "archive.pipeline", "staging": "archive.staging",
    "qa_report": "archive.report",
    "train": "training.train", "training_data": "training.data",
    "metrics": "evaluate.metrics",
}
_PACKAGE = __name__.rpartition(".")[0]


class _Alias(importlib.abc.Loader):
    """Loads an old path as the module at its new place (the same object, not a copy)."""

    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        return importlib.import_module(self.new)

    def exec_module(self, module) -> None:
        pass  # already executed at its new place


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path=None, target=None):
        old = fullname[len(_PACKAGE) + 1:] if fullname.startswith(_PACKAGE + ".") else None
        if old not in MOVED:
            return None
        new = f"{_PACKAGE}.{MOVED[old]}"
        warnings.warn(f"{fullname} has moved to {new}; the old path will be removed in the next release",
                      DeprecationWarning, stacklevel=2)
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    """Answer the old paths (after every real module: a module that exists is never shadowed)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
