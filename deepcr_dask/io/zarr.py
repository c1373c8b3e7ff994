"""Zarr v3 output: one group per exposure and chip, written whole under a temporary name, then renamed.

Layout (every array has ``dimension_names`` ``("y", "x")``, chunks of up to 1024 x 1024 pixels)::

    store.zarr/
      <exposure>/<chip>/mask         uint8 (1 = cosmic ray)
      <exposure>/<chip>/cleaned      float32 electrons
      <exposure>/<chip>/probability  float32 (optional)
      <exposure>/<chip>/y, x         int32 pixel indices (0-based): the coordinates xarray shows

so ``xarray.open_zarr(store, group="<exposure>/<chip>")`` gives a Dataset with dimensions ``y`` and ``x``.
Each chip group's attributes hold the provenance, the chip's FITS header (``fits_header``, a string:
``astropy.io.fits.Header.fromstring(attrs["fits_header"], sep="\n")``), its WCS keywords (``wcs``),
and, written last, ``"complete": true``; arrays carry ``units`` and ``long_name``. The group is built in
``store.zarr.staging/`` beside the store (outside its hierarchy, so plain zarr and xarray see nothing
half-made), flushed to disk (fsync), and moved into place with one ``rename``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import zarr
from zarr.storage import LocalStore

from ..errors import InputError
from . import remote

__all__ = ["chip_group_path", "clear_temporary", "is_complete", "read_chip_group", "staging_dir", "write_chip_group"]

CHUNK = 1024
ARRAY_ATTRS = {
    "mask": {"long_name": "cosmic-ray mask", "flag_values": [0, 1], "flag_meanings": "clean cosmic_ray"},
    "cleaned": {"long_name": "image with cosmic rays replaced", "units": "electron"},
    "probability": {"long_name": "cosmic-ray probability", "units": "1"},
    "y": {"long_name": "pixel row, 0-based (FITS y - 1)"},
    "x": {"long_name": "pixel column, 0-based (FITS x - 1)"},
}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "x"


def chip_group_path(exposure: str, chip: str) -> str:
    """Group path of one chip inside the store, e.g. ``"visit1/j8xi01abq_flc/SCI_1"`` (``/`` separates the
    folders an archive run mirrors)."""
    return "/".join(_safe(part) for part in [*exposure.split("/"), chip] if part)


def _require_group(root: Path, path: str) -> None:
    """Create the group at ``path`` (and the root group) through the zarr API if missing.

    Workers writing chips of one exposure race to create its group; one of them wins, and the others
    find it made.
    """
    for attempt in range(3):
        try:
            group = zarr.open_group(store=LocalStore(str(root)), mode="a", zarr_format=3)
            if path:
                group.require_group(path)
            return
        except (zarr.errors.ContainsGroupError, zarr.errors.ContainsArrayError, FileExistsError):
            if attempt == 2:
                raise


def staging_dir(store: str | os.PathLike) -> Path:
    """Where chip groups are built before their rename: beside the store, on the same filesystem."""
    root = Path(store)
    return root.with_name(root.name + ".staging")


def _fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` to disk, so the rename publishes complete data."""
    for dirpath, _, filenames in os.walk(folder, topdown=False):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(dirpath))


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_chip_group(
    store: str | os.PathLike,
    exposure: str,
    chip: str,
    arrays: dict[str, np.ndarray],
    attributes: dict,
) -> str:
    """Write one chip's 2-D arrays (with ``y``/``x`` coordinates) and attributes; returns the group path.

    Replaces an existing group.
    """
    root = Path(store)
    group_path = chip_group_path(exposure, chip)
    _require_group(root, group_path.rpartition("/")[0])
    final = root / group_path
    staging = staging_dir(root)
    tmp = staging / uuid.uuid4().hex
    staging.mkdir(parents=True, exist_ok=True)
    shape = next(iter(arrays.values())).shape
    coordinates = {"y": np.arange(shape[0], dtype=np.int32), "x": np.arange(shape[1], dtype=np.int32)}
    try:
        group = zarr.open_group(store=LocalStore(str(tmp)), mode="w", zarr_format=3)
        for name, data in {**arrays, **coordinates}.items():
            chunks = tuple(min(CHUNK, n) for n in data.shape)
            dims = (name,) if name in coordinates else ("y", "x")
            array = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks, dimension_names=dims,
                                       attributes=ARRAY_ATTRS.get(name, {}))
            array[...] = data
        group.attrs.update({**attributes, "complete": False})
        group.attrs["complete"] = True  # the completion marker, last
        _fsync_tree(tmp)
        if final.exists():
            trash = staging / f"old-{uuid.uuid4().hex}"
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return group_path


def is_complete(store: str | os.PathLike, group_path: str) -> bool:
    """True when the chip group exists and carries its completion marker (``store`` may be a URL)."""
    try:
        meta = remote.read_bytes(remote.join(str(store), group_path, "zarr.json"))
        return bool(json.loads(meta).get("attributes", {}).get("complete"))
    except (OSError, ValueError, InputError):
        return False


def read_chip_group(store: str | os.PathLike, group_path: str) -> dict[str, np.ndarray]:
    """All arrays of a chip group, plus its attributes under ``"attrs"``."""
    group = zarr.open_group(store=LocalStore(str(store), read_only=True), mode="r", path=group_path)
    out: dict = {name: array[...] for name, array in group.arrays()}
    out["attrs"] = dict(group.attrs)
    return out


def clear_temporary(store: str | os.PathLike) -> None:
    """Remove leftovers of interrupted writes (called before a run starts), and the ``.tmp`` folder that
    older versions staged inside the store."""
    shutil.rmtree(staging_dir(store), ignore_errors=True)
    shutil.rmtree(Path(store) / ".tmp", ignore_errors=True)
