"""Fresh copies of dask arrays' graphs, so an image can be read twice: once for statistics, once to clean.

:func:`dask.graph_manipulation.clone` and ``bind`` do this for graphs of Blockwise layers (``from_array``,
``from_zarr``, ``map_blocks``), but they rename only the keys of materialised layers, not the keys held
by the task objects inside them, so the copy of a sliced, rechunked or ``from_delayed`` array fails when
it is computed ("Cannot fuse tasks with multiple outputs", dask 2024.12 to at least 2026.8). This module
copies the whole task graph instead: every task gets a new key and its references follow; persisted
blocks (futures) are shared, not copied; with ``after``, each task that reads data (one that depends on
nothing but values in the graph and persisted blocks) starts only once ``after`` is done, so a second
pass never holds blocks while waiting for the first.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import dask.array as da
from dask._task_spec import DataNode, Task, TaskRef, convert_legacy_graph
from dask.base import clone_key
from dask.core import flatten
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

__all__ = ["copy_arrays"]


def _after(_done, value):
    """The value of a task that waited for another (the first argument) to finish."""
    return value


def _is_future(value) -> bool:
    return isinstance(value, TaskRef) or getattr(value, "__dask_future__", False)


def copy_arrays(arrays: Sequence[da.Array], seed: Hashable, after: Delayed | None = None) -> list[da.Array]:
    """Copies of ``arrays`` whose tasks are all new, so computing them reads the data again.

    Parameters
    ----------
    arrays : sequence of dask.array.Array
        Arrays copied together: a task they share is copied once and stays shared.
    seed : hashable
        Makes the new keys (the same seed and arrays give the same keys).
    after : dask.delayed.Delayed, optional
        Tasks without dependencies in the copy (the ones that read or make data) wait for it.

    Returns
    -------
    list of dask.array.Array
        Same shapes, chunks and meta.
    """
    graph = HighLevelGraph.merge(*(a.__dask_graph__() for a in arrays))
    wanted = {k for a in arrays for k in flatten(a.__dask_keys__())}
    raw = dict(graph.cull(wanted))
    futures = {k: v for k, v in raw.items() if _is_future(v)}  # persisted blocks: already in memory
    nodes = convert_legacy_graph({k: v for k, v in raw.items() if k not in futures}, all_keys=set(raw))
    rename = {k: clone_key(k, seed) for k in nodes}
    # Data already at hand: persisted blocks, and values embedded in the graph (a numpy array, the zarr
    # or h5py object of from_array). A task that depends on nothing else reads or makes data.
    at_hand = futures.keys() | {rename[k] for k, v in nodes.items() if isinstance(v, DataNode)}
    copied: dict = dict(futures)
    for key, node in nodes.items():
        new = node.substitute(rename, key=rename[key])
        reads = isinstance(new, Task) and not (new.dependencies - at_hand)
        if after is not None and reads:
            new = Task(rename[key], _after, TaskRef(after.key), new)
        copied[rename[key]] = new
    out = []
    for a in arrays:
        if all(k in futures for k in flatten(a.__dask_keys__())):
            out.append(a)  # persisted: its blocks are in memory, there is nothing to read again
            continue
        name = clone_key(a.name, seed)
        keys = {rename[k] for k in flatten(a.__dask_keys__())}
        if any(k[0] != name for k in keys):  # clone_key keeps a block's indices and renames the array alike
            raise RuntimeError(f"copy_arrays: unexpected key layout in {a.name}")
        dependencies = [after] if after is not None else []
        layer = HighLevelGraph.from_collections(name, copied, dependencies=dependencies)
        out.append(da.Array(layer, name, a.chunks, meta=a._meta))
    return out

