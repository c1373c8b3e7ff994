"""Dask: :func:`~deepcr_dask.clean_dask` over overlapping blocks (:mod:`.engine`, with the worker plugin that
keeps one Cleaner per worker), task-graph helpers (:mod:`.graphs`), clusters (:mod:`.cluster`: local,
dask-cuda, SLURM through dask-jobqueue in :mod:`.slurm`), TLS (:mod:`.tls`) and which worker ran a task or was
lost with it (:mod:`.workers`)."""

from __future__ import annotations

from .cluster import ClusterHandle, make_cluster
from .engine import clean_dask

__all__ = ["ClusterHandle", "clean_dask", "make_cluster"]
