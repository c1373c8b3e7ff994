"""Archive tasks on object stores: inputs fetched to the worker's scratch, cleaned there, outputs published.

A file in a bucket is cleaned from a local copy: its cleaned FITS copy holds every HDU of the input, so the
whole file is read anyway, and one GET costs less than the many range requests of reading it in place (the
driver reads only headers, through astropy's fsspec support, to decide what to clean and how to group it).
Outputs are written locally and then published: a cleaned FITS file as one upload (an object appears
only whole; :func:`~deepcr_dask.io.writer.write_cleaned` does it for a URL), a Zarr chip group, built in
the scratch folder, as its chunks, then its arrays' metadata, then its own ``zarr.json`` (the group is
not there for a reader until all of it is). The scratch folder is the Dask
worker's local directory (dask's ``temporary-directory``: node-local disk on a cluster) and is removed after.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..io import remote
from ..io.products import wfpc2_dq_companion
from .groups import Group
from .layout import Layout
from .pipeline import FileResult

__all__ = ["needs_staging", "run_staged", "staged_group"]


def needs_staging(paths: list[str], layout: Layout, zarr_path: str | None) -> bool:
    """True when an input or an output of these files lives in an object store."""
    return any(map(remote.is_url, [*paths, str(layout.output_dir), zarr_path]))


def _scratch_root() -> str:
    """The Dask worker's local directory when running on one, else the system's temporary folder."""
    try:
        from distributed import get_worker

        return get_worker().local_directory
    except (ImportError, ValueError):
        return tempfile.gettempdir()


def _fetch(path: str, folder: Path) -> str:
    """A local copy of a remote input (with a WFPC2 c0f's c1f beside it); local inputs as they are."""
    if not remote.is_url(path):
        return path
    name = path.rpartition("/")[2]
    local = remote.download_file(path, folder / name)
    companion = wfpc2_dq_companion(path)
    if companion:
        remote.download_file(companion, folder / companion.rpartition("/")[2])
    return str(local)


def _publish_group(local_store: Path, group_path: str, store_url: str) -> None:
    """Copy one chip group (and the groups above it that the store lacks) from a local store to a URL."""
    parts = group_path.split("/")
    for depth in range(len(parts)):  # the root group, then each parent: empty groups are valid meanwhile
        prefix = "/".join(parts[:depth])
        meta = remote.join(store_url, prefix, "zarr.json")
        if not remote.exists(meta):
            remote.upload_file(local_store / prefix / "zarr.json", meta)
    target = remote.join(store_url, group_path)
    fs, path = remote.filesystem(target)
    try:
        if fs.exists(path):  # a rewrite: nothing of the old group may survive beside the new one
            fs.rm(path, recursive=True)
    except Exception as exc:
        raise remote.storage_error(target, exc) from None
    remote.upload_tree(local_store / group_path, target)


def run_staged(
    paths: list[str],
    layout: Layout,
    zarr_path: str | None,
    clean: Callable[[dict[str, str], dict[str, str], str | None], list[FileResult]],
) -> list[FileResult]:
    """Clean ``paths`` (URLs or local) through local copies, publishing outputs where ``layout`` says.

    Parameters
    ----------
    paths : list of str
        The inputs, in the order ``clean`` returns their results.
    layout : Layout
        Output locations (a local folder or a URL).
    zarr_path : str, optional
        The Zarr store (a local path or a URL).
    clean : callable
        ``clean(local_inputs, local_outputs, local_store)`` cleans the local copies: ``local_inputs`` maps
        each path to its local copy, ``local_outputs`` maps each local copy to the FITS file to write, and
        ``local_store`` is the Zarr store to write into. ``clean`` names the original paths in its
        results (``source=``), and writes FITS copies only if its options say so.

    Returns
    -------
    list of FileResult
        What ``clean`` returned, its Zarr groups published.
    """
    with tempfile.TemporaryDirectory(prefix="deepcr-dask-", dir=_scratch_root()) as scratch:
        scratch = Path(scratch)
        local_inputs = {p: _fetch(p, scratch / "in" / str(i)) for i, p in enumerate(paths)}
        # A cleaned copy for a URL is written locally and uploaded whole by write_cleaned itself.
        local_outputs = {local_inputs[p]: str(layout.fits_output(p)) for p in paths}
        local_store = str(scratch / "store.zarr") if remote.is_url(zarr_path) else zarr_path
        results = clean(local_inputs, local_outputs, local_store)
        if remote.is_url(zarr_path):
            for result in results:
                for group_path in result.zarr_groups.values():
                    _publish_group(Path(local_store), group_path, str(zarr_path))
    return results


def staged_group(group: Group, local_inputs: dict[str, str]) -> Group:
    """The group over local copies, offsets carried over."""
    return replace(group, paths=[local_inputs[p] for p in group.paths],
                   offsets={local_inputs[p]: o for p, o in group.offsets.items() if p in local_inputs})
